"""Kernels never outlive their server: a kernel dies with a server killed by SIGKILL (parent-death signal,
with and without bubblewrap), and a starting server kills what dead servers left behind (the registry of
live kernels, tools/code_interpreter/reaper.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from assistd.config import Settings
from assistd.tools.code_interpreter import reaper
from assistd.tools.code_interpreter.cgroups import Cgroups
from assistd.tools.code_interpreter.interpreter import CodeInterpreter
from assistd.tools.code_interpreter.sandbox import UID_RANGE
from tests.sandbox_support import require_mechanism
from tests.support import ServerProcess

UNSANDBOXED = {"ASSISTD_CODE_USE_BWRAP": "false", "ASSISTD_CODE_ALLOW_UNSANDBOXED": "true"}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def kernel_processes(root: int) -> list[dict]:
    found = []
    for pid in reaper.descendants(root):
        try:
            if b"\0-m\0ipykernel_launcher\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append({"pid": pid, "start": reaper.process_start(pid)})
        except OSError:
            continue
    return found


def records_of(server_pid: int) -> list[Path]:
    out = []
    for path in reaper.registry_dir().glob("*.json"):
        try:
            if f'"pid": {server_pid},' in path.read_text():
                out.append(path)
        except OSError:
            continue
    return out


@pytest.mark.parametrize("env", [{}, UNSANDBOXED], ids=["bwrap", "unsandboxed"])
def test_a_kernel_dies_with_its_server_killed_by_sigkill(tmp_path, env):
    server = ServerProcess(tmp_path / "first", env={"ASSISTD_KERNEL_POOL_SIZE": "1", **env})
    try:
        kernels = wait_for(lambda: kernel_processes(server.proc.pid), 120, "the pooled kernel")
        assert records_of(server.proc.pid)  # the live kernel is recorded with its server's identity
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=30)
        wait_for(
            lambda: not any(reaper.is_alive(k) for k in kernels), 30, "the kernel to die with its server"
        )
    finally:
        server.stop()
    left = records_of(server.proc.pid)
    assert left  # a SIGKILL leaves no time to clean up: the next server does
    second = ServerProcess(tmp_path / "second", env={"ASSISTD_KERNEL_POOL_SIZE": "0", **env})
    try:
        wait_for(lambda: not any(p.exists() for p in left), 60, "the next server to clear the records")
    finally:
        second.stop()


def spawn_survivor() -> tuple[subprocess.Popen, dict]:
    """A stand-in for a kernel whose server died: a process with a child of its own, in its own session."""
    code = "import subprocess, time\nsubprocess.Popen(['sleep', '600'])\ntime.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    children = wait_for(lambda: reaper.descendants(proc.pid), 30, "the survivor's child")
    child = {"pid": children[0], "start": reaper.process_start(children[0])}
    return proc, child


def gone_server() -> dict:
    proc = subprocess.Popen(["true"])
    start = reaper.process_start(proc.pid)
    proc.wait()
    return {"pid": proc.pid, "start": start or 1}


def test_a_starting_interpreter_kills_kernels_of_dead_servers_only():
    orphan, orphan_child = spawn_survivor()
    bystander, bystander_child = spawn_survivor()
    orphan_record = reaper.record(orphan.pid, None, server=gone_server())
    bystander_record = reaper.record(bystander.pid, None)  # its server (this process) is alive
    assert orphan_record and bystander_record
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_preload=""))
    try:
        interpreter.start()
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        wait_for(lambda: not reaper.is_alive(orphan_child), 10, "the orphan's child to die")
        assert not orphan_record.exists()
        assert bystander.poll() is None and reaper.is_alive(bystander_child)
        assert bystander_record.exists()
    finally:
        interpreter.shutdown()
        for proc, child in ((orphan, orphan_child), (bystander, bystander_child)):
            if reaper.is_alive(child):
                os.kill(child["pid"], signal.SIGKILL)
            proc.kill()
            proc.wait()
        reaper.forget(bystander_record)


def test_processes_of_a_dead_servers_kernel_uid_are_killed():
    """Without a pid namespace, what the code started may have left the kernel's process tree (setsid,
    double fork): it still runs as the kernel's uid, which a starting server clears when no live kernel
    holds it."""
    require_mechanism(os.geteuid() == 0, "root: kernels get their own uid only when the server is root")
    settings = Settings(kernel_pool_size=0, code_preload="")
    uid = settings.code_sandbox_uid_base + UID_RANGE - 1
    stray = subprocess.Popen(["sleep", "600"], user=uid, group=uid, start_new_session=True)
    # The kernel process itself is gone, and so is its server; the stray is not.
    data = {"server": gone_server(), "kernel": gone_server(), "uid": uid}
    reaper.registry_dir().mkdir(mode=0o700, exist_ok=True)
    record = reaper.registry_dir() / f"{data['kernel']['pid']}-{data['kernel']['start']}.json"
    record.write_text(json.dumps(data))
    interpreter = CodeInterpreter(settings)
    try:
        interpreter.start()
        assert stray.wait(timeout=10) == -signal.SIGKILL
        assert not record.exists()
    finally:
        interpreter.shutdown()
        stray.kill()
        stray.wait()


def test_what_a_dead_kernel_started_is_killed_too():
    """The parent-death signal ended the kernel, not the processes it started (without bubblewrap's pid
    namespace): those of the session the kernel led are killed."""
    orphan, orphan_child = spawn_survivor()
    kernel = {"pid": orphan.pid, "start": reaper.process_start(orphan.pid)}
    record = reaper.record(orphan.pid, None, server=gone_server())
    orphan.kill()  # the kernel died with its server; its child did not
    orphan.wait()
    assert reaper.is_alive(orphan_child) and not reaper.is_alive(kernel)
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_preload=""))
    try:
        interpreter.start()
        wait_for(lambda: not reaper.is_alive(orphan_child), 10, "the dead kernel's child to die")
        assert not record.exists()
    finally:
        interpreter.shutdown()
        if reaper.is_alive(orphan_child):
            os.kill(orphan_child["pid"], signal.SIGKILL)


def test_what_runs_in_a_dead_servers_cgroup_is_killed():
    probe = Cgroups(256 * 1024 * 1024, 1.0)
    require_mechanism(probe.active, f"a writable cgroup tree: {probe.why}")
    dead = gone_server()
    stale = Cgroups(256 * 1024 * 1024, 1.0)
    stale.name = f"assistd-{dead['pid']}-dead00"
    stale._probed = False
    group = stale.create("leftover")  # makes the dead server's group and a kernel group in it
    assert group is not None
    code = (
        "import os, sys, time\n"
        "for p in sys.argv[1:]:\n    open(p, 'w').write(str(os.getpid()))\n"
        "time.sleep(600)"
    )
    leftover = subprocess.Popen([sys.executable, "-c", code, *map(str, group.procs)], start_new_session=True)
    wait_for(lambda: str(leftover.pid) in group.procs[0].read_text().split(), 30, "the process in the group")
    probe.close()
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_preload=""))
    try:
        interpreter.start()
        assert leftover.wait(timeout=10) == -signal.SIGKILL
        assert not any(d.exists() for d in group.dirs)
        assert not any(d.exists() for d in stale.groups.values())
    finally:
        interpreter.shutdown()
        leftover.kill()
        leftover.wait()
        group.remove()
        stale.close()


def test_directories_planted_in_the_temp_dir_are_not_trusted(tmp_path, monkeypatch):
    """The kernel registry and the uid lock files live in the shared temp dir: a directory another user
    made there first (or one anybody may write) would let them steer which processes the server kills, or
    which files it creates, as root."""
    require_mechanism(os.geteuid() == 0, "root: kernels get their own uid only when the server is root")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for name in (f"assistd-kernels-{os.geteuid()}", "assistd-uids"):
        planted = tmp_path / name
        planted.mkdir(mode=0o777)
        planted.chmod(0o777)
        os.chown(planted, 65534, 65534)
    target = tmp_path / "victim"
    (tmp_path / "assistd-uids" / f"{Settings().code_sandbox_uid_base}.lock").symlink_to(target)
    assert reaper.record(os.getpid(), None) is None  # not recorded in a directory it does not own
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_preload=""))
    try:
        result = interpreter.execute("p", "t-planted", "print(1)", [])
        assert result.error and "not a private directory" in result.logs
        assert not target.exists()
    finally:
        interpreter.shutdown()
