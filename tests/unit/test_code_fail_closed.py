"""The code interpreter fails closed: without isolation (no working bubblewrap) it runs no code, says so at
start and in `assistd doctor`, and refuses assistants and runs that ask for it, unless the operator opted
out with code_allow_unsandboxed. Machines "without bubblewrap" are made with a bwrap path that does not
exist, a bwrap that does not work (/bin/false) and --no-code-use-bwrap."""

from __future__ import annotations

import logging
import threading

import httpx
import pytest

from assistd import doctor
from assistd.config import Settings
from assistd.errors import InvalidRequest
from assistd.tools.code_interpreter.interpreter import CodeInterpreter, CodeInterpreterUnavailable
from tests.sandbox_support import require_mechanism
from tests.support import KEY_A, ServerProcess
from tests.unit.engine_support import PROJECT, build_rig

NO_BWRAP = [
    {"code_bwrap_path": "/nonexistent/bwrap"},
    {"code_bwrap_path": "/bin/false"},
    {"code_use_bwrap": False},
]
CODE_TOOL = [{"type": "code_interpreter"}]


@pytest.mark.parametrize("machine", NO_BWRAP, ids=["missing", "broken", "disabled"])
def test_without_isolation_nothing_runs(machine, caplog):
    interpreter = CodeInterpreter(Settings(kernel_pool_size=1, code_preload="", **machine))
    try:
        with caplog.at_level(logging.INFO, logger="assistd.code_interpreter"):
            interpreter.start()
        reason = interpreter.unavailable_reason()
        assert reason is not None and "disabled" in reason and "--code-allow-unsandboxed" in reason
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("DISABLED" in line for line in errors), errors
        assert interpreter.pool.warm_count() == 0 and interpreter.pool.filling == 0  # no kernel was started
        with pytest.raises(CodeInterpreterUnavailable):
            interpreter.execute("p", "t-refused", "print(1)", [])
        assert len(interpreter.sessions) == 0
        with pytest.raises(InvalidRequest) as info:
            interpreter.check_tools([{"type": "function"}, *CODE_TOOL], "tools")
        assert info.value.param == "tools" and "bubblewrap" in info.value.message
        interpreter.check_tools([{"type": "file_search"}], "tools")  # other tools are fine
    finally:
        interpreter.shutdown()


def test_the_opt_out_runs_code_and_warns_loudly(caplog):
    interpreter = CodeInterpreter(
        Settings(
            kernel_pool_size=0,
            code_preload="",
            code_bwrap_path="/nonexistent/bwrap",
            code_allow_unsandboxed=True,
        )
    )
    try:
        with caplog.at_level(logging.INFO, logger="assistd.code_interpreter"):
            interpreter.start()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("UNSANDBOXED" in line and "privileges" in line for line in warnings), warnings
        assert interpreter.unavailable_reason() is None
        interpreter.check_tools(CODE_TOOL, "tools")
        result = interpreter.execute("p", "t-opt-out", "print(6 * 7)", [])
        assert not result.error and "42" in result.logs
    finally:
        interpreter.shutdown()


def test_a_working_bubblewrap_is_isolation():
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_preload=""))
    try:
        reason = interpreter.unavailable_reason()
        require_mechanism(reason is None, f"bubblewrap works here: {reason}")
        interpreter.check_tools(CODE_TOOL, "tools")
    finally:
        interpreter.shutdown()


def test_doctor_reports_the_refusal_and_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "CHECKS", [("sandbox", doctor.check_sandbox)])
    refused = Settings(data_dir=tmp_path, code_bwrap_path="/nonexistent/bwrap")
    check = doctor.check_sandbox(refused)
    assert not check.ok and not check.advisory
    assert "refused" in check.detail and "apt-get install bubblewrap" in check.fix
    assert doctor.main(refused) == 1
    assert "code_interpreter is refused" in capsys.readouterr().out
    opted_out = Settings(data_dir=tmp_path, code_bwrap_path="/nonexistent/bwrap", code_allow_unsandboxed=True)
    check = doctor.check_sandbox(opted_out)
    assert not check.ok and check.advisory and "UNSANDBOXED" in check.detail
    assert doctor.main(opted_out) == 0
    assert "UNSANDBOXED" in capsys.readouterr().out


def test_a_run_that_reaches_the_refused_tool_fails_with_a_clear_error(tmp_path):
    call = '[{"name": "code_interpreter", "arguments": {"code": "print(6 * 7)"}}]</tool_call>'
    rig = build_rig(tmp_path, ["<tool_call>", call, "The answer is 42."])
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_bwrap_path="/nonexistent/bwrap"))
    rig.executor.loop.toolbox.extras["code_interpreter"] = interpreter
    try:
        # An assistant made while the server still had its sandbox (no tools check on this rig).
        thread_id, assistant_id = rig.thread("Compute 6*7."), rig.assistant(tools=CODE_TOOL)
        run = rig.create_run(thread_id, assistant_id, tool_choice={"type": "code_interpreter"})
        rig.executor.execute(run.id, threading.Event())
        done = rig.runs.get(PROJECT, thread_id, run.id)
        assert done.status == "failed"
        assert "code interpreter is disabled" in done.last_error["message"]
        assert "bubblewrap" in done.last_error["message"]
        assert len(interpreter.sessions) == 0  # no kernel ran the code
    finally:
        interpreter.shutdown()


@pytest.fixture(scope="module")
def refusing_server(tmp_path_factory):
    proc = ServerProcess(
        tmp_path_factory.mktemp("refusing"), env={"ASSISTD_CODE_BWRAP_PATH": "/nonexistent/bwrap"}
    )
    yield proc
    proc.stop()


def test_the_api_refuses_code_interpreter_with_a_400(refusing_server):
    api = httpx.Client(
        base_url=f"{refusing_server.base_url}/v1",
        headers={"Authorization": f"Bearer {KEY_A}", "OpenAI-Beta": "assistants=v2"},
        timeout=60,
    )
    model = "SmolLM2-135M-Instruct"
    refused = api.post("/assistants", json={"model": model, "tools": CODE_TOOL})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "tools" and "code interpreter is disabled" in error["message"]
    fn = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    plain = api.post("/assistants", json={"model": model, "tools": [fn]})
    assert plain.status_code == 200, plain.text
    assistant_id = plain.json()["id"]
    update = api.post(f"/assistants/{assistant_id}", json={"tools": CODE_TOOL})
    assert update.status_code == 400 and update.json()["error"]["param"] == "tools"
    thread_id = api.post("/threads", json={}).json()["id"]
    run = api.post(f"/threads/{thread_id}/runs", json={"assistant_id": assistant_id, "tools": CODE_TOOL})
    assert run.status_code == 400 and run.json()["error"]["param"] == "tools"
    both = api.post(
        "/threads/runs", json={"assistant_id": assistant_id, "tools": [fn, *CODE_TOOL], "thread": {}}
    )
    assert both.status_code == 400 and both.json()["error"]["param"] == "tools"
    log = refusing_server.log()
    assert "code interpreter: DISABLED" in log and "/nonexistent/bwrap" in log
