"""Tests of the run metrics and of the metrics HTTP server, over real loopback sockets."""

from __future__ import annotations

import functools
import logging
import socket
import struct

import prometheus_client
import pytest
import trio
from prometheus_client import CollectorRegistry

from stressor import results
from stressor.exporter import MAX_REQUEST_HEAD, serve_metrics
from stressor.metrics import RunMetrics
from stressor.results import CycleResult

# Upper bound of every test's run time, in seconds: far above the few milliseconds
# that a loopback request takes, so only a hung server or client trips it.
TEST_LIMIT = 10.0

LATE_WRITE = "late-write@before-remove"
TRUNCATE = "truncate@after-exit"


def make_result(**changes: object) -> CycleResult:
    """Return a passing cycle of target ``tail`` with no faults, changed by ``changes``."""
    fields: dict[str, object] = {
        "target": "tail",
        "seed": 1,
        "cycle": 0,
        "findings": frozenset(),
        "faults": (),
        "fault_kinds": (),
        "window_hit": False,
        "lines_written": 10,
        "lines_read": 10,
        "lines_lost": 0,
        "lines_duplicated": 0,
        "lines_reordered": 0,
        "lines_torn": 0,
        "delivery_latencies": (),
        "exit_latency": 0.01,
    }
    fields.update(changes)
    return CycleResult(**fields)  # type: ignore[arg-type]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """Return the value of one sample of ``registry``, or None when it does not exist."""
    return registry.get_sample_value(name, labels)


async def start_server(
    nursery: trio.Nursery, registry: CollectorRegistry, **options: object
) -> int:
    """Start ``serve_metrics`` on an ephemeral loopback port and return the port."""
    # Nursery.start passes no keyword arguments, so bind them with partial.
    serve = functools.partial(serve_metrics, registry, port=0, host="127.0.0.1", **options)
    return await nursery.start(serve)


async def exchange(port: int, request: bytes, *, half_close: bool = False) -> bytes:
    """Send ``request`` to the server and return everything it sends until its EOF.

    With ``half_close`` the client shuts down its sending side after the request.
    """
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        if half_close:
            await stream.send_eof()
        response = bytearray()
        while data := await stream.receive_some():
            response += data
    return bytes(response)


def split_response(response: bytes) -> tuple[str, dict[str, str], bytes]:
    """Return the status line, the headers with lower-case names, and the body."""
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("ascii").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status_line, headers, body


# RunMetrics


def test_run_metrics_outcome_counters() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)

    for result in (
        make_result(),
        make_result(),
        make_result(findings=frozenset({results.LOST, results.HANG})),
        make_result(target="inotifywait", findings=frozenset({results.DUPLICATE})),
    ):
        metrics.cycle_started(result.target)
        metrics.cycle_finished(result)

    assert sample(registry, "stressor_cycles_total", target="tail", outcome="ok") == 2
    assert sample(registry, "stressor_cycles_total", target="tail", outcome="hang") == 1
    assert sample(registry, "stressor_cycles_total", target="tail", outcome="lost") == 0
    assert sample(registry, "stressor_cycles_total", target="inotifywait", outcome="duplicate") == 1
    assert sample(registry, "stressor_cycles_total", target="inotifywait", outcome="ok") == 0


def test_run_metrics_outcomes_precreated_at_zero() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)

    metrics.cycle_started("tail")

    for outcome in results.OUTCOMES:
        assert sample(registry, "stressor_cycles_total", target="tail", outcome=outcome) == 0
    assert sample(registry, "stressor_lines_lost_total", target="tail") == 0
    assert sample(registry, "stressor_hangs_total", target="tail", fault="none") == 0
    assert sample(registry, "stressor_delivery_latency_seconds_count", target="tail") == 0


def test_run_metrics_line_counters() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)

    metrics.cycle_started("tail")
    metrics.cycle_finished(make_result(lines_written=10, lines_read=8, lines_lost=2))
    metrics.cycle_started("tail")
    metrics.cycle_finished(
        make_result(lines_written=5, lines_read=7, lines_lost=0, lines_duplicated=2)
    )

    assert sample(registry, "stressor_lines_written_total", target="tail") == 15
    assert sample(registry, "stressor_lines_read_total", target="tail") == 15
    assert sample(registry, "stressor_lines_lost_total", target="tail") == 2
    assert sample(registry, "stressor_lines_duplicated_total", target="tail") == 2


