"""The prompt of a run: instructions + thread history + this run's tool turns, fitted to the context.

Truncation follows `truncation_strategy`: `auto` drops the oldest messages until the prompt fits the model's
context (and `max_prompt_tokens`); `last_messages` keeps only the last N; `disabled` (a response's default,
as hosted) leaves nothing out: a conversation past the context is refused (PromptTooLong). The system
message and this run's tool turns are always kept. Token counts come from the model's own tokenizer."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2

from assistd.engine import images
from assistd.llm.backend import LLMBackend
from assistd.llm.vocab import TemplateError
from assistd.storage.messages import MessageRow
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow

PER_MESSAGE_OVERHEAD = 6
MAX_TOOL_TEXT = 3000  # characters of one tool call's arguments or output shown to the model


class PromptTooLong(Exception):
    pass


class TemplateRefused(Exception):
    """The model's chat template raised on the conversation (its `raise_exception`, or any Jinja error)."""


@dataclass
class Prompt:
    text: str
    tokens: int
    dropped: int  # history messages left out to fit


@dataclass
class Conversation:
    system: str
    history: list[dict[str, Any]]
    tool_turns: list[dict[str, Any]] = field(default_factory=list)

    def messages(self, history: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *(self.history if history is None else history), *self.tool_turns]


def message_text(row: MessageRow, filenames: dict[str, str]) -> str:
    """A message as the model reads it; notes on attached files come first, so the request stays last."""
    notes, parts = [], []
    for part in row.content:
        if part["type"] == "text":
            parts.append(part["text"]["value"])
        elif part["type"] in ("image_file", "image_url"):
            parts.append(images.ref(part))  # resolved when the turn is built (engine/images.py)
    for attachment in row.attachments or []:
        name = filenames.get(attachment["file_id"], attachment["file_id"])
        kinds = {t["type"] for t in attachment.get("tools", [])}
        where = f", at /mnt/data/{name}" if "code_interpreter" in kinds else ""
        notes.append(f"(attached file: {name}{where})")
    return "\n".join([*notes, *parts])


def history_messages(rows: list[MessageRow], filenames: dict[str, str]) -> list[dict[str, Any]]:
    """The thread's messages as chat turns; messages of the same role in a row are one turn (a thread may
    hold several user messages before a run, and templates that insist on alternating roles, Mistral's and
    Gemma's, refuse them apart)."""
    turns: list[dict[str, Any]] = []
    for row in rows:
        if isinstance(row, dict):  # a chat turn already (a response's items, engine/responses/history.py)
            turns.append(row)
            continue
        text = message_text(row, filenames)
        if turns and turns[-1]["role"] == row.role and not turns[-1].get("tool_calls"):
            turns[-1] = {**turns[-1], "content": f"{turns[-1]['content']}\n\n{text}"}
        else:
            turns.append({"role": row.role, "content": text})
    return turns


def tool_turns(steps: list[StepRow]) -> list[dict[str, Any]]:
    """This run's earlier tool calls and their results, as chat turns the model can read."""
    turns: list[dict[str, Any]] = []
    for step in steps:
        if step.type != "tool_calls" or step.status not in ("completed", "in_progress"):
            continue
        calls, results = [], []
        searches = (step.engine_state or {}).get("searches", {})
        for call in step.step_details.get("tool_calls", []):
            name, arguments, output = _call_view(call, searches.get(call["id"], {}))
            if output is None:
                continue
            arguments, output = _clip_arguments(arguments), _clip(output)
            calls.append(
                {"id": call["id"], "type": "function", "function": {"name": name, "arguments": arguments}}
            )
            results.append({"role": "tool", "tool_call_id": call["id"], "name": name, "content": output})
        if calls:
            turn: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": calls}
            reasoning = (step.engine_state or {}).get("reasoning")
            if reasoning:  # kept within the run's tool loop, as gpt-oss (`thinking`) and Qwen3 read it
                turn.update(thinking=reasoning, reasoning_content=reasoning)
            turns.append(turn)
            turns.extend(results)
    return turns


def _clip(text: str) -> str:
    """Keeps a tool turn from crowding out the conversation: its head and tail, the middle elided."""
    if len(text) <= MAX_TOOL_TEXT:
        return text
    half = MAX_TOOL_TEXT // 2
    return f"{text[:half]}\n…[{len(text) - 2 * half} characters left out]…\n{text[-half:]}"


def _clip_arguments(arguments: str) -> str:
    """A call's arguments clipped value by value, so that they stay a JSON object (templates that take
    calls as objects read them so; long code keeps its head and tail)."""
    if len(arguments) <= MAX_TOOL_TEXT:
        return arguments
    try:
        value = json.loads(arguments)
    except ValueError:
        return _clip(arguments)
    if not isinstance(value, dict):
        return _clip(arguments)
    clipped = {k: _clip(v) if isinstance(v, str) else v for k, v in value.items()}
    return json.dumps(clipped, ensure_ascii=False)


