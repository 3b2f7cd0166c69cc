"""CodeInterpreter with real sandboxed kernels: outputs, files in and out, sessions, pool, idle shutdown."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from assistd.config import Settings
from assistd.tools.code_interpreter import CodeInterpreter, ExecutionResult
from assistd.tools.code_interpreter.kernel import LogBuffer
from assistd.tools.code_interpreter.sandbox import MOUNT_DATA
from tests.sandbox_support import lacking, require_isolation

PNG = b"\x89PNG\r\n\x1a\n"
CSV = b"city,temp\nParis,21\nOslo,12\nRome,27\n"


@pytest.fixture(scope="module", autouse=True)
def isolation():
    """These tests run kernels in the sandbox: without it, the interpreter refuses (test_code_fail_closed)."""
    require_isolation()


@pytest.fixture(scope="module")
def ci():
    interpreter = CodeInterpreter(
        Settings(
            kernel_pool_size=1, code_timeout_seconds=5, code_max_output_chars=2000, code_preload="import json"
        )
    )
    interpreter.start()
    yield interpreter
    interpreter.shutdown()


def wait_pool(ci: CodeInterpreter, size: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ci.pool.warm_count() >= size:
            return
        time.sleep(0.05)
    raise AssertionError("the pool did not fill")


def test_computation_output_in_logs(ci):
    result = ci.execute(
        "p", "t-comp", "import math\nprint(sum(i * i for i in range(10)))\nmath.factorial(5)", []
    )
    assert isinstance(result, ExecutionResult)
    assert not result.error
    assert "285" in result.logs
    assert "120" in result.logs  # the value of the last expression
    assert result.images == [] and result.files == []


def test_csv_read_with_pandas(ci):
    code = "import pandas as pd\ndf = pd.read_csv('/mnt/data/weather.csv')\nprint(df['temp'].mean())"
    result = ci.execute("p", "t-csv", code, [("weather.csv", CSV)])
    assert not result.error, result.logs
    assert "20.0" in result.logs
    assert result.files == []  # an input file is not an output unless changed


def test_matplotlib_plot_returned_as_png(ci):
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.title('t')\nplt.show()"
    result = ci.execute("p", "t-plot", code, [])
    assert not result.error, result.logs
    assert len(result.images) == 1
    assert result.images[0].startswith(PNG)


def test_ipython_display_image(ci):
    code = (
        "import io, matplotlib.pyplot as plt\n"
        "from IPython.display import Image, display\n"
        "buf = io.BytesIO(); plt.figure(); plt.plot([1, 2])\n"
        "plt.savefig(buf, format='png'); plt.close('all')\n"
        "display(Image(data=buf.getvalue()))\n"
        "print('after')"
    )
    result = ci.execute("p", "t-img", code, [])
    assert not result.error, result.logs
    assert [img[:8] for img in result.images] == [PNG]
    assert "after" in result.logs


def test_written_file_returned(ci):
    code = (
        "import pandas as pd\n"
        "df = pd.read_csv('/mnt/data/weather.csv')\n"
        "df[df.temp > 15].to_csv('/mnt/data/warm.csv', index=False)\n"
        "open('/mnt/data/weather.csv', 'a').write('Lima,19\\n')\n"
    )
    result = ci.execute("p", "t-write", code, [("weather.csv", CSV)])
    assert not result.error, result.logs
    files = dict(result.files)
    assert files["warm.csv"] == b"city,temp\nParis,21\nRome,27\n"
    assert files["weather.csv"].endswith(b"Lima,19\n")  # a changed input file is reported
    again = ci.execute("p", "t-write", "print('nothing written')", [("weather.csv", CSV)])
    assert again.files == []  # and not reported again; the input is not re-copied over the changed file


def test_exception_traceback_in_logs(ci):
    result = ci.execute("p", "t-exc", "def f():\n    return 1 / 0\nf()", [])
    assert result.error
    assert "ZeroDivisionError" in result.logs
    assert "Traceback" in result.logs
    assert "\x1b[" not in result.logs  # ANSI colours stripped
    fixed = ci.execute("p", "t-exc", "print(1 / 2)", [])
    assert not fixed.error and "0.5" in fixed.logs


def test_state_kept_in_a_thread_not_shared_between_threads(ci):
    assert not ci.execute("p", "t-state-a", "secret = 1234", []).error
    assert "1234" in ci.execute("p", "t-state-a", "print(secret)", []).logs
    other = ci.execute("p", "t-state-b", "print(secret)", [])
    assert other.error and "NameError" in other.logs


def test_output_truncated_with_note(ci):
    result = ci.execute("p", "t-trunc", "for i in range(5000):\n    print('line', i)\nprint('THE END')", [])
    assert len(result.logs) < 2200
    assert "output truncated" in result.logs
    assert result.logs.startswith("line 0")
    assert "THE END" in result.logs  # the tail survives: tracebacks come last


def test_kernel_death_replaced_with_note(ci):
    ci.execute("p", "t-die", "x = 5\nopen('/mnt/data/keep.txt', 'w').write('kept')", [])
    result = ci.execute("p", "t-die", "import os\nos.kill(os.getpid(), 9)", [])
    assert result.error
    assert "kernel died" in result.logs
    after = ci.execute("p", "t-die", "print(open('/mnt/data/keep.txt').read())\nprint('x' in dir())", [])
    assert not after.error
    assert "kept" in after.logs and "False" in after.logs


def test_close_session(ci):
    ci.execute("p", "t-close", "y = 1", [])
    data_dir = ci.sessions["t-close"].kernel.plan.data_dir
    ci.close_session("t-close")
    assert "t-close" not in ci.sessions
    assert not data_dir.exists()
    result = ci.execute("p", "t-close", "print('y' in dir())", [])
    assert "False" in result.logs


def test_sessions_counted_per_project(ci):
    before = ci.sessions_started("billing")
    ci.execute("billing", "t-bill-1", "1", [])
    ci.execute("billing", "t-bill-1", "2", [])
    ci.execute("billing", "t-bill-2", "3", [])
    assert ci.sessions_started("billing") == before + 2
    assert ci.sessions_started("nobody") == 0


def test_pool_serves_a_first_execution_from_a_warm_kernel(ci, monkeypatch):
    """A session's first execution takes a kernel the pool started beforehand: no kernel start on its path
    (what makes it fast; how fast is measured, not asserted: a test never fails because a machine is slow)."""
    wait_pool(ci, 1)
    with ci.pool._lock:
        warm = list(ci.pool._warm)
    taken = []
    acquire = ci.pool.acquire
    monkeypatch.setattr(ci.pool, "acquire", lambda: taken.append(acquire()) or taken[-1])
    result = ci.execute("p", "t-fast", "print('ready')", [])  # (pandas and matplotlib: see code_preload)
    assert "ready" in result.logs
    assert len(taken) == 1 and taken[0] in warm


def test_sandbox_report_shape(ci):
    report = ci.sandbox_report()
    names = [name for name, _on, _why in report]
    for expected in ("bubblewrap", "network isolation", "unprivileged user", "memory limit", "process limit"):
        assert expected in names
    assert all(isinstance(on, bool) and why for _name, on, why in report)


def test_idle_session_shut_down():
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, kernel_idle_seconds=1, code_preload=""))
    try:
        assert not interpreter.execute("p", "t-idle", "z = 3", []).error
        kernel = interpreter.sessions["t-idle"].kernel
        deadline = time.monotonic() + 30
        # the session leaves the table first, then its kernel is shut down
        while ("t-idle" in interpreter.sessions or kernel.alive()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "t-idle" not in interpreter.sessions
        assert not kernel.alive()
        result = interpreter.execute("p", "t-idle", "print('z' in dir())", [])
        assert "False" in result.logs  # a new session
        assert interpreter.sessions_started("p") == 2
    finally:
        interpreter.shutdown()


def test_without_bwrap_mnt_data_is_substituted():
    interpreter = CodeInterpreter(
        Settings(kernel_pool_size=0, code_use_bwrap=False, code_allow_unsandboxed=True, code_preload="")
    )
    try:
        report = {name: on for name, on, _ in interpreter.sandbox_report()}
        assert report["bubblewrap"] is False and report["private filesystem view"] is False
        code = "import os\nprint(open('/mnt/data/weather.csv').read().splitlines()[1])\nprint(os.getcwd())"
        result = interpreter.execute("p", "t-nobwrap", code, [("weather.csv", CSV)])
        assert not result.error, result.logs
        assert "Paris,21" in result.logs
        assert MOUNT_DATA in result.logs  # the real path is shown as /mnt/data
        written = interpreter.execute("p", "t-nobwrap", "open('/mnt/data/o.txt', 'w').write('x')", [])
        assert dict(written.files) == {"o.txt": b"x"}
    finally:
        interpreter.shutdown()


def test_log_buffer_keeps_head_and_tail():
    buf = LogBuffer(100)
    for i in range(1000):
        buf.write(f"{i:04d}\n")
    text = buf.text()
    assert text.startswith("0000\n")
    assert text.endswith("0999\n")
    assert "characters omitted" in text
    small = LogBuffer(100)
    small.write("hello\n")
    assert small.text() == "hello\n"


def test_two_interpreters_never_share_a_uid(ci):
    """Several servers on one machine draw kernel uids from one range: a uid is held by one kernel only,
    so one server's clean-up never kills another's kernels."""
    other = CodeInterpreter(Settings(kernel_pool_size=0, code_preload=""))
    try:
        ci.execute("p", "t-uid-a", "v = 'a'", [])
        other.execute("p", "t-uid-b", "v = 'b'", [])
        uid_a = ci.sessions["t-uid-a"].kernel.plan.uid
        uid_b = other.sessions["t-uid-b"].kernel.plan.uid
        if uid_a is None:
            lacking("not root: kernels run as the server's uid")
        assert uid_a != uid_b
        other.execute("p", "t-uid-b", "import subprocess; subprocess.Popen(['sleep', '30'])", [])
        assert "a" in ci.execute("p", "t-uid-a", "print(v)", []).logs
        assert "b" in other.execute("p", "t-uid-b", "print(v)", []).logs
    finally:
        other.shutdown()


def test_close_and_shutdown_end_a_running_execution():
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_preload="", code_timeout_seconds=30))
    results: dict[str, ExecutionResult] = {}

    def long_run(thread: str) -> None:
        results[thread] = interpreter.execute("p", thread, "import time\ntime.sleep(25)", [])

    try:
        interpreter.execute("p", "t-long-1", "1", [])
        interpreter.execute("p", "t-long-2", "1", [])
        workers = [threading.Thread(target=long_run, args=(t,)) for t in ("t-long-1", "t-long-2")]
        for w in workers:
            w.start()
        time.sleep(0.5)
        started = time.monotonic()
        interpreter.close_session("t-long-1")
        workers[0].join(timeout=10)
        interpreter.shutdown()
        workers[1].join(timeout=10)
        assert time.monotonic() - started < 15  # not the 25 s the code sleeps (generous: a slow machine)
        for thread in ("t-long-1", "t-long-2"):
            assert results[thread].error
            assert "closed during the execution" in results[thread].logs
    finally:
        interpreter.shutdown()


def test_least_recently_used_session_goes_beyond_the_limit():
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_preload="", code_max_sessions=2))
    try:
        for thread in ("t-lru-1", "t-lru-2", "t-lru-3"):
            interpreter.execute("p", thread, "v = 1", [])
            time.sleep(0.01)
        assert set(interpreter.sessions) == {"t-lru-2", "t-lru-3"}
    finally:
        interpreter.shutdown()


def test_start_logs_the_sandbox_report(caplog):
    interpreter = CodeInterpreter(
        Settings(kernel_pool_size=0, code_use_bwrap=False, code_allow_unsandboxed=True)
    )
    try:
        with caplog.at_level(logging.INFO, logger="assistd.code_interpreter"):
            interpreter.start()
        lines = [r.getMessage() for r in caplog.records if "sandbox:" in r.getMessage()]
        assert len(lines) == len(interpreter.sandbox_report())
        off = [r for r in caplog.records if r.levelno == logging.WARNING and "bubblewrap" in r.getMessage()]
        assert off and "OFF" in off[0].getMessage()  # a protection that is off is a warning, with its reason
    finally:
        interpreter.shutdown()
