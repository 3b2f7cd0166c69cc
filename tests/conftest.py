from __future__ import annotations

import itertools
import os

import openai
import pytest

from assistd.storage.db import Database
from tests.postgres import PostgresServer
from tests.support import KEY_A, KEY_B, MODELS_DIR, ServerProcess

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One real `assistd serve` process for the contract tests (model loaded once)."""
    proc = ServerProcess(tmp_path_factory.mktemp("server"))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def client_b(server) -> openai.OpenAI:
    """A client of a second project: it must never see project A's objects."""
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_B, max_retries=0, timeout=120)


@pytest.fixture
def aclient(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def model_file():
    path = MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make install` (scripts/fetch_model.py) first")
    return path


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster for the session (tests/postgres.py); databases: new_database()."""
    try:
        server = PostgresServer()
    except RuntimeError as exc:
        pytest.fail(f"the PostgreSQL tests could not start PostgreSQL: {exc}")
    yield server
    server.close()


_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def each_db(request, tmp_path):
    """A migrated database of each kind, SQLite in the test's dir and a fresh one on the session's PostgreSQL:
    for tests of what both must do the same."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'test.db'}")
    else:
        database = Database(request.getfixturevalue("postgres").new_database(f"each{next(_databases)}"))
    database.create_schema()
    yield database
    database.dispose()
