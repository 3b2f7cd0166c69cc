"""The `assistd` command: serve, models, doctor, chat.

Flags of `serve` are generated from the Settings fields."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import Any, get_origin

from assistd.config import ModelsFileError, Settings

ENGINE_STOP_SECONDS = 5.0  # `assistd engine` stopping: what its open requests are given before it exits


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Flag groups of `assistd serve --help`, by the setting's name (first matching prefix wins).
FLAG_GROUPS = [
    ("models and generation", ("model", "default_model", "n_", "load_models", "kv_cache", "max_reply")),
    ("runs", ("run_", "max_tool")),
    ("file_search", ("chroma", "embedding", "file_search", "ingest", "extract")),
    ("code_interpreter", ("code_", "kernel")),
    ("storage", ("data_dir", "database", "files_dir", "max_upload")),
    ("images", ("image_", "vision")),
]


def _group_of(name: str) -> str:
    for title, prefixes in FLAG_GROUPS:
        if name.startswith(prefixes):
            return title
    return "server"


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    groups = {
        title: parser.add_argument_group(title) for title in ["server", *(title for title, _ in FLAG_GROUPS)]
    }
    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        annotation = info.annotation
        default = info.get_default(call_default_factory=True)
        shown = f"; default {default}" if default not in (None, "", {}, []) else ""
        help_text = f"{info.description or name} (env ASSISTD_{name.upper()}{shown})".replace("%", "%%")
        group = groups[_group_of(name)]
        if annotation is bool:
            group.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif get_origin(annotation) is list:  # repeatable (the setting splits commas too)
            group.add_argument(
                flag, dest=name, action="append", default=None, metavar=name.upper(), help=help_text
            )
        else:
            group.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=help_text)


def settings_from(args: argparse.Namespace) -> Settings:
    given: dict[str, Any] = {
        name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None
    }
    return Settings(**given)


def serve(settings: Settings) -> int:
    import uvicorn

    from assistd.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not settings.auth_enabled and not is_loopback(settings.host):
        print(
            "assistd: no API keys are configured, so the server only binds to loopback; "
            f"refusing {settings.host}. "
            "Set ASSISTD_API_KEYS='key=project' (or --api-keys) to listen on other addresses.",
            file=sys.stderr,
        )
        return 2
    if not settings.auth_enabled:
        print("assistd: no API keys configured: authentication is off and only loopback is served.")
    if (status := db_prepare(settings)) != 0:
        return status
    default = next((e for e in settings.model_entries() if e.name == settings.default_model), None)
    model_note = f"{default.name} ({default.location})" if default else settings.default_model
    print(
        f"assistd: listening on http://{settings.host}:{settings.port}/v1 ; default model {model_note}",
        flush=True,
    )
    if settings.processes > 1:
        from assistd.processes import serve_many

        return serve_many(settings)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


def db_prepare(settings: Settings) -> int:
    """Before serving: upgrade the schema (under the migration lock), or with --no-migrate check that
    someone did. Done before the event loop starts; a database that is behind stops the server here."""
    from sqlalchemy.exc import DBAPIError

    from assistd.storage import migrate
    from assistd.storage.db import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database)
    try:
        if settings.migrate:
            migrate.upgrade(db)
        else:
            migrate.require_head(db)
    except migrate.SchemaNotCurrent as exc:
        print(f"assistd: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:  # not reached, refused, a wrong password: a line, not a traceback
        print(f"assistd: {unusable_database(settings.database, exc)}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    return 0


def unusable_database(url: str, exc: Exception) -> str:
    """What an operator reads when the database cannot be used: where (no password) and the driver's why."""
    from sqlalchemy.engine import make_url

    where = make_url(url).render_as_string(hide_password=True)
    text = str(getattr(exc, "orig", None) or exc).strip()
    return f"the database at {where} cannot be used: {text.splitlines()[0] if text else type(exc).__name__}"


def db_command(settings: Settings, action: str) -> int:
    """`assistd db upgrade`: migrate to the newest revision and exit (a Kubernetes Job before the servers
    roll out with --no-migrate). `assistd db current`: print the revision and whether it is the newest."""
    from sqlalchemy.exc import DBAPIError

    from assistd.storage import migrate
    from assistd.storage.db import Database

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if action == "upgrade":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database)
    try:
        if action == "upgrade":
            print(f"assistd: database at {migrate.upgrade(db)} (newest)")
            return 0
        found, newest = migrate.current(db), migrate.head()
        note = "newest" if found == newest else f"newest is {newest}"
        print(f"{found or '(none)'} ({note})")
        return 0 if found == newest else 1
    except DBAPIError as exc:
        print(f"assistd: {unusable_database(settings.database, exc)}", file=sys.stderr)
        return 2
    finally:
        db.dispose()


