"""Prometheus metrics of a run and a small trio HTTP server that exposes them.

``RunMetrics`` turns each finished cycle's ``CycleResult`` into counters and
histograms. ``serve_metrics`` serves the registry at ``/metrics`` from inside the
run's trio nursery, so no extra thread is needed.
"""

from __future__ import annotations

import email.utils
import logging
import re
import urllib.parse

import prometheus_client
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stressor.results import HANG, OUTCOMES, CycleResult

log = logging.getLogger(__name__)

NO_FAULT = "none"
"""The ``fault`` label of a cycle that had no injected fault."""

# Expected latencies span about six decades: an inotify follower delivers a line in
# tens of microseconds, a polling follower takes up to its poll interval (commonly 0.1 to 1 s),
# and a follower that returns late after the writer's exit takes seconds. Linear
# buckets would put most of these into one bucket. A 1-2-5 series per decade keeps
# the relative error of a quantile estimate within a factor of 2.5 in every decade,
# and costs 19 buckets.
LATENCY_BUCKETS = tuple(
    mantissa * 10.0**exponent for exponent in range(-5, 1) for mantissa in (1, 2, 5)
) + (10.0,)

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
    431: "Request Header Fields Too Large",
    505: "HTTP Version Not Supported",
}


class RunMetrics:
    """The metrics of one run, declared on a registry that the caller owns.

    Labels are limited to the target name, the outcome and the fault label, which
    is a fault kind joined to a hook point. Each of these comes from a fixed set, so
    the number of series stays bounded however long the run is.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Declare every metric on ``registry``.

        Raises ``ValueError`` when the registry already contains these metric names,
        such as when two ``RunMetrics`` share one registry.
        """
        self._targets: set[str] = set()
        self._faults: set[tuple[str, str]] = set()
        self.cycles = Counter(
            "stressor_cycles",
            "Finished cycles, by their most serious outcome.",
            ["target", "outcome"],
            registry=registry,
        )
        self.hangs = Counter(
            "stressor_hangs",
            "Fault labels of cycles with a hang finding; 'none' for a hang with no fault.",
            ["target", "fault"],
            registry=registry,
        )
        self.faults_injected = Counter(
            "stressor_faults_injected",
            "Faults injected into cycles, by fault kind and hook point.",
            ["target", "fault"],
            registry=registry,
        )
        self.window_hits = Counter(
            "stressor_window_hits",
            "Faults of cycles where a fault landed between the writer's exit and the "
            "follower's watch removal or return.",
            ["target", "fault"],
            registry=registry,
        )
        self.lines_written = Counter(
            "stressor_lines_written",
            "Lines written by the writer and the faults.",
            ["target"],
            registry=registry,
        )
        self.lines_read = Counter(
            "stressor_lines_read",
            "Stressor lines the follower delivered, duplicates included.",
            ["target"],
            registry=registry,
        )
        self.lines_lost = Counter(
            "stressor_lines_lost",
            "Lines written before the follower finished and never delivered.",
            ["target"],
            registry=registry,
        )
        self.lines_duplicated = Counter(
            "stressor_lines_duplicated",
            "Deliveries of a line that was already delivered.",
            ["target"],
            registry=registry,
        )
        self.delivery_latency = Histogram(
            "stressor_delivery_latency_seconds",
            "Seconds from a line's write to its first delivery.",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.exit_latency = Histogram(
            "stressor_exit_latency_seconds",
            "Seconds from the writer's exit to the follower's return.",
            ["target"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.active_cycles = Gauge(
            "stressor_active_cycles",
            "Cycles started and not yet finished or abandoned.",
            ["target"],
            registry=registry,
        )

    def cycle_started(self, target: str) -> None:
        """Count a cycle of ``target`` as active."""
        self._add_target(target)
        self.active_cycles.labels(target=target).inc()

    def cycle_abandoned(self, target: str) -> None:
        """Stop counting a cycle that was cancelled before it had a result."""
        self._add_target(target)
        self.active_cycles.labels(target=target).dec()

    def cycle_finished(self, result: CycleResult) -> None:
        """Record a finished cycle's outcome, faults, line counts and latencies.

        Call it once per ``cycle_started`` of the same target, because it also
        decrements the active cycle gauge. Raises ``ValueError`` when a line count
        is negative, before it changes any metric.
        """
        line_counts = (
            ("lines_written", self.lines_written, result.lines_written),
            ("lines_read", self.lines_read, result.lines_read),
            ("lines_lost", self.lines_lost, result.lines_lost),
            ("lines_duplicated", self.lines_duplicated, result.lines_duplicated),
        )
        for name, _, count in line_counts:
            if count < 0:
                raise ValueError(
                    f"invalid {name} {count} in the result of {result.target} cycle "
                    f"{result.cycle}: line counts cannot be negative"
                )

        target = result.target
        self._add_target(target)
        self.active_cycles.labels(target=target).dec()
        self.cycles.labels(target=target, outcome=result.outcome).inc()

        fault_labels = result.faults or (NO_FAULT,)
        for fault in fault_labels:
            self._add_fault(target, fault)
        for fault in result.faults:
            self.faults_injected.labels(target=target, fault=fault).inc()
        if HANG in result.findings:
            for fault in fault_labels:
                self.hangs.labels(target=target, fault=fault).inc()
        if result.window_hit:
            for fault in result.faults:
                self.window_hits.labels(target=target, fault=fault).inc()

        for _, counter, count in line_counts:
            counter.labels(target=target).inc(count)

        delivery_latency = self.delivery_latency.labels(target=target)
        for latency in result.delivery_latencies:
            delivery_latency.observe(latency)
        if result.exit_latency is not None:
            self.exit_latency.labels(target=target).observe(result.exit_latency)

    def _add_target(self, target: str) -> None:
        """Create the zero-valued series of a target seen for the first time.

        A series that exists at 0 lets ``rate()`` and dashboards show 0 where a
        missing series would show no data.
        """
        if target in self._targets:
            return
        self._targets.add(target)
        for outcome in OUTCOMES:
            self.cycles.labels(target=target, outcome=outcome)
        per_target = (
            self.lines_written,
            self.lines_read,
            self.lines_lost,
            self.lines_duplicated,
            self.delivery_latency,
            self.exit_latency,
            self.active_cycles,
        )
        for metric in per_target:
            metric.labels(target=target)
        self._add_fault(target, NO_FAULT)

    def _add_fault(self, target: str, fault: str) -> None:
        """Create the zero-valued series of a fault label seen for the first time."""
        if (target, fault) in self._faults:
            return
        self._faults.add((target, fault))
        self.hangs.labels(target=target, fault=fault)
        if fault != NO_FAULT:
            self.faults_injected.labels(target=target, fault=fault)
            self.window_hits.labels(target=target, fault=fault)


async def serve_metrics(
    registry: CollectorRegistry,
    *,
    port: int,
    host: str = "127.0.0.1",
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``registry`` over HTTP/1.1 at ``/metrics`` until cancelled.

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
        await _handle_connection(stream, registry, request_timeout)

    task_status.started(address[1])
    try:
        await trio.serve_listeners(handle, listeners)
    finally:
        log.info("stopped serving metrics on %s:%d", host, address[1])


async def _handle_connection(
    stream: trio.SocketStream, registry: CollectorRegistry, timeout: float
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
                response = _respond(head, registry)
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


def _respond(head: bytes, registry: CollectorRegistry) -> bytes:
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
    elif path == "/":
        response = _response(200, "stressor metrics: GET /metrics\n")
    else:
        response = _response(404, f"Not found: {path}. Metrics are at /metrics.\n")
    if method == "HEAD":
        return response.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    return response


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
