"""Per-session limits of the code interpreter that go beyond one process's rlimits: the session's disk cap
(/mnt/data and the kernel's home, code_session_mb) and the kernel's cgroup (memory of all its processes
together, CPU share)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from assistd.config import Settings
from assistd.tools.code_interpreter import CodeInterpreter
from assistd.tools.code_interpreter.limits import MB, disk_usage
from tests.sandbox_support import lacking, require_mechanism

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
    return session_usage_of(ci.sessions[thread].kernel)


def session_usage_of(kernel) -> int:
    return disk_usage(kernel.plan.data_dir) + disk_usage(kernel.plan.run_dir / "home")


def test_writing_5_times_100_mb_is_stopped_with_a_clear_error(ci):
    cap = ci.settings.code_session_mb
    assert cap < 500  # the default stops the case of the issue
    ci.execute("p", "t-disk", "keep = 7\nopen('/mnt/data/small.txt', 'w').write('small')", [])
    result = ci.execute("p", "t-disk", FIVE_TIMES_100_MB, [])
    assert result.error
    assert "ALL WRITTEN" not in result.logs
    assert f"at most {cap} MB" in result.logs and "Stopped: the files" in result.logs
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
    assert result.error and "Stopped: the files" in result.logs
    assert session_usage(ci, "t-home") <= ci.settings.code_session_mb * MB


@pytest.fixture(scope="module")
def small():
    """A 20 MB cap: room for 5120 empty files (each counts 4 KB)."""
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_preload="", code_session_mb=20))
    if interpreter.unavailable_reason() is not None:
        lacking(interpreter.unavailable_reason())
    yield interpreter
    interpreter.shutdown()


def test_a_million_empty_files_are_not_free(small):
    code = (
        "import os\nos.mkdir('/mnt/data/d')\n"
        "for i in range(1_000_000):\n    open(f'/mnt/data/d/{i}', 'w').close()"
    )
    result = small.execute("p", "t-inodes", code, [])
    assert result.error and "Stopped: the files" in result.logs and "more." in result.logs
    assert session_usage(small, "t-inodes") <= 20 * MB
    again = small.execute("p", "t-inodes", "print(len(__import__('os').listdir('/mnt/data/d')) < 5120)", [])
    assert not again.error and "True" in again.logs


def test_input_files_do_not_count_against_the_cap(small):
    big = b"a,b\n" + b"1,2\n" * (30 * MB // 4)  # 30 MB of CSV, more than the 20 MB cap
    code = "print(sum(1 for _ in open('/mnt/data/big.csv')))"
    result = small.execute("p", "t-input", code, [("big.csv", big)])
    assert not result.error, result.logs
    assert str(30 * MB // 4 + 1) in result.logs
    small.execute("p", "t-input", "import os\nos.remove('/mnt/data/big.csv')", [])
    two_files = "for n in 'ab':\n    open(f'/mnt/data/{n}.bin', 'wb').write(b'x' * (15 * 1024 * 1024))"
    again = small.execute("p", "t-input", two_files, [("big.csv", big)])
    assert again.error and "Stopped: the files" in again.logs  # a re-placed input adds no room


def test_a_thread_left_writing_after_the_execution_is_stopped(ci):
    code = (
        "import threading, time\n"
        "def fill():\n"
        "    for i in range(5):\n"
        "        open(f'/mnt/data/bg{i}.bin', 'wb').write(b'x' * (100 * 1024 * 1024))\n"
        "        time.sleep(0.5)\n"
        "threading.Thread(target=fill).start()\n"
        "print('started')\n"
    )
    result = ci.execute("p", "t-background", code, [])
    assert not result.error and "started" in result.logs  # the execution itself wrote nothing
    kernel = ci.sessions["t-background"].kernel
    deadline = time.monotonic() + 60
    while kernel.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not kernel.alive()
    # The watcher stops the kernel, then removes what it wrote past the cap: wait for the second part too.
    while session_usage_of(kernel) > ci.settings.code_session_mb * MB and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_usage_of(kernel) <= ci.settings.code_session_mb * MB
    after = ci.execute("p", "t-background", "print('next')", [])
    assert "code left running after an execution went past it" in after.logs
    assert "next" in after.logs and session_usage(ci, "t-background") <= ci.settings.code_session_mb * MB


def test_sessions_have_separate_caps(ci):
    code = "for name in ('a', 'b'):\n    open(f'/mnt/data/{name}.bin', 'wb').write(b'z' * (90 * 1024 * 1024))"
    for thread in ("t-cap-a", "t-cap-b"):
        result = ci.execute("p", thread, code, [])
        assert not result.error, result.logs


# Three children of 300 MB each: every process is under RLIMIT_AS (512 MB), together they are not.
THREE_CHILDREN_OF_300_MB = """
import subprocess, sys
child = "import sys, time; b = bytearray(300 * 1024 * 1024); print('ok', flush=True); time.sleep(120)"
procs = [subprocess.Popen([sys.executable, '-c', child], stdout=subprocess.PIPE, text=True) for _ in range(3)]
for p in procs:
    p.stdout.readline()
