"""The `assistd` command: serve, models, doctor. Flags of `serve` are generated from the Settings fields."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path
from typing import Any

from assistd.config import Settings


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        annotation = info.annotation
        help_text = f"{info.description or name} (env ASSISTD_{name.upper()})"
        if annotation is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=help_text)


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
    default = next((e for e in settings.model_entries() if e.name == settings.default_model), None)
    model_note = f"{default.name} ({default.path})" if default else settings.default_model
    print(
        f"assistd: listening on http://{settings.host}:{settings.port}/v1 ; default model {model_note}",
        flush=True,
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0


def models_list(settings: Settings) -> int:
    for entry in settings.model_entries():
        state = "ok" if Path(entry.path).exists() else "MISSING"
        marker = "*" if entry.name == settings.default_model else " "
        print(f"{marker} {entry.name:32} n_ctx={entry.n_ctx:<6} {state:8} {entry.path}")
    return 0


def models_add(settings: Settings, name: str, path: str, n_ctx: int | None) -> int:
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
    target.write_text("\n".join(lines).lstrip() + "\n")
    print(f"assistd: added model {name} -> {file} in {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistd", description="The OpenAI Assistants API v2 on local models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="run the HTTP server")
    _settings_flags(serve_p)
    models_p = sub.add_parser("models", help="list or add models")
    models_sub = models_p.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="list the configured models")
    add_p = models_sub.add_parser("add", help="register a GGUF file under a name")
    add_p.add_argument("name")
    add_p.add_argument("path")
    add_p.add_argument("--n-ctx", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(settings_from(args))
    settings = Settings()
    if args.command == "models" and args.models_command == "list":
        return models_list(settings)
    if args.command == "models" and args.models_command == "add":
        return models_add(settings, args.name, args.path, args.n_ctx)
    return 1
