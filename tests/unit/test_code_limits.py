"""Per-session limits of the code interpreter that go beyond one process's rlimits: the session's disk cap
(/mnt/data and the kernel's home, code_session_mb)."""

from __future__ import annotations

import pytest

from assistd.config import Settings
from assistd.tools.code_interpreter import CodeInterpreter
from assistd.tools.code_interpreter.interpreter import MB, disk_usage
from tests.sandbox_support import lacking

FIVE_TIMES_100_MB = (
    "chunk = b'x' * (100 * 1024 * 1024)\n"
    "for i in range(5):\n"
    "    with open(f'/mnt/data/part{i}.bin', 'wb') as fh:\n"
    "        fh.write(chunk)\n"
    "print('all' + ' written'.upper())\n"
)


@pytest.fixture(scope="module")
def ci():
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_preload="", code_timeout_seconds=120))
    reason = interpreter.unavailable_reason()
    if reason is not None:
        lacking(reason)
    yield interpreter
    interpreter.shutdown()


def session_usage(ci: CodeInterpreter, thread: str) -> int:
    plan = ci._sessions[thread].kernel.plan
    return disk_usage(plan.data_dir) + disk_usage(plan.run_dir / "home")


def test_writing_5_times_100_mb_is_stopped_with_a_clear_error(ci):
    cap = ci.settings.code_session_mb
    assert cap < 500  # the default stops the case of the issue
    ci.execute("p", "t-disk", "keep = 7\nopen('/mnt/data/small.txt', 'w').write('small')", [])
    result = ci.execute("p", "t-disk", FIVE_TIMES_100_MB, [])
    assert result.error
    assert "ALL WRITTEN" not in result.logs
    assert f"at most {cap} MB" in result.logs and "Execution stopped" in result.logs
    assert "/mnt/data/part" in result.logs  # says what it removed
    assert session_usage(ci, "t-disk") <= cap * MB
    assert sum(len(data) for _name, data in result.files) <= cap * MB
    after = ci.execute("p", "t-disk", "print(open('/mnt/data/small.txt').read(), keep)", [])
    assert not after.error and "small 7" in after.logs  # earlier files and variables are kept


def test_the_home_directory_counts_too(ci):
    code = (
        "import os\n"
        "chunk = b'y' * (50 * 1024 * 1024)\n"
        "for i in range(8):\n"
        "    with open(os.path.expanduser(f'~/blob{i}'), 'wb') as fh:\n"
        "        fh.write(chunk)\n"
    )
    result = ci.execute("p", "t-home", code, [])
    assert result.error and "Execution stopped" in result.logs
    assert session_usage(ci, "t-home") <= ci.settings.code_session_mb * MB


def test_sessions_have_separate_caps(ci):
    code = "for name in ('a', 'b'):\n    open(f'/mnt/data/{name}.bin', 'wb').write(b'z' * (90 * 1024 * 1024))"
    for thread in ("t-cap-a", "t-cap-b"):
        result = ci.execute("p", thread, code, [])
        assert not result.error, result.logs