def _call_view(call: dict[str, Any], search: dict[str, str]) -> tuple[str, str, str | None]:
    kind = call["type"]
    if kind == "function":
        fn = call["function"]
        return fn["name"], fn["arguments"], fn.get("output")
    if kind == "code_interpreter":
        ci = call["code_interpreter"]
        logs = [o["logs"] for o in ci.get("outputs", []) if o["type"] == "logs"]
        images = [o["image"]["file_id"] for o in ci.get("outputs", []) if o["type"] == "image"]
        output = "\n".join(logs) or "(no output)"
        if images:
            output += "\n[images shown to the user: " + ", ".join(images) + "]"
        return "code_interpreter", json.dumps({"code": ci["input"]}), output
    return (
        "file_search",
        json.dumps({"query": search.get("query", "")}),
        search.get("rendered", "(no results)"),
    )


def fit(
    backend: LLMBackend,
    conversation: Conversation,
    run: RunRow,
    reserve: int,
    render: Any,
    count: Callable[[str], int] | None = None,
) -> Prompt:
    """Renders the conversation, dropping the oldest history until it fits in the budget.

    Only message lists a strict chat template accepts are rendered (Llama 3.x with tools refuses a list with
    no user message, Mistral's templates one whose roles do not alternate from a user message): the whole
    conversation first, and after that only with history kept from a user message on. The fixed part (system
    prompt, tools, this run's tool turns) is what the whole rendering takes beyond the history's estimate."""
    count = count or backend.count_tokens  # with images: their tokens too (engine/images.py)
    budget = backend.n_ctx - reserve
    if run.max_prompt_tokens:
        budget = min(budget, run.max_prompt_tokens)
    history = list(conversation.history)
    strategy = run.truncation_strategy or {}
    if strategy.get("type") == "last_messages" and strategy.get("last_messages"):
        # At most the last N messages, as hosted; those before the window's first user message are left
        # out too (an assistant message first breaks templates that want user/assistant alternation),
        # unless the window holds no user message at all: it is then kept as it is.
        history = _from_user(history[-int(strategy["last_messages"]) :])
    dropped = len(conversation.history) - len(history)
    text = _render(render, conversation.messages(history))
    tokens = count(text)
    if tokens <= budget:
        return Prompt(text=text, tokens=tokens, dropped=dropped)
    if strategy.get("type") == "disabled":  # a response's default: nothing is left out, it fails instead
        raise PromptTooLong(
            f"the conversation needs {tokens} tokens, more than the model's context leaves ({budget}), "
            "and truncation is disabled"
        )
    if not history:
        raise PromptTooLong(f"the instructions and tool results alone take {tokens} tokens (budget {budget})")
    # Where the kept history may start: at a user message (or anywhere, when there is none to start at).
    starts = [i for i, m in enumerate(history) if i > 0 and m["role"] == "user"]
    if not starts and not any(m["role"] == "user" for m in history):
        starts = list(range(1, len(history)))
    # Drop by estimate first (cheap), then confirm with the real rendering.
    sizes = [count(m["content"] or "") + PER_MESSAGE_OVERHEAD for m in history]
    fixed = tokens - sum(sizes)
    while len(starts) > 1 and fixed + sum(sizes[starts[0] :]) > budget:
        starts.pop(0)
    first, kept = 0, history
    while tokens > budget:
        if starts:
            first = starts.pop(0)
            kept = history[first:]
        else:
            # The last part left (the last user message and what follows it) and still too long: keep the
            # end of its longest message (a lone message's end is what is being asked).
            longest = max(range(len(kept)), key=lambda i: len(kept[i]["content"] or ""))
            content = kept[longest]["content"] or ""
            cut = max(len(content) // 8, (tokens - budget) * 4)
            for image in images.PLACEHOLDER.finditer(content):  # an image goes whole, never cut
                if image.start() < cut < image.end():
                    cut = image.end()
            if cut >= len(content):
                raise PromptTooLong(f"the prompt needs {tokens} tokens, more than the budget of {budget}")
            kept = [*kept[:longest], {**kept[longest], "content": content[cut:]}, *kept[longest + 1 :]]
        text = _render(render, conversation.messages(kept))
        tokens = count(text)
    return Prompt(text=text, tokens=tokens, dropped=dropped + first)


def _from_user(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`history` from its first user message on (all of it when it holds none)."""
    for i, message in enumerate(history):
        if message["role"] == "user":
            return history[i:]
    return history


def _render(render: Any, messages: list[dict[str, Any]]) -> str:
    try:
        return render(messages)
    except (jinja2.TemplateError, TemplateError, TypeError) as exc:  # jinja2's, raise_exception's, a bad op
        raise TemplateRefused(str(exc) or type(exc).__name__) from exc
