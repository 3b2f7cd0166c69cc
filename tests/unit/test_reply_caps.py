"""What limits a reply (engine/budget.py), with the scripted fake model: the client's max_completion_tokens
(run-wide), the model's own safety cap (models file; the bundled model's is --max-reply-tokens), and the
context left after the prompt; no server-wide cap. Each limit ends the run `incomplete` with the SDK's reason
"max_completion_tokens", and the log says which limit it was. A chat template that refuses the conversation
fails the run with a last_error naming the model."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2

from assistd.config import DEFAULT_MODEL_NAME, Settings
from assistd.engine.budget import UNCAPPED_RESERVE, ReplyCaps, reply_caps
from assistd.llm.backend import GenerationParams
from tests.unit.engine_support import PROJECT, Rig, build_rig


def _watch_params(rig: Rig) -> list[GenerationParams]:
    seen: list[GenerationParams] = []
    generate = rig.backend.generate

    def watched(prompt: str, params: GenerationParams, *args: Any) -> Any:
        seen.append(params)
        return generate(prompt, params, *args)

    rig.backend.generate = watched  # type: ignore[method-assign]
    return seen


def _execute(rig: Rig, **run_fields: Any):
    thread_id, assistant_id = rig.thread(), rig.assistant()
    run = rig.create_run(thread_id, assistant_id, **run_fields)
    rig.executor.execute(run.id, threading.Event())
    return rig.runs.get(PROJECT, thread_id, run.id)


def _words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_no_server_wide_cap_a_long_answer_completes(tmp_path):
    rig = build_rig(tmp_path, [_words(1500)], n_ctx=4096, max_reply_tokens=8)  # the flag: bundled model only
    seen = _watch_params(rig)
    done = _execute(rig)
    assert done.status == "completed" and done.usage["completion_tokens"] == 1500
    assert seen[0].max_tokens < 4096 and seen[0].max_tokens + done.usage["prompt_tokens"] == 4096


def test_the_model_cap_ends_the_run_incomplete(tmp_path, caplog):
    rig = build_rig(tmp_path, [_words(20)], model={"max_reply_tokens": 5})
    with caplog.at_level(logging.INFO, logger="assistd.engine"):
        done = _execute(rig, max_completion_tokens=50)
    assert done.status == "incomplete" and done.incomplete_details == {"reason": "max_completion_tokens"}
    assert done.usage["completion_tokens"] == 5
    assert "the model's max_reply_tokens" in caplog.text


def test_the_client_cap_ends_the_run_incomplete(tmp_path, caplog):
    rig = build_rig(tmp_path, [_words(20)], model={"max_reply_tokens": 5})
    with caplog.at_level(logging.INFO, logger="assistd.engine"):
        done = _execute(rig, max_completion_tokens=5)  # a tie: the client's limit is the one named
    assert done.status == "incomplete" and done.incomplete_details == {"reason": "max_completion_tokens"}
    assert done.usage["completion_tokens"] == 5
    assert "the run's max_completion_tokens" in caplog.text


def test_the_context_end_ends_the_run_incomplete(tmp_path, caplog):
    rig = build_rig(tmp_path, [_words(500)], n_ctx=120)
    seen = _watch_params(rig)
    with caplog.at_level(logging.INFO, logger="assistd.engine"):
        done = _execute(rig, max_completion_tokens=1000)
    assert done.status == "incomplete" and done.incomplete_details == {"reason": "max_completion_tokens"}
    assert seen[0].max_tokens == 120 - done.usage["prompt_tokens"]  # never past the context
    assert "the end of the model's context" in caplog.text


def test_caps_reserve_and_tokens():
    uncapped = ReplyCaps(client=None, model=None)
    assert uncapped.reserve(8192) == 4096 and uncapped.reserve(131072) == UNCAPPED_RESERVE
    assert uncapped.tokens(8192, 1000) == 7192 and uncapped.bound(8192, 1000) == "context"
    capped = ReplyCaps(client=300, model=1024)
    assert capped.reserve(8192) == 300 and capped.reserve(400) == 200
    assert capped.tokens(8192, 1000) == 300 and capped.bound(8192, 1000) == "max_completion_tokens"
    assert capped.tokens(8192, 8000) == 192 and capped.bound(8192, 8000) == "context"
    model = ReplyCaps(client=None, model=1024)
    assert model.tokens(8192, 100) == 1024 and model.bound(8192, 100) == "max_reply_tokens"


def test_max_completion_tokens_is_run_wide():
    entry = SimpleNamespace(max_reply_tokens=None)
    run = SimpleNamespace(max_completion_tokens=100)
    steps = [SimpleNamespace(usage={"completion_tokens": 30}), SimpleNamespace(usage=None)]
    assert reply_caps(run, entry, steps).client == 70  # type: ignore[arg-type]
    spent = [SimpleNamespace(usage={"completion_tokens": 130})]
    assert reply_caps(run, entry, spent).client == 1  # type: ignore[arg-type]
    assert reply_caps(SimpleNamespace(max_completion_tokens=None), entry, steps).client is None  # type: ignore[arg-type]


def test_the_bundled_model_takes_the_flag_other_models_the_models_file(tmp_path):
    toml = tmp_path / "models.toml"
    toml.write_text(
        '[[models]]\nname = "big"\npath = "big.gguf"\n\n'
        '[[models]]\nname = "loopy"\npath = "loopy.gguf"\nmax_reply_tokens = 256\n'
    )
    entries = {e.name: e for e in Settings(models_file=toml).model_entries()}
    assert entries[DEFAULT_MODEL_NAME].max_reply_tokens == 1024
    assert entries["big"].max_reply_tokens is None and entries["loopy"].max_reply_tokens == 256
    none = Settings(models_file=Path(tmp_path / "absent.toml"), max_reply_tokens=0).model_entries()
    assert none[0].max_reply_tokens is None


def test_a_template_that_refuses_fails_the_run_naming_the_model(tmp_path):
    rig = build_rig(tmp_path, ["never asked"])

    def refuse(messages: list[dict[str, Any]], tools: Any = None, **variables: Any) -> str:
        raise jinja2.TemplateError("Conversation roles must alternate user/assistant/user/assistant/...")

    rig.backend.render = refuse  # type: ignore[method-assign]
    done = _execute(rig)
    assert done.status == "failed" and done.last_error["code"] == "server_error"
    message = done.last_error["message"]
    assert "'fake'" in message and "chat template" in message and "roles must alternate" in message
    assert rig.backend.prompts == []  # the model was never asked
