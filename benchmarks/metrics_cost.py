"""Measure what the Prometheus metrics cost: scrape time, and cycles per second on against off.

The cycles run in-process through the engine, the way ``stressor run`` runs them.
"Off" runs the cycles with no observer at all. "On" adds the run's metrics and
service state as observers, serves them on 127.0.0.1 and scrapes ``/metrics``
every ``--interval`` seconds while the cycles run, as Prometheus would. The scrape
time is the wall time of one HTTP request from connect to the last byte.

Usage: .venv/bin/python benchmarks/metrics_cost.py [--cycles N] [--repeat R]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Sequence

import trio
from bench_support import Spread, describe_machine, format_spread
from prometheus_client import CollectorRegistry

from stressor import __version__
from stressor.engine import run_stress
from stressor.exporter import serve_metrics
from stressor.metrics import RunMetrics, ServiceMetrics
from stressor.record import RunRecord
from stressor.scenario import Scenario
from stressor.service import ServiceState


def _scenario(cycles: int, seed: int) -> Scenario:
    return Scenario(
        targets=("reference",),
        cycles=cycles,
        duration=None,
        concurrency=16,
        seed=seed,
        max_gap=0.0,
        settle=0.0,
        metrics_port=0,
    )


async def _scrape(port: int) -> tuple[float, int]:
    """Fetch /metrics once; return the seconds it took and the body size in bytes."""
    started = time.perf_counter()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = bytearray()
        while chunk := await stream.receive_some(65536):
            received += chunk
    return time.perf_counter() - started, len(received)


async def run_off(cycles: int, seed: int) -> float:
    """Run the cycles with no observer; return cycles per second."""
    scenario = _scenario(cycles, seed)
    record = RunRecord(scenario)
    started = time.perf_counter()
    await run_stress(scenario, record)
    return cycles / (time.perf_counter() - started)


async def run_on(cycles: int, seed: int, interval: float) -> tuple[float, list[float], int]:
    """Run the cycles with metrics served and scraped; return rate, scrape times, body size."""
    scenario = _scenario(cycles, seed)
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)
    state = ServiceState(scenario, ServiceMetrics(registry, version=__version__))
    record = RunRecord(scenario)
    scrapes: list[float] = []
    size = 0
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(serve_metrics, registry, port=0))

        async def scraper() -> None:
            nonlocal size
            while True:
                await trio.sleep(interval)
                seconds, size = await _scrape(port)
                scrapes.append(seconds)

        nursery.start_soon(scraper)
        started = time.perf_counter()
        await run_stress(scenario, record, [metrics, state])
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    return cycles / elapsed, scrapes, size


async def measure(cycles: int, repeat: int, interval: float) -> list[str]:
    """Alternate off and on runs; return Markdown lines with the figures."""
    off_rates: list[float] = []
    on_rates: list[float] = []
    scrapes: list[float] = []
    size = 0
    for attempt in range(repeat):
        off_rates.append(await run_off(cycles, attempt))
        rate, times, size = await run_on(cycles, attempt, interval)
        on_rates.append(rate)
        scrapes += times
    ratios = [on / off for on, off in zip(on_rates, off_rates, strict=True)]
    scrape_ms = Spread.of([seconds * 1000 for seconds in scrapes]) if scrapes else None
    rows = [
        "| case | cycles/s median | min | max |",
        "| --- | ---: | ---: | ---: |",
        "| metrics off | {} | {} | {} |".format(*format_spread(Spread.of(off_rates), 0)),
        "| metrics on, scraped every {:g} s | {} | {} | {} |".format(
            interval, *format_spread(Spread.of(on_rates), 0)
        ),
        "",
        f"Ratio on/off, paired per repeat: median {statistics.median(ratios):.2f}"
        f" (min {min(ratios):.2f}, max {max(ratios):.2f}).",
    ]
    if scrape_ms is not None:
        rows.append(
            f"Scrape time of /metrics while cycles ran: median {scrape_ms.median:.2f} ms,"
            f" min {scrape_ms.low:.2f} ms, max {scrape_ms.high:.2f} ms over {len(scrapes)}"
            f" scrapes; body {size} bytes."
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print the machine and the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=3000, help="cycles per run")
    parser.add_argument("--repeat", type=int, default=5, help="off/on pairs")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between scrapes")
    args = parser.parse_args(argv)
    for option, value in (("--cycles", args.cycles), ("--repeat", args.repeat)):
        if value < 1:
            parser.error(f"{option}: invalid value {value}: must be 1 or more")
    if not args.interval > 0:
        parser.error(f"--interval: invalid value {args.interval}: must be more than 0")
    print("\n".join(describe_machine()))
    print(
        f"- command: .venv/bin/python benchmarks/metrics_cost.py --cycles {args.cycles}"
        f" --repeat {args.repeat} --interval {args.interval:g}\n"
    )
    print("\n".join(trio.run(measure, args.cycles, args.repeat, args.interval)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
