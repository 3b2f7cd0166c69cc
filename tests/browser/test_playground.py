"""The Playground in headless Chromium against the real server: create an assistant, chat with a streamed
reply, see the run's steps in the inspector, complete a function call through the page.

The browser is Debian's `chromium`, driven by `playwright-core` from npm (tests/browser/package.json,
installed by `make install`) through drive.mjs; each scenario prints one JSON line of what it saw."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import KEY_A

pytestmark = pytest.mark.contract

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "drive.mjs"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str | None:
    if path := os.environ.get("CHROMIUM_PATH"):
        return path if Path(path).exists() else None
    return next((found for name in CHROMIUM_CANDIDATES if (found := shutil.which(name))), None)


def _playwright_ready() -> bool:
    if (HERE / "node_modules" / "playwright-core").is_dir():
        return True
    npm = shutil.which("npm")
    if npm is None:
        return False
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, timeout=300
    )
    return done.returncode == 0 and (HERE / "node_modules" / "playwright-core").is_dir()


@pytest.fixture(scope="module")
def browser() -> dict[str, str]:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)")
    if shutil.which("node") is None:
        pytest.skip("no Node.js found: the browser is driven by playwright-core from npm")
    if not _playwright_ready():
        pytest.skip("playwright-core is not installed and npm could not install it (run `make install`)")
    return {"CHROMIUM_PATH": chromium}


def drive(browser: dict[str, str], server, scenario: str) -> dict:
    env = {**os.environ, **browser}
    done = subprocess.run(
        ["node", str(DRIVER), scenario, server.base_url, KEY_A],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the driver printed nothing\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    result = json.loads(lines[-1])
    assert result["ok"], f"{scenario} failed in the browser: {json.dumps(result, indent=2)}\n{done.stderr}"
    assert not [entry for entry in result["log"] if entry.startswith("pageerror")], result["log"]
    return result


def test_page_is_served_without_auth_and_root_redirects(server):
    root = httpx.get(f"{server.base_url}/", follow_redirects=False)
    assert root.status_code in (301, 302, 307, 308)
    assert root.headers["location"].endswith("/playground")
    page = httpx.get(f"{server.base_url}/playground")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/playground/static/js/main.js" in page.text
    script = httpx.get(f"{server.base_url}/playground/static/js/main.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    # The API itself still wants the key.
    assert httpx.get(f"{server.base_url}/v1/assistants").status_code == 401


def test_chat_streams_the_reply_and_the_inspector_shows_the_run(browser, server, client):
    seen = drive(browser, server, "chat")
    assert seen["assistant_id"].startswith("asst_")
    assert client.beta.assistants.retrieve(seen["assistant_id"]).instructions == "You answer briefly."
    # The reply came as several thread.message.delta increments and equals the stored message.
    assert seen["reply"]["deltas"] >= 2, seen["reply"]
    stored = client.beta.threads.messages.retrieve(seen["reply"]["message_id"], thread_id=seen["thread_id"])
    assert stored.role == "assistant"
    assert stored.content[0].text.value == seen["reply"]["text"]
    # The inspector showed the completed run with its message_creation step, usage included.
    run = client.beta.threads.runs.retrieve(seen["run_id"], thread_id=seen["thread_id"])
    assert run.status == "completed"
    assert seen["steps"] >= 1
    assert seen["reply"]["message_id"] in seen["step_message"]
    assert seen["tokens_shown"]


def test_function_call_is_completed_through_the_page(browser, server, client):
    """requires_action shows the call; the outputs typed in the page are submitted (streamed) and the call's
    step completes with them. A tiny model may ask again after each output: the page answers up to three
    rounds, then stops the run with its Cancel button."""
    seen = drive(browser, server, "function_call")
    assert seen["calls"] >= 1
    assert "city" in seen["arguments_shown"]  # the required parameter of the function schema
    outputs = seen["outputs_shown"]
    assert outputs and all("sunny" in out for out in outputs), outputs
    run = client.beta.threads.runs.retrieve(seen["run_id"], thread_id=seen["thread_id"])
    assert run.status == seen["status"] and run.status in ("completed", "cancelled")
    steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=seen["thread_id"], order="asc").data
    calls = [call for step in steps if step.type == "tool_calls" for call in step.step_details.tool_calls]
    answered = [call for call in calls if call.function.output is not None]
    assert len(answered) == seen["calls"]
    assert all(call.function.name == "get_weather" for call in calls)
    assert all(json.loads(call.function.output)["sky"] == "sunny" for call in answered)
    if run.status == "completed":
        assert seen["reply"]["text"]


def test_vector_store_upload_and_file_search_results_with_scores(browser, server, client):
    seen = drive(browser, server, "knowledge")
    store_id = seen["store_info"].split()[-1]
    assistant = client.beta.assistants.retrieve(seen["assistant_id"])
    assert assistant.tool_resources.file_search.vector_store_ids == [store_id]
    assert seen["search_checked"] and any(t.type == "file_search" for t in assistant.tools)
    assert client.vector_stores.retrieve(store_id).file_counts.completed == 2
    # The inspector shows the search results (with their content, from include[]) ranked by score.
    assert seen["results"][0] == "vacation.md", seen
    assert seen["scores"] == sorted(seen["scores"], reverse=True) and 0 < seen["scores"][0] <= 1, seen
    assert any("25 days of paid vacation" in text for text in seen["contents"]), seen
    steps = client.beta.threads.runs.steps.list(run_id=seen["run_id"], thread_id=seen["thread_id"]).data
    assert any(step.type == "tool_calls" for step in steps)


def test_attachment_for_code_interpreter_and_code_with_logs_in_the_inspector(browser, server, client):
    seen = drive(browser, server, "code")
    file_id = seen["attachments"].split()[-1]
    assert client.files.retrieve(file_id).filename == "sales.csv"
    message = client.beta.threads.messages.list(thread_id=seen["thread_id"], order="asc").data[0]
    assert [(a.file_id, [t.type for t in a.tools]) for a in message.attachments] == [
        (file_id, ["code_interpreter"])
    ]
    run = client.beta.threads.runs.retrieve(seen["run_id"], thread_id=seen["thread_id"])
    assert run.tool_choice.type == "code_interpreter" and run.max_completion_tokens == 120
    # The inspector shows the code the model wrote and what it printed.
    steps = client.beta.threads.runs.steps.list(run_id=run.id, thread_id=seen["thread_id"], order="asc").data
    calls = [c for s in steps if s.type == "tool_calls" for c in s.step_details.tool_calls]
    assert calls[0].type == "code_interpreter"
    assert seen["code"] == calls[0].code_interpreter.input
    assert seen["outputs"] == len([o for o in calls[0].code_interpreter.outputs if o.type == "logs"])


def test_layout_fits_a_phone(browser, server):
    seen = drive(browser, server, "phone")
    assert seen["scroll"] <= seen["viewport"], seen
    assert all(width <= seen["viewport"] for width in seen["panels"]), seen
