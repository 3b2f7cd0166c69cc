"""The Playground in headless Chromium against the real server: create an assistant, chat with a streamed
reply, see the run's steps in the inspector, complete a function call through the page; in the Responses
mode, a streamed response, a second turn with previous_response_id, a function call answered from the
inspector, file_search results, and back to the Assistants mode; images picked or pasted into a message, in
both modes, uploaded for vision and shown in the thread.

The browser is Debian's `chromium`, driven by `playwright-core` from npm (tests/browser/package.json,
installed by `make install`) through drive.mjs; each scenario prints one JSON line of what it saw. In CI
(CI=true) a missing browser, Node.js or playwright-core is a failure, elsewhere a skip that says which."""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import httpx
import pytest

from tests.support import KEY_A

pytestmark = pytest.mark.contract

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "drive.mjs"
GOODBYE = "Now say goodbye in one short sentence."  # the second message of drive.mjs's responses scenario
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


def _png(rgb: tuple[int, int, int], width: int = 6, height: int = 4) -> bytes:
    """A small PNG of one colour (8-bit RGB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


# drive.mjs attaches these (DRIVE_PNGS): picked with the file chooser, pasted, picked and removed again.
PNGS = [_png((220, 30, 30), 6, 4), _png((30, 160, 60), 5, 3), _png((30, 60, 200), 4, 4)]
PNG_ENV = {"DRIVE_PNGS": json.dumps([base64.b64encode(png).decode() for png in PNGS])}


def _lacking(message: str) -> None:
    """In CI (.ci/run installs chromium, `make install` playwright-core) the browser tests never skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}: in CI it must be there")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> dict[str, str]:
    chromium = _chromium()
    if chromium is None:
        _lacking("no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)")
    if shutil.which("node") is None:
        _lacking("no Node.js found: the browser is driven by playwright-core from npm")
    if not _playwright_ready():
        _lacking("playwright-core is not installed and npm could not install it (run `make install`)")
    return {"CHROMIUM_PATH": chromium}


def drive(browser: dict[str, str], server, scenario: str, extra: dict[str, str] | None = None) -> dict:
    env = {**os.environ, **browser, **(extra or {})}
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
    for mode in (seen, seen["responses"]):  # the Assistants panels, then the Responses panels
        assert mode["scroll"] <= mode["viewport"], seen
        widths = mode["panels"]
        assert len(widths) == 3 and all(0 < width <= mode["viewport"] for width in widths), seen


def test_responses_mode_streams_continues_and_switches_back(browser, server, client):
    """A message is a streamed response: its text grows in the page as output_text deltas come, and the
    inspector shows the response with its message item and usage; the second message continues it with
    previous_response_id; a reload reads the chat back; the Assistants mode still works after it."""
    seen = drive(browser, server, "responses")
    first, second = seen["first"], seen["second"]
    text = first["bubble"]["text"]
    assert first["bubble"]["deltas"] >= 2, first
    assert len(seen["streamed"]) >= 2 and all(text.startswith(part) for part in seen["streamed"]), seen
    stored = client.responses.retrieve(first["response_id"])
    assert stored.status == first["status"] and stored.status in ("completed", "incomplete")
    assert [(item["type"], item["id"]) for item in first["items"]] == [(i.type, i.id) for i in stored.output]
    message = stored.output[-1]
    assert message.type == "message" and message.id == first["bubble"]["item_id"]
    assert message.content[0].text == text == first["items"][-1]["text"]
    usage = stored.usage
    assert first["facts"]["usage"].startswith(f"input {usage.input_tokens} ")
    assert first["facts"]["usage"].endswith(f"= {usage.total_tokens}")
    assert first["input"] == ["message"]
    # The second turn continued the first with previous_response_id.
    follow = client.responses.retrieve(second["response_id"])
    assert follow.previous_response_id == first["response_id"] == second["facts"]["previous"]
    assert follow.output[-1].content[0].text == second["bubble"]["text"]
    sent = client.responses.input_items.list(second["response_id"]).data
    assert [(i.type, i.content[0].text) for i in sent] == [("message", GOODBYE)]
    assert seen["chain"].endswith(second["response_id"])
    assert seen["picked"] == first["response_id"]
    # Read back after a reload: the same bubbles, both responses in the inspector.
    reloaded = seen["reloaded"]
    assert reloaded["mode"] == "responses" and reloaded["responses"] == 2, reloaded
    assert reloaded["bubbles"] == seen["bubbles"] == 4, seen
    assert reloaded["texts"] == [text, second["bubble"]["text"]]
    # Back in the Assistants mode: a run streams its reply as before.
    back = seen["assistants"]
    assert back["hidden_responses"]
    reply = back["reply"]
    stored_reply = client.beta.threads.messages.retrieve(reply["message_id"], thread_id=back["thread_id"])
    assert stored_reply.content[0].text.value == reply["text"] and reply["deltas"] >= 2