def run_engine(args: argparse.Namespace) -> int:
    import faulthandler

    from assistd.config import ModelEntry
    from assistd.llm.embedded import EmbeddedEngine, default_slots

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    entry = ModelEntry(
        name=Path(args.model_path).stem,
        path=Path(args.model_path),
        n_ctx=args.n_ctx,
        n_threads=args.n_threads,
        n_gpu_layers=args.n_gpu_layers,
        mmproj=Path(args.mmproj) if args.mmproj else None,
    )
    key = args.api_key or os.environ.get("ASSISTD_ENGINE_KEY") or ""
    if not key and not is_loopback(args.host):
        print("assistd engine: set --api-key (ASSISTD_ENGINE_KEY) to listen beyond loopback", file=sys.stderr)
        return 2
    engine = EmbeddedEngine(
        entry, args.parallel or default_slots(entry), args.kv_cache_bytes, args.host, args.port, key
    )
    print(f"assistd engine: llama.cpp server for {entry.path} at {engine.url}", flush=True)
    engine.wait()
    # llama.cpp's server, when it stops, waits for each open request's client to hang up, holding the GIL: a
    # client that waits in turn for its answer (a process of `serve --processes` stopping with the
    # supervisor) would keep both alive until a read timeout. faulthandler's watchdog runs without the GIL:
    # past the grace it prints where the engine waits and exits (status 1). Armed first: nothing before the
    # close may raise (the engine would be destroyed at exit, unbounded).
    faulthandler.dump_traceback_later(ENGINE_STOP_SECONDS, exit=True)
    _say(f"assistd engine: stopping (open requests are cut after {ENGINE_STOP_SECONDS:.0f} s)")
    engine.close()
    faulthandler.cancel_dump_traceback_later()
    return 0


def _say(line: str) -> None:
    """Prints `line` where stdout may be gone (the pipe of a supervisor that was killed)."""
    with contextlib.suppress(OSError):
        os.write(sys.stdout.fileno(), f"{line}\n".encode())


def models_list(settings: Settings) -> int:
    """One line per model: default marker, name, context, whether its GGUF file is there, where it is
    served from, by which engine, and the model family it is taken for (no engine is contacted: `assistd
    doctor` does that)."""
    from assistd.families.of_model import family_of
    from assistd.llm.engines import engine_name, sees_images

    for entry in settings.model_entries():
        state = "MISSING" if entry.path is not None and not entry.path.exists() else "ok"
        marker = "*" if entry.name == settings.default_model else " "
        where = str(entry.path) if entry.url is None else entry.url
        if entry.mmproj is not None and not entry.mmproj.exists():
            state = "MISSING"
        print(
            f"{marker} {entry.name:32} n_ctx={entry.n_ctx:<6} {state:8} {where}  [{engine_name(entry)}]  "
            f"family {family_of(entry)}  images {sees_images(entry)}"
        )
    return 0


def models_add(settings: Settings, name: str, path: str, n_ctx: int | None, mmproj: str | None = None) -> int:
    target = settings.models_toml
    target.parent.mkdir(parents=True, exist_ok=True)
    file = Path(path).expanduser().resolve()
    if not file.exists():
        print(f"assistd: no such file: {file}", file=sys.stderr)
        return 1
    lines = target.read_text().splitlines() if target.exists() else []
    lines += ["", "[[models]]", f'name = "{name}"', f'path = "{file}"']
    if n_ctx:
        lines.append(f"n_ctx = {n_ctx}")
    if mmproj:
        projector = Path(mmproj).expanduser().resolve()
        if not projector.exists():
            print(f"assistd: no such file: {projector}", file=sys.stderr)
            return 1
        lines.append(f'mmproj = "{projector}"')
    target.write_text("\n".join(lines).lstrip() + "\n")
    print(f"assistd: added model {name} -> {file} in {target}")
    return 0


