"""One Settings object for the whole server: ASSISTD_* environment variables, CLI flags, defaults.

Models are listed in a TOML file (``models/models.toml`` by default, written by ``assistd models add``)
besides the default SmolLM2 entry that ``make install`` puts in ``models/``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelEntry(BaseModel):
    """A GGUF model the server can serve, under the name clients pass as `model`."""

    name: str
    path: Path
    n_ctx: int = 8192
    n_gpu_layers: int = 0
    n_threads: int | None = None
    chat_format: str | None = None
    # Small models cannot be trusted to call file_search themselves: the query then comes from the
    # user's last message. "model" lets the model call the tool (grammar constrained).
    file_search_query: str = "user_message"
    file_search_max_results: int = 5
    # Sampling defaults when neither the run nor the assistant sets them (small models ramble at 1.0).
    temperature: float = 0.2
    top_p: float = 0.9
    repeat_penalty: float = 1.1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSISTD_", extra="ignore")

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, description="port to listen on")
    data_dir: Path = Field(Path("data"), description="where the database, files and vectors live")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in data_dir")
    files_dir: Path | None = Field(None, description="blob store for uploaded files; default data_dir/files")
    max_upload_bytes: int = Field(512 * 1024 * 1024, description="largest accepted file upload, in bytes")
    api_threads: int = Field(
        64,
        ge=4,
        description="threads that serve the synchronous API routes (database work); a burst of slow "
        "requests waits for one of them while the event loop keeps answering",
    )
    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="API keys and their projects, as 'key=project,key2=project2'; "
        "empty: no auth, loopback only",
    )
    models_dir: Path = Field(Path("models"), description="folder holding the default GGUF model")
    models_file: Path | None = Field(
        None, description="TOML file listing extra models; default models_dir/models.toml"
    )
    default_model: str = Field(DEFAULT_MODEL_NAME, description="model used where none is named")
    n_ctx: int = Field(8192, description="context size of the default model")
    n_threads: int | None = Field(None, description="CPU threads for generation; default: all cores")
    n_gpu_layers: int = Field(0, description="layers of the default model offloaded to a GPU (-1: all)")
    load_models_at_start: bool = Field(False, description="load models at start instead of on first use")
    kv_cache_bytes: int = Field(
        1024**3,
        description="RAM for saved KV states (KV cells, one logits row, token ids), reused across thread "
        "turns; 0 turns reuse off",
    )
    run_expiry_seconds: int = Field(600, description="a run not finished this long after creation expires")
    run_lease_seconds: int = Field(30, description="a worker that stops renewing its lease loses the run")
    max_reply_tokens: int = Field(
        1024, description="most tokens one model reply may take unless a run says less"
    )
    max_tool_call_tokens: int = Field(512, description="most tokens one round of tool calls may take")
    max_tool_rounds: int = Field(8, description="consecutive server-side tool rounds allowed in one run")
    chroma_url: str | None = Field(
        None, description="Chroma server URL; default: embedded in data_dir/chroma"
    )
    embedding_model: str | None = Field(None, description="path of a sentence-transformers model")
    embedding_batch_size: int = Field(32, description="texts per embedding batch when indexing files")
    chroma_dir: Path | None = Field(None, description="embedded Chroma folder; default data_dir/chroma")
    ingest_lease_seconds: int = Field(
        60, description="a file indexer that stops renewing its lease loses the file to another"
    )
    extract_memory_mb: int = Field(
        1024, description="address space (RLIMIT_AS) of the process that reads uploaded files' text, in MiB"
    )
    extract_timeout_seconds: int = Field(
        120, description="time limit for reading the text of one file; beyond, it fails as invalid_file"
    )
    extract_max_uncompressed_mb: int = Field(
        256, description="largest expanded size of a .docx/.pptx (all its zip members together), in MiB"
    )
    extract_max_xml_elements: int = Field(
        1_000_000, description="most XML elements in a .docx/.pptx (checked before parsing)"
    )
    extract_max_pdf_pages: int = Field(10_000, description="most pages of a PDF given to file_search")
    extract_max_text_mb: int = Field(
        20, description="most text (UTF-8, MiB) one file may yield for file_search (about 5M tokens)"
    )
    kernel_pool_size: int = Field(1, description="pre-started code interpreter kernels")
    kernel_idle_seconds: int = Field(
        3600, description="idle code interpreter sessions are shut down after this"
    )
    code_timeout_seconds: int = Field(60, description="time limit of one code execution")
    code_memory_mb: int = Field(1024, description="memory limit of a code interpreter kernel")
    code_cpu_seconds: int = Field(900, description="CPU seconds per kernel process, lifetime (RLIMIT_CPU)")
    code_max_processes: int = Field(64, description="processes+threads of a kernel's uid (RLIMIT_NPROC)")
    code_max_file_mb: int = Field(100, description="largest file a kernel may write, in MB (RLIMIT_FSIZE)")
    code_tmp_mb: int = Field(256, description="size of the kernel's private /tmp (tmpfs, bubblewrap only)")
    code_max_output_chars: int = Field(20000, description="longer code logs are truncated")
    code_max_sessions: int = Field(16, description="live code sessions; beyond, the least recent goes")
    code_use_bwrap: bool = Field(True, description="run kernels inside bubblewrap when it is installed")
    code_bwrap_path: str = Field(
        "bwrap", description="the bubblewrap binary: a name looked up on PATH, or a path"
    )
    code_allow_unsandboxed: bool = Field(
        False,
        description="DANGEROUS: without a working bubblewrap, run the code interpreter anyway: model-written "
        "code then runs with the server's privileges (root if the server is root) on the host filesystem; "
        "default: code_interpreter is refused",
    )
    code_session_mb: int = Field(
        256, description="disk space of one code session (/mnt/data and the kernel's home), in MB"
    )
    code_use_cgroups: bool = Field(
        True,
        description="give each kernel a cgroup (v2, else v1) capping the memory of all its processes at "
        "code_memory_mb and its CPU at code_cpu_cores, where the cgroup tree is writable",
    )
    code_cpu_cores: float = Field(1.0, description="CPU one kernel may use, in cores (cgroup quota)")
    code_sandbox_uid_base: int = Field(
        61000, description="first uid given to kernels when the server runs as root (one uid per live kernel)"
    )
    code_sessions_dir: Path | None = Field(
        None, description="where kernel session directories live; default: a private temporary directory"
    )
    code_preload: str = Field(
        "import numpy, pandas, matplotlib.pyplot\ndel numpy, pandas, matplotlib",
        description="code run silently in pooled kernels so the first execution finds these modules loaded",
    )
    log_level: str = Field("info", description="logging level")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            pairs = [item.strip() for item in value.split(",") if item.strip()]
            keys: dict[str, str] = {}
            for pair in pairs:
                key, _, project = pair.partition("=")
                keys[key.strip()] = project.strip() or "default"
            return keys
        return value

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'assistd.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.files_dir or self.data_dir / "files"

    @property
    def models_toml(self) -> Path:
        return self.models_file or self.models_dir / "models.toml"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    def model_entries(self) -> list[ModelEntry]:
        """The bundled SmolLM2 entry plus every entry of the models TOML file (a later entry wins by name)."""
        bundled = ModelEntry(
            name=DEFAULT_MODEL_NAME,
            path=self.models_dir / DEFAULT_MODEL_FILE,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_gpu_layers=self.n_gpu_layers,
        )
        entries = {bundled.name: bundled}
        for entry in read_models_toml(self.models_toml):
            entries[entry.name] = entry
        return list(entries.values())


def read_models_toml(path: Path) -> list[ModelEntry]:
    if not path.exists():
        return []
    data = tomllib.loads(path.read_text())
    base = path.parent
    entries = []
    for item in data.get("models", []):
        entry = ModelEntry(**item)
        if not entry.path.is_absolute():
            entry.path = base / entry.path
        entries.append(entry)
    return entries
