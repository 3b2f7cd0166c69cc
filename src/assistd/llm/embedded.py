"""The embedded engine: llama.cpp's server (continuous batching over parallel slots, prompt cache,
grammars) running inside this process from the `xllamacpp` wheel, serving one GGUF model on a loopback
port with a key only this process knows. Everything above it talks to it as to a remote llama.cpp server
(llm/llama_server.py), so the embedded and the remote engine share one code path."""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from assistd.config import ModelEntry
from assistd.llm.errors import ModelLoadError

log = logging.getLogger("assistd.llm")

MIB = 1024 * 1024
MAX_SLOTS = 16


def default_slots(entry: ModelEntry) -> int:
    """Generation slots when neither the model entry nor --parallel says: 2 per CPU core, 4 to 16; 16 with
    GPU offload (a GPU's throughput comes from batching)."""
    if entry.n_gpu_layers:
        return MAX_SLOTS
    return max(4, min(MAX_SLOTS, 2 * (os.cpu_count() or 1)))


def default_threads() -> int:
    """Half the logical CPUs (the physical cores on SMT machines): the rest serves the API, streams and
    file indexing. llama.cpp's threads wait for each other at every step, so an engine whose threads
    compete with the server's for every core slows down many times over (seen here: 2 threads on 2
    busy cores gave 0.7 tokens/s, 1 thread 12)."""
    return max(1, (os.cpu_count() or 2) // 2)


class EmbeddedEngine:
    """A running llama.cpp server for one model; `url` and `api_key` reach it."""

    def __init__(
        self,
        entry: ModelEntry,
        slots: int,
        cache_bytes: int,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
    ) -> None:
        try:
            import xllamacpp
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise ModelLoadError(f"the embedded llama.cpp engine needs the xllamacpp package: {exc}") from exc
        assert entry.path is not None
        if not entry.path.exists():
            raise ModelLoadError(
                f"model file {entry.path} for '{entry.name}' does not exist (run `make install`)"
            )
        # None: a key only this process knows; "": none (`assistd engine` on loopback)
        self.api_key = secrets.token_urlsafe(24) if api_key is None else api_key
        params: Any = xllamacpp.CommonParams()
        params.model.path = str(entry.path)
        if entry.mmproj is not None:  # a vision model: images reach it through its projector
            if not entry.mmproj.exists():
                raise ModelLoadError(f"projector file {entry.mmproj} for '{entry.name}' does not exist")
            params.mmproj.path = str(entry.mmproj)
        params.n_parallel = slots
        params.n_ctx = entry.n_ctx * slots  # each slot gets the model's whole context
        params.kv_unified = False
        params.ctx_shift = False  # a reply that reaches the context's end stops there (finish "length")
        params.n_gpu_layers = 999 if entry.n_gpu_layers < 0 else entry.n_gpu_layers
        threads = entry.n_threads or default_threads()
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.cache_ram_mib = cache_bytes // MIB  # host-memory prompt cache across threads; 0: off
        params.cache_prompt = True
        params.hostnames = [host]
        params.port = port  # 0: a free port, chosen by the engine
        params.api_keys = [self.api_key] if self.api_key else []
        params.endpoint_slots = True
        params.endpoint_metrics = True
        params.verbosity = 0
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:
            raise ModelLoadError(f"the embedded llama.cpp engine could not load {entry.path}: {exc}") from exc
        self.url: str = self._server.listening_address
        self.slots = slots
        log.info(
            "embedded llama.cpp engine for %s at %s: %d slots of %d tokens, prompt cache %d MiB",
            entry.name,
            self.url,
            slots,
            entry.n_ctx,
            cache_bytes // MIB,
        )

    def wait(self) -> None:
        """Blocks until the process is stopped (a signal): `assistd engine` serves until then."""
        import signal
        import threading

        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1.0):
            pass

    def close(self) -> None:
        server, self._server = self._server, None
        del server  # the engine's main loop exits and its threads end
