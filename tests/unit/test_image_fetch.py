"""Image URLs: fetched only when on and from allowed hosts, within size and time; data: URLs decoded."""

from __future__ import annotations

import base64
import errno
import socket
import ssl
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
from assistd.images.fetch import DISABLED, address_kind

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
LIMIT = 4096  # max_bytes of the policies here
NAME = "images.example.test"  # resolved by the `dns` fixture, never by a real resolver
PUBLIC = "93.184.216.34"
REAL_GETADDRINFO = socket.getaddrinfo
REAL_CREATE_CONNECTION = socket.create_connection


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        routes = {
            "/img": lambda: self._send(200, IMAGE),
            "/host": lambda: self._send(200, self.headers["Host"].encode()),
            "/to-wildcard": lambda: self._redirect(f"http://{NAME}:{port}/img"),
            "/missing": lambda: self._send(404, b"no such image"),
            "/to-img": lambda: self._redirect("/img"),
            "/to-localhost": lambda: self._redirect(f"http://localhost:{port}/img"),
            "/to-ftp": lambda: self._redirect("ftp://127.0.0.1/img"),
            "/loop": lambda: self._redirect("/loop"),
            "/declared-big": lambda: self._send(200, b"", length=LIMIT + 1),
            "/chunked-big": self._chunked,
            "/stall": lambda: self._slowly(chunks=0),
            "/trickle": lambda: self._slowly(chunks=100),
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
            time.sleep(0 if chunks else 10)
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


class FakeDns:
    """NAME resolves to `answers[0]`, then `answers[1]`, ... (the last one repeats); other names as usual."""

    def __init__(self) -> None:
        self.answers: list[list[str]] = []
        self.lookups = 0
        self.delay = 0.0

    def __call__(self, host, port, *args, **kwargs):
        if host != NAME:
            return REAL_GETADDRINFO(host, port, *args, **kwargs)
        self.lookups += 1
        time.sleep(self.delay)
        addresses = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDns()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def connects(monkeypatch):
    """Records where connections go: to PUBLIC as set in `reroute`, else unreachable (nothing leaves this
    machine); elsewhere (127.0.0.1, or NAME by way of `dns`) as usual."""
    log: list[tuple[str, int]] = []
    reroute: dict[tuple[str, int], tuple[str, int]] = {}

    def create_connection(address, *args, **kwargs):
        log.append(tuple(address[:2]))
        if tuple(address[:2]) in reroute:
            return REAL_CREATE_CONNECTION(reroute[tuple(address[:2])], *args, **kwargs)
        if address[0] == PUBLIC:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        return REAL_CREATE_CONNECTION(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return log, reroute


def port_of(server: str) -> int:
    return int(server.rsplit(":", 1)[1])


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
        assert time.monotonic() - started < 8  # the server takes 10 s: the limit ended it (however slow here)


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


INSIDE = [
    ("127.0.0.1", "loopback"),
    ("10.0.0.5", "private"),
    ("169.254.169.254", "link-local"),
    ("::ffff:127.0.0.1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("::1", "loopback"),
]


def test_a_wildcard_host_resolving_inside_is_refused(server, dns, connects):
    url = f"http://{NAME}:{port_of(server)}/img"
    for rule in ("*", "*.example.test", "*.test:" + str(port_of(server))):
        for address, kind in INSIDE:
            dns.answers = [[address]]
            message = _message(ImageFetchRefused, url, policy(rule))
            assert NAME in message and address in message and f"{kind} address" in message, message
            assert "wildcard rule" in message and "--image-url-allow" in message
        dns.answers = [[PUBLIC, "10.0.0.5"]]  # any address inside is enough
        assert "10.0.0.5, a private address" in _message(ImageFetchRefused, url, policy(rule))
    assert connects[0] == []  # refused before any connection


def test_an_address_under_the_any_host_rule_is_checked_too(server):
    message = _message(ImageFetchRefused, f"{server}/img", policy("*"))
    assert message.startswith("This server does not fetch images from 127.0.0.1:") and "loopback" in message
    for listed in ("127.0.0.1", f"127.0.0.1:{port_of(server)}"):  # an exact rule is the operator's choice
        assert fetch_image(f"{server}/img", policy("*", listed)) == IMAGE


def test_a_wildcard_host_resolving_publicly_is_not_refused(dns, connects):
    dns.answers = [[PUBLIC]]
    for rule in ("*", "*.example.test"):
        message = _message(ImageFetchFailed, f"http://{NAME}/img", policy(rule, timeout=5))
        assert message.startswith(f"Could not download the image from http://{NAME}/img: cannot connect")
    assert connects[0] == [(PUBLIC, 80), (PUBLIC, 80)]  # to the checked address, not resolved again


def test_the_connection_goes_to_the_checked_address(server, dns, connects):
    """DNS rebinding: a second lookup would say 127.0.0.1; the connection uses the first, checked answer,
    and the request still names the host (Host header; for https, SNI and the certificate check)."""
    port = port_of(server)
    log, reroute = connects
    reroute[(PUBLIC, port)] = ("127.0.0.1", port)  # PUBLIC's "server" is the test server
    dns.answers = [[PUBLIC], ["127.0.0.1"]]
    assert fetch_image(f"http://{NAME}:{port}/host", policy("*.example.test")) == f"{NAME}:{port}".encode()
    assert dns.lookups == 1 and log == [(PUBLIC, port)]


def test_https_to_the_checked_address_still_verifies_the_name(server, dns, connects, monkeypatch):
    log, reroute = connects
    reroute[(PUBLIC, 443)] = ("127.0.0.1", port_of(server))  # a TCP peer; the TLS handshake is stopped here
    names: list[str | None] = []

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):
        names.append(server_hostname)
        raise ssl.SSLCertVerificationError("stopped by the test")

    monkeypatch.setattr(ssl.SSLContext, "wrap_socket", wrap_socket)
    dns.answers = [[PUBLIC]]
    message = _message(ImageFetchFailed, f"https://{NAME}/img", policy("*.example.test"))
    assert "stopped by the test" in message
    assert log == [(PUBLIC, 443)] and names == [NAME]  # SNI and the certificate check use the name


def test_the_environment_proxy_still_applies(dns, connects, monkeypatch):
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as closed:
        proxy_port = closed.server_address[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
    dns.answers = [[PUBLIC]]
    log, _ = connects
    assert "cannot connect" in _message(ImageFetchFailed, f"http://{NAME}/img", policy("*"))
    assert log == [("127.0.0.1", proxy_port)]  # the proxy connects (and resolves): see fetch.py
    monkeypatch.setenv("NO_PROXY", NAME)
    assert "cannot connect" in _message(ImageFetchFailed, f"http://{NAME}/img", policy("*"))
    assert log[1:] == [(PUBLIC, 80)]  # direct again, to the checked address


def test_an_exact_name_rule_is_trusted_wherever_it_points(server, dns, connects):
    dns.answers = [["127.0.0.1"]]
    url = f"http://{NAME}:{port_of(server)}/img"
    assert fetch_image(url, policy(NAME)) == IMAGE
    assert fetch_image(url, policy("*", "*.example.test", f"{NAME}:{port_of(server)}")) == IMAGE


def test_a_redirect_to_a_wildcard_host_resolving_inside_is_refused(server, dns, connects):
    dns.answers = [["127.0.0.1"]]
    message = _message(ImageFetchRefused, f"{server}/to-wildcard", policy("127.0.0.1", "*.example.test"))
    assert f"{NAME}:{port_of(server)}: it resolves to 127.0.0.1, a loopback address" in message
    # the same redirect with the name listed exactly is followed
    assert fetch_image(f"{server}/to-wildcard", policy("127.0.0.1", NAME)) == IMAGE


def test_a_wildcard_host_that_does_not_resolve_in_time_fails(dns):
    dns.answers = [[]]
    message = _message(ImageFetchFailed, f"http://{NAME}/img", policy("*"))
    assert f"cannot resolve {NAME}" in message
    dns.answers, dns.delay = [[PUBLIC]], 6.0
    started = time.monotonic()
    message = _message(ImageFetchFailed, f"http://{NAME}/img", policy("*", timeout=0.2))
    assert "took longer than 0.2 s" in message
    assert time.monotonic() - started < 5  # the lookup takes 6 s: the limit ended it (however slow here)


def test_address_kinds():
    public_addresses = (PUBLIC, "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34")
    for public in (*public_addresses, "64:ff9b::5db8:d822"):  # the last: NAT64 of PUBLIC
        assert address_kind(public) is None, public
    kinds = {
        "0.0.0.0": "unspecified",
        "::": "unspecified",
        "127.0.0.2": "loopback",
        "::1": "loopback",
        "169.254.169.254": "link-local",
        "fe80::1%eth0": "link-local",
        "224.0.0.1": "multicast",
        "ff02::1": "multicast",
        "10.0.0.5": "private",
        "192.168.1.1": "private",
        "172.16.0.1": "private",
        "fd00::7": "private",
        "100.100.100.200": "non-public",  # shared address space (a cloud's metadata service)
    }
    for address, kind in kinds.items():
        assert address_kind(address) == kind, address
    assert address_kind("::ffff:10.0.0.5") == "private"
    assert address_kind("2002:7f00:1::") == "loopback"  # 6to4 of 127.0.0.1
    assert address_kind("240.0.0.1") is not None  # reserved (private too, to Python)


def test_an_exact_rule_is_chosen_before_a_wildcard():
    rules = HostAllowlist(["*", "*.example.test", "a.example.test"])
    assert not rules.rule_for("a.example.test", 443).wildcard
    assert rules.rule_for("b.example.test", 443).wildcard and rules.rule_for("other.test", 443).host == "*"
    assert HostAllowlist(["a.test"]).rule_for("b.test", 80) is None


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
