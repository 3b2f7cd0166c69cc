"""`assistd doctor`: each check on a machine state made for it, and the table it prints."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from assistd import doctor
from assistd.cli import build_parser, main
from assistd.config import Settings
from tests.remote_engine import EngineProcess
from tests.support import free_port


def settings_in(tmp_path: Path, **extra) -> Settings:
    return Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "models", **extra)


def test_missing_model_is_off_with_what_to_do(tmp_path):
    (check,) = doctor.check_models(settings_in(tmp_path))
    assert not check.ok
    assert "missing" in check.detail and "SmolLM2-135M-Instruct.Q4_1.gguf" in check.detail
    assert "make install" in check.fix


def test_a_file_that_is_not_gguf_is_off(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"<html>not a model</html>")
    (check,) = doctor.check_models(settings_in(tmp_path))
    assert not check.ok and "not a GGUF file" in check.detail


def test_a_truncated_gguf_is_off_and_a_whole_one_ok(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    path = models / "SmolLM2-135M-Instruct.Q4_1.gguf"
    path.write_bytes(b"GGUF" + bytes(100))
    (check,) = doctor.check_models(settings_in(tmp_path))
    assert not check.ok and "truncated" in check.detail
    path.write_bytes(b"GGUF" + bytes(2 * 1024 * 1024))
    (check,) = doctor.check_models(settings_in(tmp_path))
    assert check.ok and "2.0 MB" in check.detail and "(default)" in check.name


def test_database_not_created_yet_then_with_schema(tmp_path):
    settings = settings_in(tmp_path)
    check = doctor.check_database(settings)
    assert check.ok and "not created yet" in check.detail
    assert not (tmp_path / "data" / "assistd.db").exists()  # the doctor creates nothing
    from assistd.storage.db import Database

    settings.data_dir.mkdir(parents=True)
    db = Database(settings.database)
    db.create_schema()
    db.dispose()
    check = doctor.check_database(settings)
    assert check.ok and "connected" in check.detail


def test_database_with_missing_tables_is_off(tmp_path):
    import sqlite3

    settings = settings_in(tmp_path)
    settings.data_dir.mkdir(parents=True)
    sqlite3.connect(settings.data_dir / "assistd.db").execute("CREATE TABLE other (x)").connection.close()
    check = doctor.check_database(settings)
    assert not check.ok and "tables missing" in check.detail and "assistd serve" in check.fix


def test_embedding_model_from_the_package_and_a_bad_path(tmp_path):
    assert doctor.check_embedding(settings_in(tmp_path)).ok
    check = doctor.check_embedding(settings_in(tmp_path, embedding_model=str(tmp_path / "nowhere")))
    assert not check.ok and "ASSISTD_EMBEDDING_MODEL" in check.fix


def test_unreachable_chroma_server_is_off(tmp_path):
    check = doctor.check_chroma(settings_in(tmp_path, chroma_url="http://127.0.0.1:9"))
    assert not check.ok and "unreachable" in check.detail and "chroma run" in check.fix


def test_table_lists_every_check_and_what_to_do(tmp_path, capsys):
    code = doctor.main(settings_in(tmp_path))
    out = capsys.readouterr().out
    for name in (
        "model SmolLM2-135M-Instruct",
        "code interpreter sandbox",
        "vectors (Chroma)",
        "database",
        "embedding model",
        "API keys",
    ):
        assert name in out
    assert "What to do:" in out and "make install" in out  # the model is missing in tmp_path
    assert code == 1


def test_cli_doctor_and_chat_are_commands(tmp_path, monkeypatch, capsys):
    parser = build_parser()
    assert parser.parse_args(["doctor", "-v"]).verbose
    args = parser.parse_args(["chat", "asst_1", "--base-url", "http://x/v1", "--api-key", "k"])
    assert (args.assistant_id, args.base_url, args.api_key, args.thread) == (
        "asst_1",
        "http://x/v1",
        "k",
        None,
    )
    monkeypatch.setenv("ASSISTD_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("ASSISTD_DATA_DIR", str(tmp_path / "data"))
    assert main(["doctor"]) == 1
    assert "missing" in capsys.readouterr().out


# ------------------------------------------------------------------------------- engines of the models
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """llama.cpp's server engine as its own process (`assistd engine`), as a models file `url` names it."""
    proc = EngineProcess(tmp_path_factory.mktemp("doctor-engine"), parallel=2)
    yield proc
    proc.stop()


def with_models(tmp_path: Path, lines: list[str]) -> Settings:
    models = tmp_path / "models.toml"
    models.write_text("\n".join(lines) + "\n")
    return settings_in(tmp_path, models_file=models)


def entry_check(settings: Settings, name: str) -> doctor.Check:
    (check,) = [c for c in doctor.check_models(settings) if c.name.startswith(f"model {name}")]
    return check


