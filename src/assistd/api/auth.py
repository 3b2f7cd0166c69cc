"""Bearer keys → projects. Every object belongs to the project whose key made it."""

from __future__ import annotations

import hmac

from litestar import Request

from assistd.errors import Unauthenticated

DEFAULT_PROJECT = "default"


class KeyRing:
    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = dict(keys)

    def project_for(self, authorization: str | None) -> str:
        if not self.keys:
            return DEFAULT_PROJECT
        if not authorization:
            raise Unauthenticated(
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() == "bearer":
            for known, project in self.keys.items():
                if hmac.compare_digest(known.encode(), key.encode()):
                    return project
        shown = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"
        raise Unauthenticated(f"Incorrect API key provided: {shown}.")


async def provide_project(request: Request) -> str:
    keyring: KeyRing = request.app.state.keyring
    return keyring.project_for(request.headers.get("authorization"))