def conversation_from_thread(settings: Settings, thread_id: str, project: str | None) -> int:
    """`assistd conversations from-thread THREAD_ID`: a new conversation holding the thread's messages as
    items, in order (what the thread held beyond its messages is said on stderr); prints its id."""
    from assistd.api.auth import DEFAULT_PROJECT
    from assistd.errors import AssistdError
    from assistd.protocol.conversations import ThreadToConversation
    from assistd.services.conversations import ConversationService
    from assistd.services.runs import active_run_id
    from assistd.storage import migrate
    from assistd.storage.db import Database

    projects = sorted(set(settings.api_keys.values()))
    if project is None and len(projects) > 1:
        print(
            f"assistd: name the thread's project with --project (one of {', '.join(projects)})",
            file=sys.stderr,
        )
        return 2
    project = project or (projects[0] if projects else DEFAULT_PROJECT)
    db = Database(settings.database)
    try:
        migrate.require_head(db)
        service = ConversationService(db)
        service.active_run = active_run_id
        copy = service.from_thread(project, thread_id, ThreadToConversation.parse({}))
    except (AssistdError, migrate.SchemaNotCurrent) as exc:
        print(f"assistd: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    for note in copy.notes:
        print(f"note: {note}", file=sys.stderr)
    print(copy.conversation.id)
    return 0


def _client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url", default=None, help="API base URL (default http://HOST:PORT/v1 from the settings)"
    )
    parser.add_argument(
        "--api-key", default=None, help="API key (default: the first configured key, else 'local')"
    )


def _client_target(settings: Settings, args: argparse.Namespace) -> tuple[str, str]:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    base_url = args.base_url or f"http://{host}:{settings.port}/v1"
    return base_url, args.api_key or next(iter(settings.api_keys), "local")


EPILOG = """examples:
  assistd serve                          # http://127.0.0.1:8000/v1 and the Playground at /playground
  assistd serve --host 0.0.0.0 --api-keys 'sk-team=team'
  assistd models add qwen ~/models/qwen2.5-1.5b-instruct-q4_k_m.gguf --n-ctx 32768
  assistd doctor                         # what works on this machine, and what to do about the rest
  assistd chat asst_...                  # talk to an assistant in the terminal (streamed)
  assistd upload docs/*.pdf --new-store handbook   # upload and index for file_search, with progress
  assistd conversations from-thread thread_...     # copy a thread into a new conversation

Every flag of `serve` is also an environment variable (ASSISTD_<NAME>)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistd",
        description="The OpenAI Assistants API v2 on local models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_p = sub.add_parser(
        "serve",
        help="run the HTTP server (API at /v1, Playground at /playground)",
        description="Run the HTTP server. Each flag can also be set as an ASSISTD_* environment variable.",
        usage="%(prog)s [--host HOST] [--port PORT] [--api-keys KEYS] [more flags below]",
    )
    _settings_flags(serve_p)
    models_p = sub.add_parser("models", help="list or add models", description="List or add GGUF models.")
    models_sub = models_p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    models_sub.add_parser("list", help="list the configured models (* marks the default)")
    add_p = models_sub.add_parser("add", help="register a GGUF file under a name (in models.toml)")
    add_p.add_argument("name", help="the name clients pass as `model`")
    add_p.add_argument("path", help="path of the .gguf file")
    add_p.add_argument("--n-ctx", type=int, default=None, help="context size (default 8192)")
    add_p.add_argument("--mmproj", default=None, help="the multimodal projector .gguf of a vision model")
    engine_p = sub.add_parser(
        "engine",
        help="run llama.cpp's server engine alone (for a models.toml `url`)",
        description="Serve one GGUF model with llama.cpp's server engine (the embedded engine of `serve`, "
        "from the xllamacpp wheel) on HOST:PORT, for assistd processes that name it by `url` in their "
        "models file. Its API is llama.cpp's server API (/completion, /v1/completions, /slots, /props).",
    )
    engine_p.add_argument("model_path", metavar="MODEL", help="the .gguf file")
    engine_p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    engine_p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: a free one)")
    engine_p.add_argument("--parallel", type=int, default=None, help="slots (default: 2 per core, 4-16)")
    engine_p.add_argument("--n-ctx", type=int, default=8192, help="context of each slot (default 8192)")
    engine_p.add_argument("--n-threads", type=int, default=None, help="CPU threads (default: llama.cpp's)")
    engine_p.add_argument("--n-gpu-layers", type=int, default=0, help="layers on the GPU (-1: all)")
    engine_p.add_argument("--mmproj", default=None, help="the multimodal projector of a vision model")
    engine_p.add_argument("--kv-cache-bytes", type=int, default=1024**3, help="host prompt cache (1 GiB)")
    engine_p.add_argument(
        "--api-key", default=None, help="key clients must send (default: env ASSISTD_ENGINE_KEY, else none)"
    )
    doctor_p = sub.add_parser(
        "doctor",
        help="check models, sandbox, Chroma, database and embeddings; say what to do",
        description="Check what the server needs on this machine and print what is off and how to fix it. "
        "Reads the same ASSISTD_* settings as `serve`. Exit status 1 when something a feature needs is off.",
    )
    doctor_p.add_argument("-v", "--verbose", action="store_true", help="show every detail of every check")
    db_p = sub.add_parser(
        "db",
        help="database schema: upgrade to the newest revision, or show the current one",
        description="Schema migrations (Alembic). Reads the same ASSISTD_* settings as `serve` "
        "(ASSISTD_DATABASE_URL, ASSISTD_DATA_DIR). `upgrade` takes the same lock as starting servers.",
    )
    db_sub = db_p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="upgrade the schema to the newest revision and exit")
    db_sub.add_parser("current", help="print the revision of the database (exit 1 unless the newest)")
    chat_p = sub.add_parser(
        "chat",
        help="chat with an assistant in the terminal, streamed",
        description="A terminal chat with streaming through the openai SDK. Function calls ask you for "
        "their outputs. An empty line or Ctrl-D ends the chat.",
    )
    chat_p.add_argument("assistant_id", metavar="ASSISTANT_ID", help="the assistant to talk to (asst_...)")
    chat_p.add_argument(
        "--thread", default=None, metavar="THREAD_ID", help="continue this thread (default: a new one)"
    )
    up_p = sub.add_parser(
        "upload",
        help="upload files (purpose assistants), optionally into a vector store, with progress",
        description="Upload files through the API with progress; with --vector-store or --new-store, "
        "index them for file_search and follow the indexing.",
    )
    up_p.add_argument("paths", nargs="+", metavar="FILE", help="files to upload")
    target = up_p.add_mutually_exclusive_group()
    target.add_argument("--vector-store", metavar="VS_ID", help="add the files to this vector store")
    target.add_argument("--new-store", metavar="NAME", help="create a vector store with this name for them")
    conv_p = sub.add_parser(
        "conversations",
        help="move threads to the Conversations API",
        description="Conversations (the Responses API's state). Reads the same ASSISTD_* settings as `serve` "
        "(ASSISTD_DATABASE_URL, ASSISTD_DATA_DIR) and works on the database directly.",
    )
    conv_sub = conv_p.add_subparsers(dest="conversations_command", required=True, metavar="ACTION")
    from_thread_p = conv_sub.add_parser(
        "from-thread",
        help="copy a thread's messages into a new conversation and print its id",
        description="Make a new conversation holding the thread's messages as items, in order (the "
        "conversation takes the thread's metadata). Prints the conversation id; notes on stderr say what "
        "the thread held that a conversation cannot (attachments, tool resources).",
    )
    from_thread_p.add_argument("thread_id", metavar="THREAD_ID", help="the thread to copy (thread_...)")
    from_thread_p.add_argument(
        "--project", default=None, help="the thread's project (default: the only project of the API keys)"
    )
    for p in (chat_p, up_p):
        _client_flags(p)
    chat_p.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="max_completion_tokens of each run (default: the server's)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ModelsFileError as exc:
        print(f"assistd: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return serve(settings_from(args))
    settings = Settings()
    if args.command == "models" and args.models_command == "list":
        return models_list(settings)
    if args.command == "models" and args.models_command == "add":
        return models_add(settings, args.name, args.path, args.n_ctx, args.mmproj)
    if args.command == "engine":
        return run_engine(args)
    if args.command == "db":
        return db_command(settings, args.db_command)
    if args.command == "conversations":
        return conversation_from_thread(settings, args.thread_id, args.project)
    if args.command == "doctor":
        from assistd import doctor

        return doctor.main(settings, verbose=args.verbose)
    if args.command == "chat":
        from assistd.chat import chat

        base_url, api_key = _client_target(settings, args)
        return chat(base_url, api_key, args.assistant_id, args.thread, args.max_tokens)
    if args.command == "upload":
        from assistd.upload import upload

        base_url, api_key = _client_target(settings, args)
        return upload(base_url, api_key, args.paths, args.vector_store, args.new_store)
    return 1
