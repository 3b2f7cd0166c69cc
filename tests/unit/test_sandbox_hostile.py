"""Hostile code through CodeInterpreter.execute: each attempt fails or is contained, and the sandbox recovers.

These run real sandboxed kernels (bubblewrap when installed). A case is skipped only where this machine lacks
the mechanism that contains it, and the skip says which; in CI, or as root with bubblewrap installed, a
missing mechanism is a failure (tests/sandbox_support.py). Without bubblewrap the interpreter refuses to run
any of them unless the operator opted out (the last test).
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from assistd.config import Settings
from assistd.tools.code_interpreter import CodeInterpreter
from assistd.tools.code_interpreter.interpreter import CodeInterpreterUnavailable
from tests.sandbox_support import lacking, require_isolation

SECRET_ENV = "ASSISTD_TEST_SANDBOX_SECRET"
SECRET_VALUE = "env-secret-" + uuid.uuid4().hex
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def isolation():
    """These tests run kernels in the sandbox: without it, the interpreter refuses (test_code_fail_closed)."""
    require_isolation()


@pytest.fixture(scope="module")
def ci(isolation):
    os.environ[SECRET_ENV] = SECRET_VALUE  # the server's environment: must never reach the kernel
    interpreter = CodeInterpreter(
        Settings(kernel_pool_size=1, code_timeout_seconds=3, code_preload="", code_max_processes=64)
    )
    interpreter.start()
    yield interpreter
    interpreter.shutdown()
    os.environ.pop(SECRET_ENV, None)


def protections(ci: CodeInterpreter) -> dict[str, bool]:
    return {name: on for name, on, _why in ci.sandbox_report()}


def need(ci: CodeInterpreter, *names: str) -> None:
    report = {name: (on, why) for name, on, why in ci.sandbox_report()}
    for name in names:
        on, why = report[name]
        if not on:
            lacking(f"{name}: {why}")


def need_any(ci: CodeInterpreter, *names: str) -> None:
    report = {name: (on, why) for name, on, why in ci.sandbox_report()}
    if not any(report[name][0] for name in names):
        whys = "; ".join(f"{name}: {report[name][1]}" for name in names)
        lacking(f"every mechanism that would contain this: {whys}")


def run(ci: CodeInterpreter, thread: str, code: str):
    return ci.execute("hostile", thread, code, [])


def assert_recovered(ci: CodeInterpreter, thread: str) -> None:
    """A normal execution still works in the same thread after the attack."""
    result = run(ci, thread, "print(6 * 7)")
    assert not result.error, result.logs
    assert "42" in result.logs


def test_read_etc_shadow(ci):
    need_any(ci, "private filesystem view", "unprivileged user")
    result = run(ci, "t-shadow", "print(open('/etc/shadow').read())")
    assert result.error
    assert "root:" not in result.logs
    assert "FileNotFoundError" in result.logs or "PermissionError" in result.logs
    assert_recovered(ci, "t-shadow")


def test_read_server_data_dir(isolation):
    # A fake data/ dir, world-readable like a default install, outside the kernel's session directory.
    data = Path(tempfile.mkdtemp(prefix="assistd-fake-data-", dir="/var/tmp"))
    try:
        data.chmod(0o755)
        secret = data / "assistd.db"
        secret.write_text("top-secret-row")
        secret.chmod(0o644)
        interpreter = CodeInterpreter(Settings(data_dir=data, code_timeout_seconds=3, code_preload=""))
        try:
            need(interpreter, "private filesystem view")
            code = f"import os\nprint(open({str(secret)!r}).read())\n"
            result = interpreter.execute("hostile", "t-data", code, [])
            assert result.error
            assert "top-secret-row" not in result.logs
            listing = interpreter.execute(
                "hostile", "t-data", f"import os; print(os.path.exists({str(data)!r}))", []
            )
            assert listing.logs.strip() == "False"
            assert_recovered(interpreter, "t-data")
        finally:
            interpreter.shutdown()
    finally:
        for f in data.iterdir():
            f.unlink()
        data.rmdir()


@pytest.mark.parametrize(
    "target",
    ["/tmp/{m}", "/var/tmp/{m}", str(REPO / "{m}"), str(REPO / "src" / "{m}"), "{venv}/{m}"],
)
def test_write_outside_working_dir(ci, target):
    marker = "hostile-" + uuid.uuid4().hex
    path = target.format(m=marker, venv=os.path.realpath(sys.prefix))
    if target.startswith(("/tmp", "/var/tmp")):
        need(ci, "private filesystem view")  # without it, these are the host's, world-writable
    need_any(ci, "private filesystem view", "unprivileged user")
    code = f"open({path!r}, 'w').write('owned')\nprint('wri' + 'tten'.upper())"
    result = run(ci, "t-write", code)
    assert not os.path.exists(path), f"the kernel wrote {path} on the host"
    if not result.error:  # allowed only where the write landed in the sandbox's own private view
        assert target.startswith("/tmp")
        assert run(ci, "t-write", f"print(open({path!r}).read())").logs.strip() == "owned"
    assert_recovered(ci, "t-write")


def test_network_connection_to_host_port(ci):
    need(ci, "network isolation")
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]
    code = (
        "import socket\n"
        f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "print('con' + 'nected'.upper())\n"
    )
    try:
        result = run(ci, "t-net", code)
        server.settimeout(0.2)  # a connection that got through would wait in the backlog
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    assert result.error
    assert "conNECTED" not in result.logs
    outside = run(ci, "t-net", "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)")
    assert outside.error
    assert_recovered(ci, "t-net")


def test_dns_lookup(ci):
    need(ci, "network isolation")
    result = run(ci, "t-dns", "import socket\nprint(socket.getaddrinfo('pypi.org', 443))")
    assert result.error
    assert "gaierror" in result.logs or "OSError" in result.logs
    assert_recovered(ci, "t-dns")


def test_fork_bomb(ci):
    need(ci, "process limit")
    result = run(ci, "t-fork", "import os\nwhile True:\n    os.fork()")
    assert result.error
    assert_recovered(ci, "t-fork")
    # nothing of the bomb survives the execution
    kernel = ci.sessions["t-fork"].kernel
    assert kernel is not None and kernel.strays() == []


def test_allocate_10_gb(ci):
    result = run(ci, "t-mem", "x = bytearray(10 * 1024**3)\nprint('all' + 'ocated'.upper())")
    assert result.error
    assert "allOCATED" not in result.logs
    assert "MemoryError" in result.logs or "kernel died" in result.logs
    assert_recovered(ci, "t-mem")


def test_infinite_loop_times_out(ci):
    result = run(ci, "t-loop", "x = 1\nwhile True:\n    pass")
    assert result.error
    assert "timed out" in result.logs
    assert_recovered(ci, "t-loop")
    assert run(ci, "t-loop", "print(x)").logs.strip() == "1"  # interrupted, not restarted: state kept


def test_loop_that_ignores_interrupt_is_restarted_while_others_are_served(ci):
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    results = []
    hog = threading.Thread(target=lambda: results.append(run(ci, "t-stuck", code)), daemon=True)
    hog.start()  # lasts the timeout, the interrupt grace and a restart
    time.sleep(0.3)
    neighbour = run(ci, "t-neighbour", "print(6 * 7)")
    assert "42" in neighbour.logs
    assert hog.is_alive()  # another thread was served while the hog still ran
    hog.join(timeout=30)
    assert results[0].error
    assert "restarted" in results[0].logs
    assert_recovered(ci, "t-stuck")


def test_kill_parent(ci):
    need_any(ci, "pid namespace", "unprivileged user")
    result = run(ci, "t-ppid", "import os\nos.kill(os.getppid(), 9)\nprint('sen' + 't'.upper())")
    assert result.error  # PermissionError: the parent is root's (bwrap's init, or the server)
    assert "senT" not in result.logs
    assert os.getpid()  # the server (this process) is still here
    assert_recovered(ci, "t-ppid")


def test_kill_everything(ci):
    # kill -9 -1 from the server's own uid without a pid namespace would kill the test runner itself
    report = protections(ci)
    if not (report["pid namespace"] or report["unprivileged user"]):
        lacking("no pid namespace and no unprivileged uid")
    bystander = threading.Event()
    run(ci, "t-killall", "import os\nos.system('kill -9 -1')\nprint('don' + 'e'.upper())")
    bystander.set()
    assert bystander.is_set()  # we are alive
    assert_recovered(ci, "t-killall")


def test_environment_not_visible(ci):
    need_any(ci, "pid namespace", "unprivileged user")  # /proc/<server pid>/environ
    assert os.environ[SECRET_ENV] == SECRET_VALUE
    code = (
        "import os, glob\n"
        "print(dict(os.environ))\n"
        "for p in glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        "        print(open(p, 'rb').read())\n"
        "    except OSError as e:\n"
        "        print(p, type(e).__name__)\n"
    )
    result = run(ci, "t-env", code)
    assert SECRET_VALUE not in result.logs
    assert SECRET_ENV not in result.logs
    parent = run(ci, "t-env", f"print(open('/proc/{os.getpid()}/environ', 'rb').read())")
    assert SECRET_VALUE not in parent.logs
    assert_recovered(ci, "t-env")


def test_other_sessions_files_not_visible(ci):
    need_any(ci, "private filesystem view", "unprivileged user")
    run(ci, "t-owner", "open('/mnt/data/private.txt', 'w').write('mine')")
    owner_dir = ci.sessions["t-owner"].kernel.plan.data_dir
    result = run(ci, "t-thief", f"print(open({str(owner_dir / 'private.txt')!r}).read())")
    assert result.error
    assert "mine" not in result.logs
    assert_recovered(ci, "t-thief")


def test_symlinks_do_not_leak_host_files(ci):
    """The server reads outputs and writes inputs as root on the host: links the code plants must not
    make it read or write a host path."""
    code = (
        "import os\n"
        "os.symlink('/etc/shadow', '/mnt/data/shadow.txt')\n"
        "os.symlink('/etc', '/mnt/data/etc')\n"
        "open('/mnt/data/plain.txt', 'w').write('ok')\n"
    )
    result = run(ci, "t-link", code)
    assert dict(result.files) == {"plain.txt": b"ok"}
    target = f"/tmp/hostile-target-{uuid.uuid4().hex}"
    run(ci, "t-link", f"import os\nos.symlink({target!r}, '/mnt/data/input.csv')")
    after = ci.execute("hostile", "t-link", "print('ran')", [("input.csv", b"a,b\n")])
    assert not os.path.exists(target), "the server followed a planted link when copying an input file"
    assert "ran" in after.logs
    assert_recovered(ci, "t-link")


@pytest.mark.parametrize("machine", [{"code_use_bwrap": False}, {"code_bwrap_path": "/nonexistent/bwrap"}])
def test_without_bubblewrap_hostile_code_is_refused(machine):
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_preload="", **machine))
    try:
        marker = f"/tmp/hostile-{uuid.uuid4().hex}"
        with pytest.raises(CodeInterpreterUnavailable):
            interpreter.execute("hostile", "t-refused", f"open({marker!r}, 'w').write('owned')", [])
        assert not os.path.exists(marker)
    finally:
        interpreter.shutdown()
