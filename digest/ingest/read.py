"""Reading one input, a file or a URL, within a size limit and (for a URL) one deadline for the whole download.

A URL is fetched with urllib (so proxies from the environment still apply), but:

- the deadline covers everything: connecting, the TLS handshake, the request, the headers, the body and every
  redirect. Each socket read waits at most for the time left, so a server that drips one byte at a time cannot
  stretch a download past `[sources] timeout`;
- redirects are followed by us, not by urllib: at most MAX_REDIRECTS, only over http(s) and only to the same host
  and port (plus http -> https on the same host with default ports); anything else is refused, naming the target;
- no Accept-Encoding is sent and nothing is decompressed, so a compressed bomb stays its compressed size;
- at most `limit` bytes are read, whatever Content-Length says.
"""

from __future__ import annotations

import functools
import http.client
import selectors
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urljoin, urlsplit

from digest import __version__
from digest.errors import IngestError
from digest.ingest.text import one_line

USER_AGENT = f"paper-digest/{__version__} (+https://github.com/paper-digest)"
MAX_REDIRECTS = 5
_REDIRECT_CODES = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _too_large(source: str, limit: int) -> IngestError:
    return IngestError(f"{source}: larger than the {limit / 1e6:g} MB limit; raise [ingest] max_file_mb to read it")


def read_file(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise _too_large(str(path), limit)
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise IngestError(f"{path}: no such file or folder") from None
    except IsADirectoryError:
        raise IngestError(f"{path}: is a folder") from None
    except PermissionError:
        raise IngestError(f"{path}: permission denied") from None
    except (OSError, ValueError) as exc:
        raise IngestError(f"{path}: cannot read ({one_line(getattr(exc, 'strerror', None) or exc)})") from None
    if len(data) > limit:
        raise _too_large(str(path), limit)
    if not data.strip():
        raise IngestError(f"{path}: empty file")
    return data


class Deadline:
    """One download's deadline, and whether any byte has arrived yet (to tell silence from a slow drip)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.received = 0

    def left(self) -> float:
        """Seconds left; a timeout (TimeoutError) once there are none."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        return left


class _DeadlineIO:
    """Every read and write of a socket waits at most until the deadline (mixed into a TCP and a TLS socket)."""

    deadline: Deadline | None = None

    def recv_into(self, buffer: Any, *args: Any, **kwargs: Any) -> int:
        if self.deadline is not None:
            self.settimeout(self.deadline.left())  # type: ignore[attr-defined]
        count = int(super().recv_into(buffer, *args, **kwargs))  # type: ignore[misc]
        if self.deadline is not None:
            self.deadline.received += count
        return count

    def sendall(self, data: Any, *args: Any, **kwargs: Any) -> None:
        if self.deadline is not None:
            self.settimeout(self.deadline.left())  # type: ignore[attr-defined]
        super().sendall(data, *args, **kwargs)  # type: ignore[misc]


class _DeadlineSocket(_DeadlineIO, socket.socket):
    """A TCP socket under a deadline."""


class _DeadlineSSLSocket(_DeadlineIO, ssl.SSLSocket):
    """A TLS socket under a deadline (SSLContext.sslsocket_class)."""


def _connect(
    address: tuple[str, int], timeout: float | None, source_address: Any = None, *, deadline: Deadline
) -> socket.socket:
    plain = socket.create_connection(address, deadline.left(), source_address)
    sock = _DeadlineSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
    sock.deadline = deadline
    try:
        sock.settimeout(deadline.left())
    except BaseException:
        sock.close()
        raise
    return sock


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = functools.partial(_connect, deadline=deadline)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline
        self._create_connection = functools.partial(_connect, deadline=deadline)

    def connect(self) -> None:
        """TCP (and a proxy tunnel) as usual, then a TLS handshake that also ends by the deadline."""
        http.client.HTTPConnection.connect(self)
        server_hostname = getattr(self, "_tunnel_host", None) or self.host
        context: ssl.SSLContext = self._context  # type: ignore[attr-defined]
        sock = context.wrap_socket(self.sock, server_hostname=server_hostname, do_handshake_on_connect=False)
        try:
            sock.settimeout(0.0)  # non-blocking: each step of the handshake waits in select(), bounded
            while True:
                try:
                    sock.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    _wait(sock, self._deadline, read=True)
                except ssl.SSLWantWriteError:
                    _wait(sock, self._deadline, read=False)
            sock.settimeout(self._deadline.left())
        except BaseException:
            sock.close()
            raise
        if isinstance(sock, _DeadlineSSLSocket):
            sock.deadline = self._deadline
        self.sock = sock


def _wait(sock: socket.socket, deadline: Deadline, *, read: bool) -> None:
    """Wait until a non-blocking socket can go on, at most until the deadline."""
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ if read else selectors.EVENT_WRITE)
        if not selector.select(deadline.left()):
            deadline.left()  # raises when the time is up; otherwise the caller simply tries again
            return
    if read:
        deadline.received += 1  # the server said something (part of a TLS handshake): it is not silent


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    context.sslsocket_class = _DeadlineSSLSocket
    return context


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_HTTPConnection, deadline=self._deadline)
        return self.do_open(connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline) -> None:
        self._tls = _tls_context()
        super().__init__(context=self._tls)
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_HTTPSConnection, deadline=self._deadline)
        return self.do_open(connection, req, context=self._tls)


