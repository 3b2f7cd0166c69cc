"""Images given by http(s) URL, fetched by the server: off unless the operator turns it on.

Fetching a URL a client names lets clients make the server reach whatever it can reach (SSRF: cloud
metadata, admin consoles on the premises), so it is off by default (`--image-url-fetch`) and limited to the
operator's allowlist of hosts (`--image-url-allow`, see allowlist.py). Redirects are followed by hand, at
most `max_redirects`, each target checked like the first URL. The body is capped while it streams
(Content-Length is checked first, then the bytes counted), and the whole download by `timeout_s` (a read
begun before that deadline may take up to its own share of it). The environment's proxy and CA settings
(HTTPS_PROXY, NO_PROXY, SSL_CERT_FILE) apply, as for any httpx client. Blocking: call from a worker thread.

A host allowed only by a wildcard rule (`*`, `*.example.com`) could be a name that points inside (127.0.0.1,
10.x, 169.254.169.254), so it is resolved first (within `timeout_s`) and refused when any of its addresses
is not public (loopback, private, link-local, multicast, reserved, unspecified, or one of those inside an
IPv6 form: ::ffff:a.b.c.d, 64:ff9b::/96, 2002::/16); the connection then goes to those checked addresses
only, not to a second lookup (DNS rebinding), with the URL, Host header, TLS SNI and certificate check
still by name. A host allowed by an exact rule (name or address) is the operator's choice: not checked.
Limit: through a proxy from the environment, the proxy resolves the name and connects, not this server.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from assistd.images.allowlist import HostAllowlist, HostRule
from assistd.images.errors import ImageFetchFailed, ImageFetchRefused
from assistd.images.limits import MiB, megabytes

DISABLED = (
    "Fetching image URLs is off on this server; send the image as a data: URL or an uploaded file "
    "(the operator can enable --image-url-fetch)"
)
REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: an IPv4 address in its last 32 bits


@dataclass(frozen=True)
class FetchPolicy:
    enabled: bool = False
    allow_hosts: tuple[str, ...] = ()  # allowlist.py's entries; none: no host is allowed
    max_bytes: int = 20 * MiB
    timeout_s: float = 10.0
    max_redirects: int = 3

    def __post_init__(self) -> None:
        HostAllowlist(self.allow_hosts)  # a malformed entry fails here (ValueError), at start-up

    @classmethod
    def from_settings(cls, settings: Any) -> FetchPolicy:
        return cls(
            enabled=settings.image_url_fetch,
            allow_hosts=tuple(settings.image_url_allow),
            max_bytes=settings.image_max_bytes,
            timeout_s=settings.image_fetch_timeout,
        )


def fetch_image(url: str, policy: FetchPolicy) -> bytes:
    """The body of an http(s) image URL. Raises ImageFetchRefused (off, scheme or host not allowed) or
    ImageFetchFailed (HTTP error status, too large, too slow, too many redirects, unreachable)."""
    if not policy.enabled:
        raise ImageFetchRefused(DISABLED)
    allowlist = HostAllowlist(policy.allow_hosts)
    deadline = time.monotonic() + policy.timeout_s
    target = _parse(url)
    headers = {"Accept": "image/*", "Accept-Encoding": "identity", "User-Agent": "assistd"}
    pins: dict[str, list[str]] = {}  # host name -> the checked addresses its connections go to
    with httpx.Client(follow_redirects=False, headers=headers) as client:
        _pin(client, pins)
        for _ in range(policy.max_redirects + 1):
            _check(target, allowlist, pins, policy, deadline)
            try:
                with client.stream("GET", target, timeout=_left(deadline, policy, target)) as response:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECTS and location:
                        target = _redirected(target, location)
                        continue
                    return _body(response, target, policy, deadline)
            except httpx.TimeoutException:
                raise _too_slow(target, policy) from None
            except httpx.HTTPError as exc:
                raise ImageFetchFailed(
                    f"Could not download the image from {shown(target)}: {_why(exc)}"
                ) from None
    raise ImageFetchFailed(
        f"Downloading the image from {shown(url)} was redirected more than {policy.max_redirects} times"
    )


def _parse(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ImageFetchRefused(f"Not a valid image URL: {url[:100]!r}") from None
    if not parsed.scheme:
        raise ImageFetchRefused(f"Not a valid image URL: {url[:100]!r}")
    if parsed.scheme not in _DEFAULT_PORTS:
        raise ImageFetchRefused(
            f"Only http and https image URLs can be fetched, not {shown(parsed)} (or send a data: URL)"
        )
    if not parsed.host:
        raise ImageFetchRefused(f"Not a valid image URL: {url[:100]!r}")
    return parsed


def _redirected(url: httpx.URL, location: str) -> httpx.URL:
    try:
        joined = url.join(location)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ImageFetchFailed(f"{shown(url)} redirected to an invalid URL: {location[:100]!r}") from None
    return _parse(str(joined))


def _check(
    url: httpx.URL, allowlist: HostAllowlist, pins: dict[str, list[str]], policy: FetchPolicy, deadline: float
) -> None:
    host = url.raw_host.decode("ascii").lower()
    port = url.port or _DEFAULT_PORTS[url.scheme]
    where = host if url.port is None else f"{host}:{url.port}"
    rule = allowlist.rule_for(host, port)
    if rule is None:
        why = (
            "the list of hosts it may fetch from (--image-url-allow)"
            if allowlist
            else "its --image-url-allow"
        )
        raise ImageFetchRefused(
            f"This server does not fetch images from {where}: the host is not in {why}"
            + ("" if allowlist else ", which is empty")
        )
    if not rule.wildcard:
        return  # an exact name or address: the operator's choice
    try:
        addresses, resolved = [str(ipaddress.ip_address(host.split("%", 1)[0]))], False
    except ValueError:
        addresses, resolved = _resolve(url, host, port, policy, deadline), True
    for address in addresses:
        kind = address_kind(address)
        if kind is not None:
            what = f"it resolves to {address}, {_a(kind)} address" if resolved else f"{_a(kind)} address"
            raise ImageFetchRefused(
                f"This server does not fetch images from {where}: {what}, and the wildcard rule "
                f"{_rule_text(rule)} of --image-url-allow reaches public addresses only "
                "(the operator can list the host itself to allow it)"
            )
    if resolved:
        pins[url.raw_host.decode("ascii")] = addresses


def address_kind(address: str) -> str | None:
    """None for a public IP address; else the kind of address it is ("loopback", "private", ...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:  # where the connection really goes
            return address_kind(str(embedded))
    flags = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-public", not ip.is_global),  # e.g. 100.64.0.0/10, shared (carrier-grade NAT)
    )
    return next((kind for kind, flag in flags if flag), None)


