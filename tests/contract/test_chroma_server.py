"""assistd against a real `chroma run`: bearer token, tenant and database; transient failures retried; a
search while Chroma stays down answers 503 `server_error`, and works again once Chroma is back.

`chroma run` of chromadb 1.x (the Rust server) has no authentication of its own (its CHROMA_SERVER_AUTHN_*
variables are ignored; Chroma's cookbook puts a proxy such as Envoy in front for a token). The tests do the
same: a small reverse proxy that answers 401 without `Authorization: Bearer <token>` and 502 when Chroma is
down, as a proxy does.
"""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.chroma import ChromaProcess
from tests.support import KEY_A, ServerProcess

TOKEN = "chroma-test-token"


class TokenProxy:
    """HTTP reverse proxy to `upstream` that requires the bearer token; counts what it refused."""

    def __init__(self, upstream: str, token: str) -> None:
        self.upstream, self.token = upstream, token
        self.refused = 0
        self.paths: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") != f"Bearer {proxy.token}":
                    proxy.refused += 1
                    return self._answer(401, b'{"error":"Unauthorized","message":"bad or missing token"}')
                proxy.paths.append(self.path)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                try:
                    got = httpx.request(
                        self.command, proxy.upstream + self.path, content=body, headers=headers, timeout=60
                    )
                except httpx.HTTPError:
                    return self._answer(502, b"502 Bad Gateway")
                self._answer(got.status_code, got.content, got.headers.get("content-type"))

            def _answer(self, status: int, body: bytes, ctype: str | None = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chroma(tmp_path):
    server = ChromaProcess(tmp_path / "chroma")
    yield server
    server.stop()


def _make_tenant(url: str, tenant: str, database: str) -> None:
    import chromadb
    from chromadb.config import Settings

    admin = chromadb.AdminClient(
        Settings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host="127.0.0.1",
            chroma_server_http_port=int(url.rsplit(":", 1)[1]),
            anonymized_telemetry=False,
        )
    )
    admin.create_tenant(tenant)
    admin.create_database(database, tenant)


def _unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_token_tenant_and_database(chroma):
    from assistd.tools.file_search.store import ChunkStore

    _make_tenant(chroma.url, "acme", "kbase")
    proxy = TokenProxy(chroma.url, TOKEN)
    try:
        store = ChunkStore(url=proxy.url, token=TOKEN, tenant="acme", database="kbase")
        vectors = np.stack([_unit(1, 0, 0), _unit(0, 1, 0)])
        metas = [{"file_id": "f1", "chunk": 0}, {"file_id": "f1", "chunk": 1}]
        store.upsert("vs_one", ["f1#0", "f1#1"], vectors, ["alpha text", "beta text"], metas)
        (best, sim), *_ = store.query("vs_one", _unit(0, 1, 0), 2, None)
        assert best.id == "f1#1" and sim == pytest.approx(1.0, abs=1e-4)
        assert store.count("vs_one") == 2
        assert all("/tenants/acme/databases/kbase/" in p for p in proxy.paths if "/collections" in p)
        # the collection is in acme/kbase, not in Chroma's default tenant and database
        direct = ChunkStore(url=chroma.url)
        assert [c.name for c in direct.client.list_collections()] == []
        assert ChunkStore(url=chroma.url, tenant="acme", database="kbase").count("vs_one") == 2

        refused = proxy.refused
        for bad in (None, "wrong-token"):
            with pytest.raises(Exception) as caught:
                ChunkStore(url=proxy.url, token=bad, tenant="acme", database="kbase").count("vs_one")
            assert "ChromaUnavailable" not in type(caught.value).__name__  # refused: not retried as an outage
        assert proxy.refused > refused
    finally:
        proxy.close()


def test_calls_are_retried_through_a_restart_and_fail_clearly_past_it(chroma):
    from assistd.tools.file_search.store import ChromaUnavailable, ChunkStore

    store = ChunkStore(url=chroma.url, attempts=14)  # about 25 s: a loaded box restarts Chroma slowly
    store.upsert("vs_r", ["f#0"], np.stack([_unit(1, 1, 0)]), ["some text"], [{"file_id": "f", "chunk": 0}])
    chroma.stop()

    def start_later() -> None:
        time.sleep(1.0)
        chroma.start()

    # a client connected before the outage, and one connecting during it (a node starting)
    for client in (store, ChunkStore(url=chroma.url, attempts=14)):
        restarter = threading.Thread(target=start_later)
        restarter.start()
        try:
            hits = client.query("vs_r", _unit(1, 1, 0), 3, None)  # refused at first, answered once back
        finally:
            restarter.join()
        assert [c.id for c, _ in hits] == ["f#0"]
        chroma.stop()

    started = time.monotonic()
    with pytest.raises(ChromaUnavailable, match="unavailable"):
        store.query("vs_r", _unit(1, 1, 0), 3, None)
    assert time.monotonic() - started < 180  # bounded (about 25 s of backoff; generous for a loaded box)


def test_search_answers_503_while_chroma_is_down_and_recovers(tmp_path: Path, chroma):
    _make_tenant(chroma.url, "team", "vectors")
    proxy = TokenProxy(chroma.url, TOKEN)
    server = ServerProcess(
        tmp_path / "data",
        env={
            "ASSISTD_CHROMA_URL": proxy.url,
            "ASSISTD_CHROMA_TOKEN": TOKEN,
            "ASSISTD_CHROMA_TENANT": "team",
            "ASSISTD_CHROMA_DATABASE": "vectors",
        },
        args=["--kernel-pool-size", "0"],
    )
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)
        store = client.vector_stores.create(name="auth")
        batch = client.vector_stores.file_batches.upload_and_poll(
            store.id,
            files=[
                ("ferry.txt", b"The night ferry leaves pier seven at midnight."),
                ("orchard.txt", b"The orchard grows quinces and medlars by the old wall."),
            ],
        )
        assert batch.file_counts.completed == 2
        hits = client.vector_stores.search(store.id, query="quinces medlars").data
        assert hits[0].filename == "orchard.txt"
        assert proxy.refused == 0 and any("/tenants/team/databases/vectors/" in p for p in proxy.paths)

        chroma.stop()  # the proxy answers 502 now, as a proxy in front of a stopped Chroma does
        answer = httpx.post(
            f"{server.base_url}/v1/vector_stores/{store.id}/search",
            json={"query": "night ferry"},
            headers={"Authorization": f"Bearer {KEY_A}"},
            timeout=120,
        )
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "vector_store_unavailable"
        assert "Traceback" not in server.log()

        chroma.start()
        hits = client.vector_stores.search(store.id, query="night ferry pier").data
        assert hits[0].filename == "ferry.txt"
    finally:
        server.stop()
        proxy.close()
