"""Test support: the real server as a subprocess, and the response-shape check against openai.types."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"
DEFAULT_MODEL = "SmolLM2-135M-Instruct"
KEY_A, KEY_B = "sk-test-project-a", "sk-test-project-b"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0, every: float = 0.02) -> None:
    """Waits for `condition` (e.g. what a server does just after the reply or commit a test saw), failing
    with `what` after a generous `timeout`: a loaded machine must never fail a test."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def wait_healthy(
    proc: subprocess.Popen,
    url: str,
    log: Callable[[], str],
    what: str,
    timeout: float = 120,
    path: str = "/health",
) -> None:
    """Waits until `url` + `path` answers 200; raises with the process's log when it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log()}")
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready:\n{log()}")


class ServerProcess:
    """`assistd serve` on a free port with its own data directory."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        database_url: str | None = None,
        role: str | None = None,
    ) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        environ = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        environ.setdefault("ASSISTD_API_KEYS", f"{KEY_A}=project-a,{KEY_B}=project-b")
        environ.update(env or {})
        data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "assistd",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            "--models-dir",
            str(MODELS_DIR),
            *(["--database-url", database_url] if database_url else []),
            *(["--role", role] if role else []),
            *(args or []),
        ]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=environ, cwd=data_dir
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120) -> None:
        wait_healthy(self.proc, self.base_url, self.log, "server", timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---------------------------------------------------------------------------------------------------------
# Shape check: the JSON keys of a response must equal the fields of the SDK type, recursively.


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) or origin is typing.Annotated:
        found: list[type[BaseModel]] = []
        for arg in typing.get_args(annotation):
            found += _model_types(arg)
        return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _item_annotation(annotation: Any) -> Any | None:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if (found := _item_annotation(arg)) is not None:
                return found
        return None
    if origin is typing.Annotated:
        return _item_annotation(typing.get_args(annotation)[0])
    if origin in (list, typing.List):  # noqa: UP006
        return typing.get_args(annotation)[0]
    return None


def _pick(candidates: list[type[BaseModel]], value: dict) -> type[BaseModel] | None:
    """Among union members, the one whose `type`/`object` literal matches the value."""
    if len(candidates) == 1:
        return candidates[0]
    for cand in candidates:
        for key in ("type", "object"):
            field = cand.model_fields.get(key)
            if field is not None and key in value and value[key] in (typing.get_args(field.annotation) or ()):
                return cand
    return None


def shape_errors(value: Any, model: type[BaseModel], path: str = "$", strict: bool = True) -> list[str]:
    """Differences between a JSON object and an SDK model: missing fields (top level: every field; nested:
    required ones) and extra keys, at every depth."""
    if not isinstance(value, dict):
        return [f"{path}: expected an object for {model.__name__}, got {type(value).__name__}"]
    errors = []
    # JSON keys are the aliases where the SDK has one (JSONSchema.schema_ is "schema" on the wire).
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    for key in value:
        if key not in fields:
            errors.append(f"{path}.{key}: not a field of {model.__name__}")
    for name, info in fields.items():
        if name not in value:
            if strict or info.is_required():
                errors.append(f"{path}.{name}: missing ({model.__name__})")
            continue
        errors += _check_value(value[name], info.annotation, f"{path}.{name}")
    return errors


def _check_value(item: Any, annotation: Any, path: str) -> list[str]:
    if item is None:
        return []
    if isinstance(item, list):
        inner = _item_annotation(annotation)
        errors = []
        for i, element in enumerate(item):
            errors += _check_value(element, inner, f"{path}[{i}]") if inner is not None else []
        return errors
    if isinstance(item, dict):
        model = _pick(_model_types(annotation), item)
        return shape_errors(item, model, path, strict=False) if model else []
    return []


def assert_shape(value: Any, model: type[BaseModel]) -> None:
    errors = shape_errors(value, model)
    assert not errors, "response does not match openai.types." + model.__name__ + ":\n" + "\n".join(errors)


def raw_json(raw_response: Any) -> Any:
    """The JSON body of an SDK `with_raw_response` call."""
    return raw_response.http_response.json()


def png_bytes(width: int = 8, height: int = 8, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A real PNG image (images are checked when a message holds them)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def png_data_url(width: int = 8, height: int = 8) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png_bytes(width, height)).decode()