def test_run_metrics_negative_count_rejected() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)
    metrics.cycle_started("tail")

    with pytest.raises(ValueError, match="lines_lost -1"):
        metrics.cycle_finished(make_result(lines_lost=-1))

    assert sample(registry, "stressor_cycles_total", target="tail", outcome="ok") == 0
    assert sample(registry, "stressor_active_cycles", target="tail") == 1


def test_run_metrics_fault_counters() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)

    metrics.cycle_started("tail")
    metrics.cycle_finished(
        make_result(
            faults=(LATE_WRITE, TRUNCATE),
            fault_kinds=("late-write", "truncate"),
            window_hit=True,
            findings=frozenset({results.HANG}),
            exit_latency=None,
        )
    )
    metrics.cycle_started("tail")
    metrics.cycle_finished(make_result(faults=(LATE_WRITE,), fault_kinds=("late-write",)))

    assert sample(registry, "stressor_faults_injected_total", target="tail", fault=LATE_WRITE) == 2
    assert sample(registry, "stressor_faults_injected_total", target="tail", fault=TRUNCATE) == 1
    assert sample(registry, "stressor_window_hits_total", target="tail", fault=LATE_WRITE) == 1
    assert sample(registry, "stressor_window_hits_total", target="tail", fault=TRUNCATE) == 1
    assert sample(registry, "stressor_hangs_total", target="tail", fault=LATE_WRITE) == 1
    assert sample(registry, "stressor_hangs_total", target="tail", fault=TRUNCATE) == 1
    assert sample(registry, "stressor_hangs_total", target="tail", fault="none") == 0


def test_run_metrics_hang_without_fault_none() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)

    metrics.cycle_started("tail")
    metrics.cycle_finished(make_result(findings=frozenset({results.HANG}), exit_latency=None))

    assert sample(registry, "stressor_hangs_total", target="tail", fault="none") == 1
    assert sample(registry, "stressor_faults_injected_total", target="tail", fault="none") is None
    assert sample(registry, "stressor_window_hits_total", target="tail", fault="none") is None


def test_run_metrics_fault_series_precreated() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)

    metrics.cycle_started("tail")
    metrics.cycle_finished(make_result(faults=(LATE_WRITE,), fault_kinds=("late-write",)))

    assert sample(registry, "stressor_hangs_total", target="tail", fault=LATE_WRITE) == 0
    assert sample(registry, "stressor_window_hits_total", target="tail", fault=LATE_WRITE) == 0


def test_run_metrics_latency_histograms() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)

    metrics.cycle_started("tail")
    metrics.cycle_finished(
        make_result(delivery_latencies=(0.00003, 0.0004, 0.3), exit_latency=0.05)
    )
    metrics.cycle_started("tail")
    metrics.cycle_finished(make_result(delivery_latencies=(20.0,), exit_latency=None))

    delivery_latency = "stressor_delivery_latency_seconds"
    assert sample(registry, f"{delivery_latency}_count", target="tail") == 4
    assert sample(registry, f"{delivery_latency}_sum", target="tail") == pytest.approx(20.30043)
    assert sample(registry, f"{delivery_latency}_bucket", target="tail", le="1e-05") == 0
    assert sample(registry, f"{delivery_latency}_bucket", target="tail", le="5e-05") == 1
    assert sample(registry, f"{delivery_latency}_bucket", target="tail", le="0.0005") == 2
    assert sample(registry, f"{delivery_latency}_bucket", target="tail", le="0.5") == 3
    assert sample(registry, f"{delivery_latency}_bucket", target="tail", le="10.0") == 3
    assert sample(registry, f"{delivery_latency}_bucket", target="tail", le="+Inf") == 4
    exit_latency = "stressor_exit_latency_seconds"
    assert sample(registry, f"{exit_latency}_count", target="tail") == 1
    assert sample(registry, f"{exit_latency}_sum", target="tail") == pytest.approx(0.05)
    assert sample(registry, f"{exit_latency}_bucket", target="tail", le="0.02") == 0
    assert sample(registry, f"{exit_latency}_bucket", target="tail", le="0.05") == 1


