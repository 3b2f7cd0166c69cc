"""Image URLs: fetched only when on and from allowed hosts, within size and time; data: URLs decoded."""

from __future__ import annotations

import base64
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assistd.images import (
    BadImage,
    FetchPolicy,
    ImageFetchFailed,
    ImageFetchRefused,
    decode_data_url,
    fetch_image,
)
from assistd.images.allowlist import HostAllowlist, parse_rule
from assistd.images.fetch import DISABLED

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
LIMIT = 4096  # max_bytes of the policies here


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        routes = {
            "/img": lambda: self._send(200, IMAGE),
            "/missing": lambda: self._send(404, b"no such image"),
            "/to-img": lambda: self._redirect("/img"),
            "/to-localhost": lambda: self._redirect(f"http://localhost:{port}/img"),
            "/to-ftp": lambda: self._redirect("ftp://127.0.0.1/img"),
            "/loop": lambda: self._redirect("/loop"),
            "/declared-big": lambda: self._send(200, b"", length=LIMIT + 1),
            "/chunked-big": self._chunked,
            "/stall": lambda: self._slowly(chunks=0),
            "/trickle": lambda: self._slowly(chunks=50),
        }
        routes[self.path.split("?")[0]]()

    def _send(self, status: int, body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _chunked(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = b"x" * 1000
        for _ in range(10):  # 10 000 bytes, more than LIMIT, with no length announced
            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
        self.wfile.write(b"0\r\n\r\n")

    def _slowly(self, chunks: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        try:
            for _ in range(max(chunks, 1)):
                time.sleep(0.1)
                if chunks:
                    self.wfile.write(b"x")
                    self.wfile.flush()
            time.sleep(0 if chunks else 3)
        except OSError:  # the client gave up
            pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """The fetch honours the environment's proxy settings: none for these tests' own server."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def policy(*hosts: str, timeout: float = 5.0) -> FetchPolicy:
    return FetchPolicy(enabled=True, allow_hosts=hosts, max_bytes=LIMIT, timeout_s=timeout)


def _message(error: type[Exception], url: str, rules: FetchPolicy) -> str:
    with pytest.raises(error) as caught:
        fetch_image(url, rules)
    return caught.value.message


def test_fetching_is_off_by_default(server):
    assert FetchPolicy().enabled is False
    assert _message(ImageFetchRefused, f"{server}/img", FetchPolicy(allow_hosts=("127.0.0.1",))) == DISABLED
    assert DISABLED == (
        "Fetching image URLs is off on this server; send the image as a data: URL or an uploaded file "
        "(the operator can enable --image-url-fetch)"
    )


def test_an_allowed_host_gives_the_bytes(server):
    assert fetch_image(f"{server}/img", policy("127.0.0.1")) == IMAGE
    port = server.rsplit(":", 1)[1]
    assert fetch_image(f"{server}/img", policy(f"127.0.0.1:{port}")) == IMAGE


def test_a_host_not_allowed_is_refused_by_name(server):
    message = _message(ImageFetchRefused, f"{server}/img", policy("images.example.com"))
    assert "127.0.0.1" in message and "--image-url-allow" in message
    assert "127.0.0.1" in _message(ImageFetchRefused, f"{server}/img", policy("127.0.0.1:1"))
    assert "empty" in _message(ImageFetchRefused, f"{server}/img", policy())


def test_only_http_and_https(server):
    for url in ("ftp://127.0.0.1/img", "file:///etc/passwd", "gopher://127.0.0.1/"):
        assert "Only http and https" in _message(ImageFetchRefused, url, policy("*"))


def test_a_redirect_within_the_allowlist_is_followed(server):
    assert fetch_image(f"{server}/to-img", policy("127.0.0.1")) == IMAGE


def test_a_redirect_to_a_host_not_allowed_is_refused(server):
    message = _message(ImageFetchRefused, f"{server}/to-localhost", policy("127.0.0.1"))
    assert "localhost" in message
    assert "Only http and https" in _message(ImageFetchRefused, f"{server}/to-ftp", policy("127.0.0.1"))


def test_too_many_redirects_fail(server):
    assert "redirected more than 3 times" in _message(ImageFetchFailed, f"{server}/loop", policy("127.0.0.1"))


def test_too_large_by_content_length_or_by_count(server):
    for path in ("/declared-big", "/chunked-big"):
        assert "is larger than" in _message(ImageFetchFailed, f"{server}{path}", policy("127.0.0.1"))


def test_a_slow_server_fails_by_the_time_limit(server):
    for path in ("/stall", "/trickle"):
        started = time.monotonic()
        message = _message(ImageFetchFailed, f"{server}{path}", policy("127.0.0.1", timeout=1.0))
        assert "took longer than 1 s" in message and "--image-fetch-timeout" in message
        assert time.monotonic() - started < 2.5


def test_an_error_status_fails(server):
    message = _message(ImageFetchFailed, f"{server}/missing?token=secret", policy("127.0.0.1"))
    assert message == f"Downloading the image from {server}/missing returned HTTP 404"  # no query shown


def test_an_unreachable_server_fails(server):
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as closed:
        port = closed.server_address[1]
    message = _message(ImageFetchFailed, f"http://127.0.0.1:{port}/img", policy("127.0.0.1"))
    assert message.startswith(
        f"Could not download the image from http://127.0.0.1:{port}/img: cannot connect"
    )


def test_allowlist_patterns():
    rules = HostAllowlist(["*.example.com", "cdn.test:8443", "[::1]:8080", "10.0.0.7"])
    assert rules.allows("a.example.com", 443) and rules.allows("a.b.example.com", 80)
    assert not rules.allows("example.com", 443) and not rules.allows("badexample.com", 443)
    assert rules.allows("cdn.test", 8443) and not rules.allows("cdn.test", 443)
    assert rules.allows("::1", 8080) and not rules.allows("::1", 80)
    assert rules.allows("10.0.0.7", 1234) and rules.allows("A.Example.COM.", 443)
    assert HostAllowlist(["*"]).allows("anything.at.all", 1) and not HostAllowlist([])
    for bad in ("http://x.com", "x.com/path", "x.com:port", "[::1", "a b"):
        with pytest.raises(ValueError):
            parse_rule(bad)
    with pytest.raises(ValueError):
        FetchPolicy(allow_hosts=("https://x.com",))


def test_policy_from_settings_and_flags():
    from assistd.cli import build_parser, settings_from

    args = ["serve", "--image-url-fetch", "--image-url-allow", "a.com,*.b.org", "--image-url-allow", "c:81"]
    settings = settings_from(build_parser().parse_args(args))
    rules = FetchPolicy.from_settings(settings)
    assert rules.enabled and rules.allow_hosts == ("a.com", "*.b.org", "c:81")
    assert (rules.max_bytes, rules.timeout_s) == (20 * 1024 * 1024, 10.0)
    default = FetchPolicy.from_settings(settings_from(build_parser().parse_args(["serve"])))
    assert not default.enabled and default.allow_hosts == ()


def test_data_urls():
    encoded = base64.b64encode(IMAGE).decode()
    assert decode_data_url(f"data:image/png;base64,{encoded}") == IMAGE
    assert decode_data_url(f"DATA:image/jpeg;name=x.jpg;BASE64,{encoded[:40]}\n{encoded[40:]}") == IMAGE
    bad = {
        "data:text/plain;base64,aGVsbG8=": "media type must be an image type",
        "data:;base64,aGVsbG8=": "media type must be an image type",
        "data:image/png,hello": "must be base64-encoded",
        "data:image/png;base64": "no ','",
        "data:image/png;base64,%%%%": "not valid base64",
        "data:image/png;base64,aGVsbG8": "not valid base64",
        "data:image/png;base64,": "holds no data",
        "https://example.com/a.png": "Expected a data URL",
    }
    for url, expected in bad.items():
        with pytest.raises(BadImage) as caught:
            decode_data_url(url)
        assert expected in caught.value.message, url
    with pytest.raises(BadImage, match="larger than"):
        decode_data_url(f"data:image/png;base64,{encoded}", max_bytes=100)
