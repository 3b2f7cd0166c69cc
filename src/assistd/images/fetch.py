"""Images given by http(s) URL, fetched by the server: off unless the operator turns it on.

Fetching a URL a client names lets clients make the server reach whatever it can reach (SSRF: cloud
metadata, admin consoles on the premises), so it is off by default (`--image-url-fetch`) and limited to the
operator's allowlist of hosts (`--image-url-allow`, see allowlist.py). Redirects are followed by hand, at
most `max_redirects`, each target checked like the first URL. The body is capped while it streams
(Content-Length is checked first, then the bytes counted), and the whole download by `timeout_s` (a read
begun before that deadline may take up to its own share of it). The environment's proxy and CA settings
(HTTPS_PROXY, NO_PROXY, SSL_CERT_FILE) apply, as for any httpx client. Blocking: call from a worker thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from assistd.images.allowlist import HostAllowlist
from assistd.images.errors import ImageFetchFailed, ImageFetchRefused
from assistd.images.limits import MiB, megabytes

DISABLED = (
    "Fetching image URLs is off on this server; send the image as a data: URL or an uploaded file "
    "(the operator can enable --image-url-fetch)"
)
REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
    with httpx.Client(follow_redirects=False, headers=headers) as client:
        for _ in range(policy.max_redirects + 1):
            _check(target, allowlist)
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


def _check(url: httpx.URL, allowlist: HostAllowlist) -> None:
    host = url.raw_host.decode("ascii").lower()
    port = url.port or _DEFAULT_PORTS[url.scheme]
    if not allowlist.allows(host, port):
        where = host if url.port is None else f"{host}:{url.port}"
        why = (
            "the list of hosts it may fetch from (--image-url-allow)"
            if allowlist
            else "its --image-url-allow"
        )
        raise ImageFetchRefused(
            f"This server does not fetch images from {where}: the host is not in {why}"
            + ("" if allowlist else ", which is empty")
        )


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