@pytest.mark.model
def test_a_reachable_llama_cpp_server_is_ok_with_its_context(tmp_path, engine):
    settings = with_models(tmp_path, ["[[models]]", 'name = "remote"', f'url = "{engine.url}"'])
    check = entry_check(settings, "remote")
    assert check.ok, check.detail
    assert f"llama.cpp server at {engine.url}: healthy, 2 slots of 2048 tokens" in check.detail


def test_an_unreachable_llama_cpp_server_is_off_naming_model_and_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = with_models(tmp_path, ["[[models]]", 'name = "gone"', f'url = "{url}"'])
    check = entry_check(settings, "gone")
    assert not check.ok
    assert "engine unreachable" in check.detail and "'gone'" in check.detail and url in check.detail
    assert "assistd engine" in check.fix and url in check.fix


def test_a_remote_model_with_a_missing_tokenizer_file_is_off(tmp_path):
    settings = with_models(
        tmp_path,
        ["[[models]]", 'name = "remote"', 'url = "http://127.0.0.1:9"', f'path = "{tmp_path / "no.gguf"}"'],
    )
    check = entry_check(settings, "remote")
    assert not check.ok and "missing" in check.detail and "no.gguf" in check.detail


@pytest.mark.model
def test_an_openai_compatible_engine_must_list_the_model(tmp_path, engine):
    served = httpx.get(f"{engine.url}/v1/models", timeout=10).json()["data"][0]["id"]
    lines = ["[[models]]", 'name = "vllm-like"', 'engine = "openai"', f'url = "{engine.url}"']
    check = entry_check(with_models(tmp_path, [*lines, f'remote_model = "{served}"']), "vllm-like")
    assert check.ok and f"serves '{served}'" in check.detail, check.detail
    check = entry_check(with_models(tmp_path, [*lines, 'remote_model = "not-there"']), "vllm-like")
    assert not check.ok and "does not serve 'not-there'" in check.detail


def test_the_embedded_engine_needs_xllamacpp_and_a_valid_gguf(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF" + bytes(2 * 1024 * 1024))
    check = entry_check(settings_in(tmp_path), "SmolLM2-135M-Instruct")
    assert check.ok and "embedded llama.cpp server engine (xllamacpp" in check.detail
    assert "GGUF" in check.detail
    check = entry_check(settings_in(tmp_path, engine="llama-cpp-python"), "SmolLM2-135M-Instruct")
    assert check.ok and "llama-cpp-python" in check.detail


def test_cli_doctor_fails_on_an_unreachable_engine(tmp_path, monkeypatch, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    models = tmp_path / "models.toml"
    models.write_text(f'[[models]]\nname = "gone"\nurl = "{url}"\n')
    monkeypatch.setenv("ASSISTD_MODELS_FILE", str(models))
    monkeypatch.setenv("ASSISTD_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("ASSISTD_DATA_DIR", str(tmp_path / "data"))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "model gone" in out and "engine unreachable" in out and url in out


def test_database_behind_the_newest_revision_is_off(tmp_path):
    from assistd.storage import migrate
    from assistd.storage.db import Database

    settings = settings_in(tmp_path)
    settings.data_dir.mkdir(parents=True)
    db = Database(settings.database)
    migrate.upgrade(db, migrate.BASELINE)
    check = doctor.check_database(settings)
    assert not check.ok and "0001_initial" in check.detail and "assistd db upgrade" in check.fix
    migrate.upgrade(db)
    db.dispose()
    check = doctor.check_database(settings)
    assert check.ok and f"revision {migrate.head()} (newest)" in check.detail


def test_blob_store_writable_directory_and_the_cluster_note(tmp_path):
    settings = settings_in(tmp_path)
    check = doctor.check_blob_store(settings)
    assert check.ok and "not created yet" in check.detail and "every node" in check.detail
    settings.blob_dir.mkdir(parents=True)
    (settings.blob_dir / "file-x").write_bytes(b"kept")
    check = doctor.check_blob_store(settings)
    assert check.ok and "writable" in check.detail and "every node of a cluster must mount" in check.detail
    assert [p.name for p in settings.blob_dir.iterdir()] == ["file-x"]  # the probe is gone


def test_blob_store_that_is_a_file_or_not_writable_is_off(tmp_path):
    settings = settings_in(tmp_path, files_dir=tmp_path / "blobs")
    (tmp_path / "blobs").write_text("not a directory")
    check = doctor.check_blob_store(settings)
    assert not check.ok and "not a directory" in check.detail and "--files-dir" in check.fix
    # /proc takes no new files, not even from root (chmod would not stop root)
    check = doctor.check_blob_store(settings_in(tmp_path, files_dir=Path("/proc")))
    assert not check.ok and "not writable" in check.detail