def test_responses_function_call_file_search_and_conversation(browser, server, client):
    """The inspector shows a function call's name and arguments; the output typed there goes back as a
    function_call_output item with previous_response_id. A file_search response shows its queries and its
    results (asked for with include) ranked by score. A chat can continue with a conversation instead."""
    upload = client.files.create(
        file=("vacation.md", b"# Vacation\n\nEvery employee has 25 days of paid vacation per year.\n"),
        purpose="assistants",
    )
    store = client.vector_stores.create(name="browser-responses")
    batch = client.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=[upload.id])
    assert batch.file_counts.completed == 1
    seen = drive(browser, server, "responses_tools", {"DRIVE_VECTOR_STORE": store.id})
    called = seen["called"]
    call = client.responses.retrieve(seen["call"]["response_id"])
    calls = [item for item in call.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and called["name"] == "function_call get_weather"
    assert called["call_id"] == calls[0].call_id
    assert json.loads(called["arguments"]) == json.loads(calls[0].arguments) and "city" in called["arguments"]
    assert called["chat"] == f"get_weather({calls[0].arguments})"
    # The typed output went back in the next request, which continued the call's response.
    answer = client.responses.retrieve(seen["answer"]["response_id"])
    assert answer.previous_response_id == call.id
    sent = client.responses.input_items.list(answer.id).data
    assert [(i.type, i.call_id, json.loads(i.output)) for i in sent] == [
        ("function_call_output", calls[0].call_id, {"temperature_c": 21, "sky": "sunny"})
    ]
    assert seen["answer"]["input"] == ["function_call_output"]
    assert json.loads(seen["output_shown"]) == {"temperature_c": 21, "sky": "sunny"}
    # file_search: the queries and results of the stored call, as the inspector showed them.
    search = client.responses.retrieve(seen["search"]["response_id"], include=["file_search_call.results"])
    searched = next(item for item in search.output if item.type == "file_search_call")
    assert seen["queries"] == searched.queries
    assert seen["results"] == [r.filename for r in searched.results] and seen["results"][0] == "vacation.md"
    assert seen["scores"] == sorted(seen["scores"], reverse=True) and 0 < seen["scores"][0] <= 1, seen
    assert any("25 days of paid vacation" in text for text in seen["contents"]), seen
    # A chat continued with a conversation: both responses in it, their items appended in order.
    turns = seen["conversation"]["turns"]
    conversation_id = seen["conversation"]["chain"].split()[-1]
    assert conversation_id.startswith("conv_"), seen["conversation"]
    for turn in turns:
        response = client.responses.retrieve(turn["response_id"])
        assert response.conversation.id == conversation_id and response.previous_response_id is None
        assert turn["facts"]["conversation"] == conversation_id
    items = client.conversations.items.list(conversation_id, order="asc").data
    assert [(i.type, i.role) for i in items] == [("message", "user"), ("message", "assistant")] * 2
    assert items[1].id == turns[0]["bubble"]["item_id"] and items[3].id == turns[1]["bubble"]["item_id"]


def test_responses_inspector_shows_reasoning_and_code_items(browser, server):
    """Items the test model cannot make (reasoning) or the test cannot count on (code runs): their stream
    events through the page's builder, then the inspector's views of the items it built."""
    seen = drive(browser, server, "responses_items")
    assert seen["lengths"] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3] and seen["sequence"] == 13
    reasoning, code, message = seen["built"]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "The user wants 2+3."}]
    assert (code["code"], code["outputs"], code["status"]) == (
        "print(2+3)",
        [{"type": "logs", "logs": "5\n"}],
        "completed",
    )
    assert message["content"][0]["text"] == "It is 5."
    assert [(v["type"], v["pre"]) for v in seen["views"]] == [
        ("reasoning", ["The user wants 2+3."]),
        ("code_interpreter_call", ["print(2+3)", "5\n"]),
        ("message", []),
    ]
    assert seen["views"][2]["text"] == "It is 5."


def _ended_or_refused(notice: dict, failed: str | None) -> None:
    """A text-only model may refuse images (a failed run or response, or a 400): the page then shows that
    error instead of hanging; otherwise it says the run or response ended."""
    if failed is not None:
        assert notice["error"] and failed in notice["text"], notice
    elif notice["error"]:
        assert notice["text"] and not notice["text"].startswith("Uploading"), notice
    else:
        assert notice["text"].endswith("completed."), notice