def test_run_metrics_active_gauge() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)

    metrics.cycle_started("tail")
    metrics.cycle_started("tail")
    metrics.cycle_started("inotifywait")
    assert sample(registry, "stressor_active_cycles", target="tail") == 2
    assert sample(registry, "stressor_active_cycles", target="inotifywait") == 1

    metrics.cycle_finished(make_result())
    assert sample(registry, "stressor_active_cycles", target="tail") == 1

    metrics.cycle_abandoned("tail")
    assert sample(registry, "stressor_active_cycles", target="tail") == 0
    assert sample(registry, "stressor_active_cycles", target="inotifywait") == 1


def test_run_metrics_shared_registry_rejected() -> None:
    registry = CollectorRegistry()
    RunMetrics(registry)

    with pytest.raises(ValueError):
        RunMetrics(registry)


def test_run_metrics_global_registry_untouched() -> None:
    RunMetrics(CollectorRegistry())

    assert prometheus_client.REGISTRY.get_sample_value("stressor_active_cycles") is None


# serve_metrics


async def test_serve_metrics_get_metrics() -> None:
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)
    metrics.cycle_started("tail")
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            response = await exchange(port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            nursery.cancel_scope.cancel()

    status_line, headers, body = split_response(response)
    assert status_line == "HTTP/1.1 200 OK"
    assert headers["content-type"] == prometheus_client.CONTENT_TYPE_LATEST
    assert headers["connection"] == "close"
    assert headers["content-length"] == str(len(body))
    assert b'stressor_active_cycles{target="tail"} 1.0\n' in body


async def test_serve_metrics_head_no_body() -> None:
    registry = CollectorRegistry()
    RunMetrics(registry).cycle_started("tail")
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            response = await exchange(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
            nursery.cancel_scope.cancel()

    status_line, headers, body = split_response(response)
    assert status_line == "HTTP/1.1 200 OK"
    assert int(headers["content-length"]) > 0
    assert body == b""


async def test_serve_metrics_root_points_to_metrics() -> None:
    registry = CollectorRegistry()
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            response = await exchange(port, b"GET / HTTP/1.0\r\n\r\n")
            nursery.cancel_scope.cancel()

    status_line, headers, body = split_response(response)
    assert status_line == "HTTP/1.1 200 OK"
    assert headers["content-type"].startswith("text/plain")
    assert b"/metrics" in body


async def test_serve_metrics_query_and_bare_lf() -> None:
    registry = CollectorRegistry()
    RunMetrics(registry)
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            response = await exchange(port, b"GET /metrics?x=1 HTTP/1.1\n\n")
            nursery.cancel_scope.cancel()

    status_line, _, body = split_response(response)
    assert status_line == "HTTP/1.1 200 OK"
    assert b"# TYPE stressor_cycles_total counter" in body


async def test_serve_metrics_unknown_path_404() -> None:
    registry = CollectorRegistry()
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            response = await exchange(port, b"GET /favicon.ico HTTP/1.1\r\n\r\n")
            nursery.cancel_scope.cancel()

    status_line, headers, _ = split_response(response)
    assert status_line == "HTTP/1.1 404 Not Found"
    assert headers["connection"] == "close"


async def test_serve_metrics_post_405() -> None:
    registry = CollectorRegistry()
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            request = b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
            response = await exchange(port, request)
            nursery.cancel_scope.cancel()

    status_line, headers, _ = split_response(response)
    assert status_line == "HTTP/1.1 405 Method Not Allowed"
    assert headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "request_line",
    [
        b"garbage",
        b"GET /metrics",
        b"GET  /metrics HTTP/1.1",
        b"GET metrics HTTP/1.1",
        b"GET /metrics HTTP/one",
        b"G(T /metrics HTTP/1.1",
        b"GET /m\xe9trics HTTP/1.1",
        b"",
    ],
)
async def test_serve_metrics_bad_request_line_400(request_line: bytes) -> None:
    registry = CollectorRegistry()
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            response = await exchange(port, request_line + b"\r\n\r\n")
            nursery.cancel_scope.cancel()

    status_line, _, _ = split_response(response)
    assert status_line == "HTTP/1.1 400 Bad Request"


async def test_serve_metrics_http2_505() -> None:
    registry = CollectorRegistry()
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            response = await exchange(port, b"GET /metrics HTTP/2.0\r\n\r\n")
            nursery.cancel_scope.cancel()

    status_line, _, _ = split_response(response)
    assert status_line == "HTTP/1.1 505 HTTP Version Not Supported"


async def test_serve_metrics_oversized_head_431() -> None:
    registry = CollectorRegistry()
    padding = b"X-Padding: " + b"a" * MAX_REQUEST_HEAD + b"\r\n"
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            response = await exchange(port, b"GET /metrics HTTP/1.1\r\n" + padding + b"\r\n")
            nursery.cancel_scope.cancel()

    status_line, _, _ = split_response(response)
    assert status_line == "HTTP/1.1 431 Request Header Fields Too Large"


async def test_serve_metrics_truncated_head_400() -> None:
    registry = CollectorRegistry()
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            response = await exchange(port, b"GET /met", half_close=True)
            nursery.cancel_scope.cancel()

    status_line, _, _ = split_response(response)
    assert status_line == "HTTP/1.1 400 Bad Request"


async def test_serve_metrics_silent_client_closed() -> None:
    registry = CollectorRegistry()
    timeout = 0.2
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry, request_timeout=timeout)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                started = trio.current_time()
                data = await stream.receive_some()
                elapsed = trio.current_time() - started
            nursery.cancel_scope.cancel()

    assert data == b""
    assert elapsed >= timeout * 0.9


