"""The prompt of one model turn: the system prompt (the run's instructions, plus the hints a forced code
call or a JSON response_format need), the thread's history and this run's tool turns, fitted to the
context and rendered by the model's chat template with the tools it may call; and the turn's generation
parameters (token budget, sampling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from assistd.config import ModelEntry, Settings
from assistd.engine import tool_rules
from assistd.engine.budget import Limit, reply_caps
from assistd.engine.context import Conversation, fit, history_messages, tool_turns
from assistd.engine.images import ImageCache, PromptImages
from assistd.engine.toolbox import chat_tools
from assistd.errors import NotFound
from assistd.families import Family, family_for
from assistd.images import FetchPolicy, ImageLimits
from assistd.llm.backend import GenerationParams, LLMBackend, sees_images
from assistd.storage.messages import MessageRow
from assistd.storage.runs import RunRow
from assistd.storage.steps import StepRow
from assistd.tools.calls import ToolFormat, template_takes_tools

CODE_HINT = (
    "\n\nAnswer by writing Python code in a ```python block; it is run in a Jupyter kernel and you see its "
    "output. The user's files are in /mnt/data; save files for the user there."
)
JSON_HINT = "\n\nAnswer with a single JSON object."


@dataclass
class Turn:
    """What the model is asked with on one turn."""

    text: str  # the rendered prompt
    params: GenerationParams
    fmt: ToolFormat  # the template's tool-call syntax (also when no tools are offered: its markers then stop)
    family: Family  # the model family: its reasoning markup and the control tokens the engine must print
    forced: dict[str, Any] | None  # grammar options when tool_choice requires a call this turn
    code_only: bool  # the required call can only be code: the model writes it in a ```python fence
    limit: Limit = "max_completion_tokens"  # the limit that sets params.max_tokens (budget.py)
    tokens: int = 0  # the prompt's tokens as the engine counts them (its images' too)


class PromptBuilder:
    def __init__(self, files: Any, settings: Settings, images: ImageCache | None = None) -> None:
        self.files = files
        self.settings = settings
        self.images = images or ImageCache(
            files, ImageLimits.from_settings(settings), FetchPolicy.from_settings(settings)
        )

    def build(
        self,
        backend: LLMBackend,
        run: RunRow,
        entry: ModelEntry,
        history: list[MessageRow],
        steps: list[StepRow],
        functions: list[dict[str, Any]],
    ) -> Turn:
        family = family_for(backend.chat_template, entry.chat_format)
        fmt = family.format
        forced = tool_rules.forced(run, functions, steps)
        code_only = forced is not None and tool_rules.code_only(forced, functions)
        shows_tools = (
            bool(functions)
            or any(s.type == "tool_calls" for s in steps)
            or any(isinstance(m, dict) and (m.get("tool_calls") or m["role"] == "tool") for m in history)
        )
        variables = family.effort(run.reasoning_effort)  # e.g. gpt-oss's `Reasoning: high`
        render = _renderer(backend, fmt, [] if code_only else chat_tools(functions), shows_tools, variables)
        images = PromptImages(
            self.images, run.project, sees_images(backend), self.settings.vision_fallback, run.model
        )
        conversation = Conversation(
            system=system_prompt(run) + (CODE_HINT if code_only else ""),
            history=images.resolve(history_messages(history, self._filenames(run, history))),
            tool_turns=images.resolve(tool_turns(steps)),
        )
        caps = reply_caps(run, entry, steps)  # the client's max_completion_tokens, the model's cap
        prompt = fit(
            backend,
            conversation,
            run,
            reserve=caps.reserve(backend.n_ctx),
            render=render,
            count=images.counter(backend),
        )
        max_tokens = caps.tokens(backend.n_ctx, prompt.tokens)  # and what the context leaves
        limit = caps.bound(backend.n_ctx, prompt.tokens)  # which of them that is
        params = GenerationParams(
            max_tokens=max_tokens,
            temperature=run.temperature if run.temperature is not None else entry.temperature,
            top_p=run.top_p if run.top_p is not None else entry.top_p,
            repeat_penalty=entry.repeat_penalty,
            images=images.used(prompt.text),
        )
        return Turn(
            text=prompt.text,
            params=params,
            fmt=fmt,
            family=family,
            forced=forced,
            code_only=code_only,
            limit=limit,
            tokens=prompt.tokens,
        )

    def _filenames(self, run: RunRow, history: list[MessageRow]) -> dict[str, str]:
        names = {}
        for message in history:
            for attachment in getattr(message, "attachments", None) or []:
                try:
                    names[attachment["file_id"]] = self.files.get(run.project, attachment["file_id"]).filename
                except NotFound:  # deleted since: the model sees the id
                    continue
        return names


def system_prompt(run: RunRow) -> str:
    system = run.instructions or ""
    fmt = run.response_format
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        system = (system + JSON_HINT).strip()
    return system


def _renderer(
    backend: LLMBackend,
    fmt: ToolFormat,
    tools: list[dict[str, Any]],
    shows_tools: bool,
    variables: dict[str, Any],
) -> Any:
    """Renders chat messages with the template (and the family's template variables); with tools, in the
    format's way of showing them (and the run's earlier calls)."""

    def render(messages: list[dict[str, Any]]) -> str:
        if not shows_tools:
            return backend.render(messages, **variables)
        prepared, tools_for_template = fmt.prepare(
            messages, tools, template_takes_tools(backend.chat_template)
        )
        return backend.render(prepared, tools_for_template, **variables)

    return render
