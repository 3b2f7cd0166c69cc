"""The hosts image URLs may be fetched from (`--image-url-allow`).

An entry is a host name (`images.example.com`), a suffix pattern (`*.example.com`: any name below
example.com, not example.com itself), an IP address (`10.0.0.7`, `[fd00::7]`), each with an optional
`:port` (without one, any port), or `*` (any host). A host allowed only by a wildcard (`*`, `*.x`) is
fetched only from public addresses (fetch.py resolves it and checks every address); a host name or an
address listed exactly is the operator's choice and is fetched wherever it points.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")


@dataclass(frozen=True)
class HostRule:
    host: str  # lower case; "*.x" for a suffix pattern, "*" for any host; IPv6 without brackets
    port: int | None

    @property
    def wildcard(self) -> bool:
        """`*` or `*.domain`: it names no particular host, so what it matches must resolve publicly."""
        return self.host == "*" or self.host.startswith("*.")

    def allows(self, host: str, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.host == "*":
            return True
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host


class HostAllowlist:
    def __init__(self, entries: Iterable[str]) -> None:
        self.rules = [parse_rule(entry) for entry in entries if entry.strip()]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def allows(self, host: str, port: int) -> bool:
        return self.rule_for(host, port) is not None

    def rule_for(self, host: str, port: int) -> HostRule | None:
        """The rule that allows host:port, an exact one before a wildcard; None when none does."""
        host = host.lower().rstrip(".")
        matching = [rule for rule in self.rules if rule.allows(host, port)]
        return min(matching, key=lambda rule: rule.wildcard, default=None)


def parse_rule(entry: str) -> HostRule:
    """Raises ValueError for an entry that is not a host pattern with an optional port."""
    text = entry.strip().lower()
    host, port = text, None
    if text.startswith("["):  # [v6] or [v6]:port
        close = text.find("]")
        host, rest = text[1:close], text[close + 1 :]
        if close < 0 or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"image URL allowlist entry {entry!r}: expected [IPv6] or [IPv6]:port")
        port = _port(entry, rest[1:]) if rest else None
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = _port(entry, number)
    elif ":" in text:
        host = text  # a bare IPv6 address
    host = host.rstrip(".")
    prefix = "*." if host.startswith("*.") else ""
    name = _ascii(host[len(prefix) :])
    if not (host == "*" or _valid_name(name)):
        raise ValueError(
            f"image URL allowlist entry {entry!r}: expected a host name, *.domain, an IP address or *, "
            "with an optional :port (no scheme or path)"
        )
    return HostRule(host if host == "*" else prefix + name, port)


def _valid_name(name: str) -> bool:
    if ":" in name:  # IPv6
        return all(c in "0123456789abcdef:." for c in name)
    return bool(_NAME.match(name))


def _ascii(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return host


def _port(entry: str, number: str) -> int:
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise ValueError(f"image URL allowlist entry {entry!r}: {number!r} is not a port")
    return int(number)