async def test_serve_metrics_partial_head_closed() -> None:
    registry = CollectorRegistry()
    timeout = 0.2
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry, request_timeout=timeout)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: local")
                data = await stream.receive_some()
            nursery.cancel_scope.cancel()

    assert data == b""


async def test_serve_metrics_client_eof_no_response() -> None:
    registry = CollectorRegistry()
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            response = await exchange(port, b"", half_close=True)
            # The server is still serving after a client that sent nothing.
            second = await exchange(port, b"GET / HTTP/1.1\r\n\r\n")
            nursery.cancel_scope.cancel()

    assert response == b""
    assert second.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_serve_metrics_reset_client_logged(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    caplog.set_level(logging.DEBUG, logger="stressor.exporter")
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            client_port = stream.socket.getsockname()[1]
            await stream.send_all(b"GET /metrics HTTP/1.1\r\n")
            # Give the server time to accept and read the peer address before the
            # reset below arrives.
            await trio.sleep(0.1)
            # A zero linger time makes close send a TCP reset in place of a FIN.
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await trio.aclose_forcefully(stream)
            while not any("failed" in record.getMessage() for record in caplog.records):
                await trio.sleep(0.01)
            response = await exchange(port, b"GET / HTTP/1.1\r\n\r\n")
            nursery.cancel_scope.cancel()

    failures = [record for record in caplog.records if "failed" in record.getMessage()]
    assert failures[0].levelno == logging.DEBUG
    assert f"127.0.0.1:{client_port}" in failures[0].getMessage()
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_serve_metrics_port_in_use_oserror() -> None:
    registry = CollectorRegistry()
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            serve_again = functools.partial(serve_metrics, registry, port=port)
            with pytest.raises(OSError) as raised:
                await nursery.start(serve_again)
            nursery.cancel_scope.cancel()

    assert "in use" in str(raised.value)


async def test_serve_metrics_started_port_listening() -> None:
    registry = CollectorRegistry()
    with trio.fail_after(TEST_LIMIT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, registry)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.aclose()
            nursery.cancel_scope.cancel()

    assert 0 < port < 65536
