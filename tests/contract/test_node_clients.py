"""Real JavaScript clients of the Responses API against the real server: the OpenAI Node SDK (`openai` on
npm, its `responses` and `responses.stream`) and the Vercel AI SDK (`ai`) with its Open Responses provider
(`@ai-sdk/open-responses`), each through the basic, streaming, tool-calling and multi-turn flows.

tests/node/clients.mjs runs one flow and prints one JSON line of what it saw; the packages are pinned in
tests/node/package.json and installed by `make install`. Where they must be there (CI, or as root as CI runs)
a missing Node.js or package is a failure, never a skip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import DEFAULT_MODEL, KEY_A, ROOT

pytestmark = [pytest.mark.model, pytest.mark.contract]

HERE = ROOT / "tests" / "node"
SCRIPT = HERE / "clients.mjs"
PACKAGES = ("openai", "ai", "@ai-sdk/open-responses")


def _must_have_node() -> bool:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return ci or os.geteuid() == 0  # CI runs as root, after .ci/run installed nodejs and npm


def _missing(message: str) -> None:
    if _must_have_node():
        pytest.fail(message + " (in CI, or as root, it must be there: .ci/run, then `make install`)")
    pytest.skip(message)


def _installed() -> bool:
    return all((HERE / "node_modules" / name / "package.json").is_file() for name in PACKAGES)


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        _missing("no Node.js found: the JavaScript clients run on it")
    if not _installed():
        npm = shutil.which("npm")
        if npm is None:
            _missing(f"{', '.join(PACKAGES)} are not installed in tests/node and npm is missing")
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0 or not _installed():
            _missing(f"npm could not install tests/node's packages (`make install`):\n{done.stderr[-2000:]}")
    return found


def run_client(node: str, server, client: str, scenario: str) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(SCRIPT), client, scenario, server.base_url, KEY_A, DEFAULT_MODEL],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{client} {scenario} printed nothing\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    seen = json.loads(lines[-1])
    assert seen["ok"], (
        f"{client} {scenario} failed: {json.dumps(seen['error'], indent=2)}\n"
        f"stderr:\n{done.stderr[-3000:]}\nserver log:\n{_log_tail(server)}"
    )
    return seen


def _log_tail(server, lines: int = 40) -> str:
    return "\n".join(Path(server.log_path).read_text(errors="replace").splitlines()[-lines:])


def ended(status: str) -> bool:
    """A greedy 135M model may talk until the token limit: incomplete is an answer here too."""
    return status in ("completed", "incomplete")


# --------------------------------------------------------------------------------------- OpenAI Node SDK


def test_openai_basic(node, server):
    seen = run_client(node, server, "openai", "basic")
    assert seen["id"].startswith("resp_")
    assert ended(seen["status"]) and seen["output_types"] == ["message"]
    assert seen["text"].strip()
    assert seen["retrieved_text"] == seen["text"] and seen["retrieved_status"] == seen["status"]
    usage = seen["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert "cached_tokens" in usage["input_tokens_details"]
    assert "reasoning_tokens" in usage["output_tokens_details"]


def test_openai_stream(node, server):
    seen = run_client(node, server, "openai", "stream")
    types = seen["types"]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        f"response.{seen['retrieved_status']}",
    ]
    assert ended(seen["retrieved_status"])
    assert seen["sequence"] == list(range(len(types)))
    assert seen["deltas"].strip()
    assert seen["deltas"] == seen["done_text"] == seen["final_text"] == seen["retrieved_text"]
    # The SDK's final response is response.completed's copy; on an incomplete one it keeps the snapshot of
    # response.created, whose status is not final.
    if seen["retrieved_status"] == "completed":
        assert seen["final_status"] == "completed"


def test_openai_tools(node, server):
    seen = run_client(node, server, "openai", "tools")
    assert seen["first_status"] == "completed"
    assert len(seen["calls"]) >= 1
    for call in seen["calls"]:
        assert call["name"] == "get_weather" and call["status"] == "completed"
        assert call["id"].startswith("fc_") and call["call_id"]
        assert set(json.loads(call["arguments"])) == {"city"}
    assert ended(seen["second_status"])
    assert seen["second_output_types"] == ["message"]
    assert seen["text"].strip()


def test_openai_multi_turn(node, server):
    seen = run_client(node, server, "openai", "multi_turn")
    assert ended(seen["first_status"]) and ended(seen["second_status"])
    assert seen["second_previous"] == seen["first_id"]
    assert seen["text"].strip()
    # The second prompt holds the first turn; its own input items are only the new message.
    first_tokens, second_tokens = seen["input_tokens"]
    assert second_tokens > first_tokens
    assert [(item["type"], item["role"]) for item in seen["input_items"]] == [("message", "user")]
    assert seen["input_items"][0]["id"].startswith("msg_")


# --------------------------------------------------------------- Vercel AI SDK, Open Responses provider


def test_ai_sdk_basic(node, server):
    seen = run_client(node, server, "ai-sdk", "basic")
    assert seen["id"].startswith("resp_")
    assert seen["text"].strip()
    assert seen["finish_reason"] in ("stop", "length")
    assert seen["usage"]["input"] > 0 and seen["usage"]["output"] > 0
    assert seen["warnings"] == []


def test_ai_sdk_stream(node, server):
    seen = run_client(node, server, "ai-sdk", "stream")
    assert seen["deltas"].strip() and seen["deltas"] == seen["final_text"]
    assert seen["finish_reason"] in ("stop", "length")
    assert seen["usage"]["inputTokens"] > 0 and seen["usage"]["outputTokens"] > 0


def test_ai_sdk_tools(node, server):
    seen = run_client(node, server, "ai-sdk", "tools")
    assert seen["calls"] and all(isinstance(city, str) for city in seen["calls"])
    first, second = seen["steps"]
    assert first["finish_reason"] == "tool-calls"
    assert [call["name"] for call in first["tool_calls"]] == ["get_weather"] * len(seen["calls"])
    assert second["finish_reason"] in ("stop", "length") and not second["tool_calls"]
    assert second["text"].strip() and seen["text"] == second["text"]
    assert first["response_id"].startswith("resp_") and second["response_id"].startswith("resp_")


def test_ai_sdk_multi_turn(node, server):
    seen = run_client(node, server, "ai-sdk", "multi_turn")
    assert seen["first_text"].strip() and seen["text"].strip()
    assert seen["finish_reason"] in ("stop", "length")
    # The AI SDK replays the history as input items: the first answer went back as an assistant message.
    sent = seen["sent_input"]
    assert [(item["type"], item["role"]) for item in sent] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert sent[1]["content"][0] == {"type": "output_text", "text": seen["first_text"]}
    first_tokens, second_tokens = seen["input_tokens"]
    assert second_tokens > first_tokens