def test_images_picked_and_pasted_go_with_the_message_and_show_in_the_thread(browser, server, client):
    """Two images picked with "Attach image" (one removed again) and one pasted into the message box: on
    send both are uploaded with purpose vision and the message has a text part and two image_file parts;
    the thread shows them, loaded with the API key. The run that follows may fail (a text-only model)."""
    seen = drive(browser, server, "images", PNG_ENV)
    assert (seen["picked"], seen["after_remove"]) == (2, 1), seen
    assert seen["paste_handled"] is True
    assert [p["name"] for p in seen["pending"]] == ["picked.png", "pasted.png"]
    assert all(p["width"] > 0 for p in seen["pending"]), seen["pending"]
    message = client.beta.threads.messages.retrieve(seen["message_id"], thread_id=seen["thread_id"])
    assert message.role == "user"
    assert [part.type for part in message.content] == ["text", "image_file", "image_file"]
    assert message.content[0].text.value == "What is in this picture?" == seen["text"][0]
    file_ids = [part.image_file.file_id for part in message.content[1:]]
    assert [part.image_file.detail for part in message.content[1:]] == ["auto", "auto"]
    for file_id, sent, name in zip(file_ids, PNGS, ["picked.png", "pasted.png"], strict=False):
        stored = client.files.retrieve(file_id)
        assert (stored.purpose, stored.filename) == ("vision", name)
        assert client.files.content(file_id).content == sent
    # Shown in the thread from blob URLs (fetched with the key), at their own widths.
    assert [(img["file_id"], img["width"], img["blob"]) for img in seen["shown"]] == [
        (file_ids[0], 6, True),
        (file_ids[1], 5, True),
    ]
    assert seen["tray_after"] == 0 and seen["input_after"] == ""
    # Opened again: the file images load again; of the image_url parts, the data: URL is an image and the
    # http URL only a link.
    assert [img["width"] for img in seen["reopened"]] == [6, 5, 4], seen["reopened"]
    assert seen["url_images"] == [{"data": True, "width": 4}]
    assert seen["url_links"] == ["http://example.invalid/cat.png"]
    runs = client.beta.threads.runs.list(thread_id=seen["thread_id"]).data
    assert len(runs) <= 1
    if runs:
        assert runs[0].status in ("completed", "incomplete", "failed"), runs[0]
    failed = runs[0].last_error.message if runs and runs[0].status == "failed" else None
    _ended_or_refused(seen["notice"], failed)
    if not runs:  # refused when created: the page said why
        assert seen["notice"]["error"], seen["notice"]


def test_responses_mode_sends_images_as_input_image_parts(browser, server, client):
    """In the Responses mode the picked and the pasted image go as input_image parts of the user message;
    when a response was made, its input items have them and the chat and the inspector show them. A model
    that refuses images leaves the message and its images in the composer, and the page shows the error."""
    seen = drive(browser, server, "responses_images", PNG_ENV)
    assert seen["pending"] == 2
    [message] = seen["sent"]["input"]
    assert (message["type"], message["role"]) == ("message", "user")
    assert message["content"][0] == {"type": "input_text", "text": "Describe this image."}
    images = message["content"][1:]
    assert [(p["type"], p["detail"]) for p in images] == [("input_image", "auto")] * 2, images
    file_ids = [p["file_id"] for p in images]
    for file_id, sent in zip(file_ids, PNGS, strict=False):
        assert client.files.retrieve(file_id).purpose == "vision"
        assert client.files.content(file_id).content == sent
    if seen["response_id"] is None:  # refused with an HTTP error: shown, and nothing is lost
        assert seen["notice"]["error"] and seen["notice"]["text"], seen
        assert seen["tray_after"] == 2 and seen["input_after"] == "Describe this image."
        return
    response = client.responses.retrieve(seen["response_id"])
    assert response.status == seen["status"]
    failed = response.error.message if response.status == "failed" else None
    _ended_or_refused(seen["notice"], failed)
    [item] = client.responses.input_items.list(seen["response_id"]).data
    assert [(p.type, getattr(p, "file_id", None)) for p in item.content] == [
        ("input_text", None),
        ("input_image", file_ids[0]),
        ("input_image", file_ids[1]),
    ]
    for shown in (seen["shown"], seen["inspected"], seen["reloaded"]):
        assert [(img["file_id"], img["width"]) for img in shown] == [(file_ids[0], 6), (file_ids[1], 5)], seen
    assert seen["tray_after"] == 0 and seen["input_after"] == ""
