"""Which family a configured model was taken for, for `assistd models list` and `assistd doctor`: the
models file's `chat_format`, else the family its chat template shows (the models file's `chat_template`,
the GGUF's metadata read without weights, or a llama.cpp server's `/props`)."""

from __future__ import annotations

from pathlib import Path

from assistd.config import ModelEntry
from assistd.families.registry import family_for


def gguf_template(path: Path) -> str | None:
    """The chat template in a GGUF file's metadata (tokenizer only, no weights)."""
    import llama_cpp

    from assistd.llm.llama_log import route_llama_log

    route_llama_log()
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    return llm.metadata.get("tokenizer.chat_template")


def family_of(entry: ModelEntry, engine_template: str | None = None) -> str:
    """'NAME (how it was chosen)', or why it is not known yet."""
    if entry.chat_format:
        return f"{entry.chat_format} (chat_format)"
    template = entry.chat_template or engine_template
    if template is None and entry.path is not None and entry.path.exists():
        try:
            template = gguf_template(entry.path)
        except Exception as exc:  # a broken file: doctor's file check says so
            return f"? ({exc})"
    if template is None:
        if entry.path is not None and not entry.path.exists():
            return "? (model file missing)"
        return "? (template from the engine)"
    return f"{family_for(template).name} (from its chat template)"