class Redirected(Exception):
    def __init__(self, code: int, location: str | None) -> None:
        super().__init__(code, location)
        self.code = code
        self.location = location


class _NoAutomaticRedirects(urllib.request.HTTPRedirectHandler):
    """Hands every redirect back to fetch_url, which decides whether to follow it (urllib would follow up to 10,
    to any host, port or ftp:// URL)."""

    def http_error_302(self, req: Any, fp: Any, code: int, msg: Any, headers: Any) -> NoReturn:
        location = headers.get("Location") or headers.get("URI")
        fp.close()
        raise Redirected(code, location)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


def _redirect_target(url: str, current: str, redirect: Redirected) -> str:
    """Where a redirect from `current` may go: an http(s) URL on the same host and port (never https -> http; http
    -> https on the default ports is the one change of port allowed). A one-line IngestError otherwise."""
    if not redirect.location:
        raise IngestError(f"{url}: HTTP {redirect.code} redirect without a Location; check the URL in [sources] urls")
    target = urljoin(current, redirect.location.strip())
    scheme, host, port = _origin(current)
    try:
        to_scheme, to_host, to_port = _origin(target)
    except ValueError:  # a port that is not a number
        to_scheme, to_host, to_port = "", "", 0
    same_port = to_port == port and not (scheme == "https" and to_scheme == "http")
    upgrade = (scheme, port, to_scheme, to_port) == ("http", 80, "https", 443)
    if to_scheme in _DEFAULT_PORTS and to_host == host and (same_port or upgrade):
        return target
    raise IngestError(
        f"{url}: redirected to {one_line(target, 200)}, which is not followed: only redirects to http(s) URLs on"
        f" the same host and port ({host}:{port}) are; use the final URL in [sources] urls if it is trusted"
    )


def _timed_out(url: str, timeout: float, deadline: Deadline) -> IngestError:
    if not deadline.received:
        return IngestError(f"{url}: no answer within {timeout:g} s; try again later or raise [sources] timeout")
    return IngestError(
        f"{url}: timed out: the download did not finish within {timeout:g} s; try again later or raise"
        " [sources] timeout"
    )


def get_url(url: str, deadline: Deadline, limit: int, source: str) -> bytes:
    opener = urllib.request.build_opener(_HTTPHandler(deadline), _HTTPSHandler(deadline), _NoAutomaticRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
    with opener.open(request, timeout=deadline.left()) as response:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large(source, limit)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = response.read(min(65_536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks)


def fetch_url(url: str, limit: int, timeout: float) -> bytes:
    """GET an http(s) URL: at most `limit` bytes, and the whole download, redirects included, within `timeout`
    seconds. Every failure is one line naming the URL."""
    deadline = Deadline(timeout)
    current = url
    try:
        if _origin(url)[0] not in _DEFAULT_PORTS:
            raise IngestError(f"{url}: not an http(s) URL")
        for _ in range(MAX_REDIRECTS + 1):
            try:
                data = get_url(current, deadline, limit, url)
            except Redirected as redirect:
                current = _redirect_target(url, current, redirect)
                continue
            break
        else:
            raise IngestError(
                f"{url}: more than {MAX_REDIRECTS} redirects (the last to {one_line(current, 200)});"
                " use the final URL in [sources] urls"
            )
    except TimeoutError:
        raise _timed_out(url, timeout, deadline) from None
    except urllib.error.HTTPError as exc:
        exc.close()
        raise IngestError(f"{url}: HTTP {exc.code} {one_line(exc.reason)}; check the URL in [sources] urls") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _timed_out(url, timeout, deadline) from None
        raise IngestError(f"{url}: cannot fetch ({one_line(reason)})") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise IngestError(f"{url}: cannot fetch ({one_line(exc) or type(exc).__name__})") from None
    if len(data) > limit:
        raise _too_large(url, limit)
    if not data.strip():
        raise IngestError(f"{url}: empty response")
    return data
