"""A small trio HTTP server for ``/metrics``, ``/healthz`` and ``/readyz``.

It runs inside the run's trio nursery, so no extra thread is needed, and it serves
the registry that the run created.
"""

from __future__ import annotations

import email.utils
import logging
import re
import urllib.parse
from typing import Protocol

import prometheus_client
import trio
from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)


class Health(Protocol):
    """The state behind ``/healthz`` and ``/readyz``."""

    def is_live(self) -> bool:
        """Tell whether the process's event loop is turning."""
        ...

    def is_ready(self) -> bool:
        """Tell whether the first cycles have completed."""
        ...


MAX_REQUEST_HEAD = 8 * 1024
"""Maximum size in bytes of a request line and headers. A larger head gets status 431."""

DEFAULT_REQUEST_TIMEOUT = 10.0
"""Default seconds a connection may take from accept to close."""

# Seconds to keep reading after the response, so unread request bytes do not turn
# the close into a TCP reset that could discard the response before the client reads it.
_LINGER_SECONDS = 1.0
_MAX_LINGER_BYTES = 64 * 1024

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")

_INVALID_REQUEST_LINE = "Invalid request line: expected a line like 'GET /metrics HTTP/1.1'.\n"

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
    431: "Request Header Fields Too Large",
    505: "HTTP Version Not Supported",
}


async def serve_metrics(
    registry: CollectorRegistry,
    *,
    port: int,
    host: str = "127.0.0.1",
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    health: Health | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``registry`` over HTTP/1.1 at ``/metrics`` until cancelled.

    With ``health``, ``/healthz`` and ``/readyz`` return 200 or 503 from it; without
    it they return 404.

    Port 0 binds an ephemeral port. ``task_status.started`` receives the port that
    is listening. Each connection carries one request, gets ``Connection: close``
    and is closed after ``request_timeout`` seconds at the latest. The server ignores
    request headers and the query string. So unlike the server in prometheus_client
    0.26 it offers no gzip, no OpenMetrics format and no ``name[]`` filter.

    Raises ``OSError`` when the address cannot be resolved or bound, such as when
    the port is in use.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    # With port 0 each address of a host name gets its own ephemeral port, so keep
    # only the first listener and report one port that every listener shares.
    if port == 0 and len(listeners) > 1:
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    address = listeners[0].socket.getsockname()
    log.info("serving metrics on http://%s:%d/metrics", host, address[1])

    async def handle(stream: trio.SocketStream) -> None:
        await _handle_connection(stream, registry, request_timeout, health)

    task_status.started(address[1])
    try:
        await trio.serve_listeners(handle, listeners)
    finally:
        log.info("stopped serving metrics on %s:%d", host, address[1])


async def _handle_connection(
    stream: trio.SocketStream,
    registry: CollectorRegistry,
    timeout: float,
    health: Health | None,
) -> None:
    """Read one request from ``stream``, send the response and close gracefully."""
    peer = _peer_name(stream)
    try:
        with trio.move_on_after(timeout) as deadline:
            try:
                head = await _receive_head(stream)
            except _HeadTooLargeError:
                response = _response(
                    431, f"Request line and headers exceed {MAX_REQUEST_HEAD} bytes.\n"
                )
            else:
                if head is None:
                    # The client closed without sending a request, like a TCP health check.
                    return
                response = _respond(head, registry, health)
            await stream.send_all(response)
            await stream.send_eof()
            await _drain(stream)
        if deadline.cancelled_caught:
            log.debug("metrics connection from %s timed out after %g s", peer, timeout)
    except trio.BrokenResourceError as error:
        log.debug("metrics connection from %s failed: %s", peer, error)


class _HeadTooLargeError(Exception):
    """The request line and headers exceed ``MAX_REQUEST_HEAD`` bytes."""


async def _receive_head(stream: trio.SocketStream) -> bytes | None:
    """Receive up to the blank line that ends the request head.

    Returns the head without its blank line, or None when the client closed before
    sending any byte. A head cut short by the client's EOF is returned as is, so it
    is parsed and usually rejected. Raises ``_HeadTooLargeError`` past
    ``MAX_REQUEST_HEAD`` bytes.
    """
    buffer = bytearray()
    while True:
        match = _HEAD_END.search(buffer)
        if match is not None and match.start() <= MAX_REQUEST_HEAD:
            return bytes(buffer[: match.start()])
        if len(buffer) > MAX_REQUEST_HEAD:
            raise _HeadTooLargeError
        data = await stream.receive_some(MAX_REQUEST_HEAD)
        if not data:
            return bytes(buffer) if buffer else None
        buffer += data


async def _drain(stream: trio.SocketStream) -> None:
    """Discard what the client still sends, until its EOF or the linger limit."""
    received = 0
    with trio.move_on_after(_LINGER_SECONDS):
        while received < _MAX_LINGER_BYTES:
            data = await stream.receive_some(_MAX_LINGER_BYTES)
            if not data:
                return
            received += len(data)


def _respond(head: bytes, registry: CollectorRegistry, health: Health | None) -> bytes:
    """Build the whole response to a request head, rendering the registry for /metrics."""
    request_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        method, target, version = request_line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        return _response(400, _INVALID_REQUEST_LINE)
    version_match = _VERSION.fullmatch(version)
    path = _request_path(target)
    if not _METHOD.fullmatch(method) or version_match is None or path is None:
        return _response(400, _INVALID_REQUEST_LINE)
    if version_match.group(1) != "1":
        return _response(505, "Only HTTP/1.x is supported.\n")

    if method not in ("GET", "HEAD"):
        return _response(405, "Use GET.\n", extra_headers=[("Allow", "GET, HEAD")])
    if path == "/metrics":
        body = prometheus_client.generate_latest(registry)
        response = _response(200, body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
    elif path in ("/healthz", "/readyz") and health is not None:
        response = _health_response(path, health)
    elif path == "/":
        response = _response(200, "stressor metrics: GET /metrics\n")
    else:
        response = _response(404, f"Not found: {path}. Metrics are at /metrics.\n")
    if method == "HEAD":
        return response.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    return response


def _health_response(path: str, health: Health) -> bytes:
    if path == "/healthz":
        if health.is_live():
            return _response(200, "ok: the event loop is turning\n")
        return _response(503, "unhealthy: the event loop has not turned recently\n")
    if health.is_ready():
        return _response(200, "ready: the first cycles completed\n")
    return _response(503, "not ready: no cycle has completed yet\n")


def _request_path(target: str) -> str | None:
    """Return the path of an origin-form or absolute-form request target, else None."""
    if target.startswith("/"):
        return urllib.parse.urlsplit(target).path
    if target.startswith(("http://", "https://")):
        return urllib.parse.urlsplit(target).path or "/"
    return None


def _response(
    status: int,
    body: str | bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    extra_headers: list[tuple[str, str]] | None = None,
) -> bytes:
    """Return a whole HTTP/1.1 response that ends the connection."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = [
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *(extra_headers or []),
    ]
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def _peer_name(stream: trio.SocketStream) -> str:
    """Return the peer's host and port, or ``unknown`` when the socket has none."""
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return "unknown"
    return f"{peer[0]}:{peer[1]}"