alive = 0
for p in procs:
    try:
        p.wait(timeout=3)
    except subprocess.TimeoutExpired:
        alive += 1
for p in procs:
    p.kill()
    p.wait()
print('ALIVE', alive)
"""


def limited(**fields) -> CodeInterpreter:
    interpreter = CodeInterpreter(
        Settings(kernel_pool_size=0, code_preload="", code_timeout_seconds=120, code_memory_mb=512, **fields)
    )
    if interpreter.unavailable_reason() is not None:
        lacking(interpreter.unavailable_reason())
    return interpreter


def test_start_log_says_which_cgroup_limits_are_on():
    interpreter = limited()
    try:
        report = {name: (on, why) for name, on, why in interpreter.sandbox_report()}
        memory_on, memory_why = report["cgroup memory cap"]
        require_mechanism(memory_on, f"a writable cgroup tree: {memory_why}")
        assert "512 MB" in memory_why and report["cgroup cpu share"][0]
    finally:
        interpreter.shutdown()


def test_a_kernel_and_all_it_starts_share_one_memory_cap():
    interpreter = limited()
    try:
        require_mechanism(interpreter.cgroups.active, f"a writable cgroup tree: {interpreter.cgroups.why}")
        result = interpreter.execute("p", "t-cg-mem", THREE_CHILDREN_OF_300_MB, [])
        assert "ALIVE 3" not in result.logs, result.logs
        kernel = interpreter.sessions["t-cg-mem"].kernel
        assert kernel.cgroup is not None and kernel.cgroup.oom_kills() >= 1
        assert not interpreter.execute("p", "t-cg-mem", "print(1)", []).error  # usable afterwards
    finally:
        interpreter.shutdown()


def test_without_the_cgroup_the_same_code_holds_900_mb():
    """The control of the test above: the per-process limit alone lets the three children live."""
    interpreter = limited(code_use_cgroups=False)
    try:
        result = interpreter.execute("p", "t-no-cg", THREE_CHILDREN_OF_300_MB, [])
        assert "ALIVE 3" in result.logs, result.logs
    finally:
        interpreter.shutdown()


def test_the_kernel_is_held_to_its_cpu_share():
    interpreter = limited(code_cpu_cores=0.2)
    try:
        require_mechanism(interpreter.cgroups.active, f"a writable cgroup tree: {interpreter.cgroups.why}")
        code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5:\n    pass"
        interpreter.execute("p", "t-cg-cpu", code, [])
        kernel = interpreter.sessions["t-cg-cpu"].kernel
        own = Path(f"/proc/{kernel.host_pid}/cgroup").read_text()
        assert all(d.name in own for d in kernel.cgroup.dirs)  # the kernel process is in its groups
        # 0.5 s of CPU at 0.2 core needs at least 25 periods of 100 ms: the group was throttled.
        assert kernel.cgroup.counter("cpu.stat", "nr_throttled") > 0
    finally:
        interpreter.shutdown()