def _resolve(url: httpx.URL, host: str, port: int, policy: FetchPolicy, deadline: float) -> list[str]:
    """The IP addresses host resolves to, in the resolver's order, within the fetch's deadline."""
    answer: dict[str, Any] = {}

    def lookup() -> None:
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            answer["error"] = exc

    thread = threading.Thread(target=lookup, name="image-fetch-resolve", daemon=True)
    thread.start()
    thread.join(_left(deadline, policy, url))
    if thread.is_alive():  # getaddrinfo has no timeout of its own: left to finish on its own
        raise _too_slow(url, policy)
    infos = answer.get("infos") or []
    addresses = list(
        dict.fromkeys(str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6))
    )
    if not addresses:
        why = answer.get("error") or "no address"
        raise ImageFetchFailed(
            f"Could not download the image from {shown(url)}: cannot resolve {host} ({why})"
        )
    return addresses


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _rule_text(rule: HostRule) -> str:
    host = f"[{rule.host}]" if ":" in rule.host else rule.host
    return host if rule.port is None else f"{host}:{rule.port}"


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects a pinned host name to its checked addresses (first that answers), others as usual."""

    def __init__(self, pins: dict[str, list[str]]) -> None:
        self._pins = pins
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._pins.get(host)
        if not addresses:
            return self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:  # refused, unreachable: the next address (a timeout is not)
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return self._backend.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _pin(client: httpx.Client, pins: dict[str, list[str]]) -> None:
    """Makes the client's direct connections (not those through a proxy from the environment) go through
    _PinnedBackend. httpx has no public hook for it (and a client given its own transport ignores the
    environment's proxies), so its default transport's connection pool gets the backend; a httpx without
    those attributes fails here, loudly, rather than connect unpinned."""
    transport = getattr(client, "_transport", None)
    pool = getattr(transport, "_pool", None)
    if not isinstance(transport, httpx.HTTPTransport) or not isinstance(
        getattr(pool, "_network_backend", None), httpcore.NetworkBackend
    ):
        raise RuntimeError("assistd cannot pin image fetch addresses with this httpx/httpcore version")
    pool._network_backend = _PinnedBackend(pins)


def _body(response: httpx.Response, url: httpx.URL, policy: FetchPolicy, deadline: float) -> bytes:
    if not 200 <= response.status_code < 300:
        raise ImageFetchFailed(
            f"Downloading the image from {shown(url)} returned HTTP {response.status_code}"
        )
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ImageFetchFailed(
            f"{shown(url)} sent the image compressed (Content-Encoding: {encoding[:40]}), "
            "which is not accepted"
        )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise _too_large(url, policy)
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > policy.max_bytes:
            raise _too_large(url, policy)
        if time.monotonic() > deadline:
            raise _too_slow(url, policy)
    return bytes(body)


def _left(deadline: float, policy: FetchPolicy, url: httpx.URL) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _too_slow(url, policy)
    return left


def _too_large(url: httpx.URL, policy: FetchPolicy) -> ImageFetchFailed:
    return ImageFetchFailed(f"The image at {shown(url)} is larger than {megabytes(policy.max_bytes)}")


def _too_slow(url: httpx.URL, policy: FetchPolicy) -> ImageFetchFailed:
    return ImageFetchFailed(
        f"Downloading the image from {shown(url)} took longer than {policy.timeout_s:g} s "
        "(limit, --image-fetch-timeout)"
    )


def _why(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({str(exc) or 'connection failed'})"
    return str(exc) or type(exc).__name__


def shown(url: httpx.URL | str) -> str:
    """A URL for a message: no user info, query or fragment (they may hold secrets), at most 200 chars."""
    if isinstance(url, str):
        try:
            url = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            return repr(url[:100])
    text = str(url.copy_with(query=None, fragment=None, username=None, password=None))
    return text if len(text) <= 200 else text[:197] + "..."
