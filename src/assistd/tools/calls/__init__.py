"""The model-facing half of function calling: tools into the prompt, replies into calls, and grammars that
make forced calls always parse and validate (see formats.py for the template families)."""

from __future__ import annotations

import json
import re
from typing import Any

from assistd.errors import InvalidRequest
from assistd.tools.calls.formats import (
    BaseFormat,
    GenericFormat,
    HermesFormat,
    Llama3Format,
    args_schema,
    compile_arguments,
)
from assistd.tools.calls.gbnf import GrammarBuilder, SchemaCompiler, UnsupportedSchema
from assistd.tools.calls.native import (
    DeepSeekR1Format,
    DeepSeekV31Format,
    HarmonyFormat,
    MistralArgsFormat,
    MistralFormat,
)
from assistd.tools.calls.types import ParsedCall, ParsedReply, ToolFormat

__all__ = [
    "FORMATS",
    "GenericFormat",
    "HermesFormat",
    "Llama3Format",
    "ParsedCall",
    "ParsedReply",
    "ToolFormat",
    "UnsupportedSchema",
    "check_function_tools",
    "check_json_schema",
    "format_for",
    "json_schema_grammar",
    "template_takes_tools",
    "validate_arguments",
]

FORMATS: dict[str, BaseFormat] = {
    f.name: f
    for f in (
        HermesFormat(),
        Llama3Format(),
        GenericFormat(),
        DeepSeekR1Format(),
        DeepSeekV31Format(),
        MistralFormat(),
        MistralArgsFormat(),
        HarmonyFormat(),
    )
}


def format_for(chat_template: str | None, chat_format: str | None = None) -> ToolFormat:
    """The tool-call format of the model family a chat template belongs to (families/registry.py); generic
    when it knows nothing of tools."""
    from assistd.families import family_for

    return family_for(chat_template, chat_format).format


def template_takes_tools(chat_template: str | None) -> bool:
    """Whether the jinja template reads a `tools` variable."""
    if not chat_template:
        return False
    try:
        import jinja2
        import jinja2.ext
        from jinja2 import meta

        env = jinja2.Environment(extensions=[jinja2.ext.loopcontrols])
        source = re.sub(r"{%-?\s*(end)?generation\s*-?%}", "", chat_template)
        return "tools" in meta.find_undeclared_variables(env.parse(source))
    except Exception:
        return re.search(r"\btools\b", chat_template) is not None


def check_function_tools(tools: list[dict], param: str) -> None:
    """Refuses (400) a function whose parameters use a JSON-schema construct the grammar cannot honour."""
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue
        fn = tool.get("function") or {}
        try:
            compile_arguments(GrammarBuilder(), fn.get("parameters"), str(fn.get("name") or f"f{i}"))
        except UnsupportedSchema as e:
            raise InvalidRequest(
                f"Invalid schema for function '{fn.get('name')}': {e}. "
                "assistd constrains tool calls with a grammar and cannot enforce this construct.",
                param=f"{param}[{i}].function.parameters",
                code="invalid_function_parameters",
            ) from e


def check_json_schema(schema: dict | None, param: str) -> None:
    """Refuses (400) a response_format json_schema the grammar cannot honour."""
    try:
        json_schema_grammar(schema)
    except UnsupportedSchema as e:
        raise InvalidRequest(f"Invalid schema for response_format: {e}.", param=param) from e


def json_schema_grammar(schema: dict | None) -> str:
    """GBNF for one JSON value that validates against `schema`; any JSON object when None (json_object).
    Raises UnsupportedSchema (a ValueError) for constructs it cannot honour."""
    b = GrammarBuilder()
    if schema is None:
        return b.text(b.primitive("json-object"))
    root = SchemaCompiler(b, schema, prefix="value").visit(schema)
    return b.text(root)


def validate_arguments(schema: dict | None, arguments: str) -> str | None:
    """None when `arguments` is a JSON object valid against the function's parameters, else why not."""
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError) as e:
        return f"arguments are not JSON: {e}"
    if not isinstance(value, dict):
        return "arguments are not a JSON object"
    import jsonschema

    try:
        full = args_schema(schema)
    except UnsupportedSchema as e:
        return str(e)
    validator_cls: Any = jsonschema.validators.validator_for(full)
    error = jsonschema.exceptions.best_match(validator_cls(full).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}" + (f" (at {where})" if where else "")
