"""Tests that the JSON report and the Prometheus metrics of one run agree."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from stressor import __version__
from stressor.engine import run_stress
from stressor.exporter import serve_metrics
from stressor.metrics import LATENCY_BUCKETS, RunMetrics
from stressor.record import RunRecord
from stressor.reports import report_run, write_report
from stressor.results import HANG, OUTCOMES
from stressor.scenario import Scenario

TARGETS = ("reference", "polling", "docker-1.12.1", "docker-1.13.0")

# Upper bound of the run and of each scrape, in seconds.
RUN_LIMIT = 20.0
SCRAPE_LIMIT = 10.0

Sample = tuple[str, frozenset[tuple[str, str]]]


class Run:
    """One finished run: its record, metrics registry and report."""

    def __init__(self, record: RunRecord, registry: CollectorRegistry, report: dict) -> None:
        self.record = record
        self.registry = registry
        self.report = report

    def target(self, name: str) -> dict:
        return self.report["targets"][name]

    def value(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        assert value is not None, f"no sample {name}{labels}"
        return value

    def total(self, name: str, **labels: str) -> float:
        """Sum every sample called ``name`` whose labels include ``labels``."""
        return sum(
            sample.value
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )


def build(record: RunRecord) -> dict:
    """Return the report of ``record`` the way ``stressor run`` builds it."""
    return report_run(record, version=__version__, scenario_path=None).document


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Run every built-in target for a few cycles with metrics, once per module."""
    tempdir = tmp_path_factory.mktemp("tmp")
    scenario = Scenario(
        targets=TARGETS,
        cycles=6,
        duration=None,
        concurrency=12,
        seed=3,
        deadline=0.3,
        max_wait=0.6,
        metrics_port=0,
    )
    registry = CollectorRegistry()
    record = RunRecord(scenario)

    async def main() -> None:
        with trio.fail_after(RUN_LIMIT):
            await run_stress(scenario, record, [RunMetrics(registry)])

    saved = tempfile.tempdir
    tempfile.tempdir = str(tempdir)
    try:
        trio.run(main)
    finally:
        tempfile.tempdir = saved
    return Run(record, registry, build(record))


# --- the run itself -----------------------------------------------------------------


def test_run_passes(finished_run: Run) -> None:
    assert finished_run.report["passed"] is True


def test_run_docker_1121_hangs(finished_run: Run) -> None:
    assert finished_run.target("docker-1.12.1")["findings"][HANG] > 0


def test_report_round_trips_json(finished_run: Run, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_report(str(path), finished_run.report)
    assert json.loads(path.read_text()) == finished_run.report


# --- report and registry agree ------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("outcome", OUTCOMES)
def test_cycles_by_outcome(finished_run: Run, target: str, outcome: str) -> None:
    metric = finished_run.value("stressor_cycles_total", target=target, outcome=outcome)
    assert metric == finished_run.target(target)["outcomes"][outcome]


@pytest.mark.parametrize("target", TARGETS)
def test_cycles_total(finished_run: Run, target: str) -> None:
    metric = finished_run.total("stressor_cycles_total", target=target)
    assert metric == finished_run.target(target)["cycles"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind", ["written", "read", "lost", "duplicated"])
def test_lines(finished_run: Run, target: str, kind: str) -> None:
    metric = finished_run.value(f"stressor_lines_{kind}_total", target=target)
    assert metric == finished_run.target(target)["lines"][kind]


@pytest.mark.parametrize("target", TARGETS)
def test_window_hits(finished_run: Run, target: str) -> None:
    metric = finished_run.total("stressor_window_hits_total", target=target)
    assert metric == finished_run.target(target)["window_hits"]


@pytest.mark.parametrize("target", TARGETS)
def test_hangs(finished_run: Run, target: str) -> None:
    metric = finished_run.total("stressor_hangs_total", target=target)
    assert metric == finished_run.target(target)["findings"][HANG]


@pytest.mark.parametrize("target", TARGETS)
def test_hang_reproductions(finished_run: Run, target: str) -> None:
    report = finished_run.target(target)
    assert len(report["hangs"]) == report["findings"][HANG]


@pytest.mark.parametrize("target", TARGETS)
def test_exit_latency_count(finished_run: Run, target: str) -> None:
    report = finished_run.target(target)
    finished = report["cycles"] - report["findings"][HANG] - report["findings"]["crash"]
    metric = finished_run.value("stressor_exit_latency_seconds_count", target=target)
    assert metric == finished


@pytest.mark.parametrize("target", TARGETS)
def test_exit_latency_count_matches_results(finished_run: Run, target: str) -> None:
    results = [result for result in finished_run.record.results if result.target == target]
    returned = sum(1 for result in results if result.exit_latency is not None)
    metric = finished_run.value("stressor_exit_latency_seconds_count", target=target)
    assert metric == returned


@pytest.mark.parametrize("target", TARGETS)
def test_exit_latency_max_bucket(finished_run: Run, target: str) -> None:
    report = finished_run.target(target)
    highest = report["exit_latency_seconds"]["max"]
    below = finished_run.value(
        "stressor_exit_latency_seconds_bucket", target=target, le=_bucket_at_or_above(highest)
    )
    assert below == finished_run.value("stressor_exit_latency_seconds_count", target=target)


@pytest.mark.parametrize("target", TARGETS)
def test_delivery_latency_count(finished_run: Run, target: str) -> None:
    results = [result for result in finished_run.record.results if result.target == target]
    delivered = sum(len(result.delivery_latencies) for result in results)
    metric = finished_run.value("stressor_delivery_latency_seconds_count", target=target)
    assert metric == delivered


@pytest.mark.parametrize("target", TARGETS)
def test_faults_injected(finished_run: Run, target: str) -> None:
    results = [result for result in finished_run.record.results if result.target == target]
    injected = sum(len(result.faults) for result in results)
    assert finished_run.total("stressor_faults_injected_total", target=target) == injected


@pytest.mark.parametrize("target", TARGETS)
def test_no_active_cycles_after_run(finished_run: Run, target: str) -> None:
    assert finished_run.value("stressor_active_cycles", target=target) == 0


def _bucket_at_or_above(value: float | None) -> str:
    """Return the ``le`` label of the smallest latency bucket that contains ``value``."""
    for bound in LATENCY_BUCKETS:
        if value is not None and value <= bound:
            return str(float(bound))
    return "+Inf"


# --- over HTTP ----------------------------------------------------------------------


async def scrape(port: int) -> tuple[bytes, bytes]:
    """Send ``GET /metrics`` to 127.0.0.1:``port`` and return the response head and body."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = bytearray()
        while data := await stream.receive_some():
            response += data
    head, _, body = bytes(response).partition(b"\r\n\r\n")
    return head, body


def samples_of_registry(registry: CollectorRegistry) -> dict[Sample, float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def samples_of_text(text: str) -> dict[Sample, float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
async def scraped(finished_run: Run) -> tuple[bytes, bytes]:
    """Serve the run's registry on an ephemeral loopback port and scrape it once."""
    with trio.fail_after(SCRAPE_LIMIT):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(serve_metrics, finished_run.registry, port=0)
            port = await nursery.start(serve)
            response = await scrape(port)
            nursery.cancel_scope.cancel()
    return response


async def test_scrape_status_ok(scraped: tuple[bytes, bytes]) -> None:
    head, _ = scraped
    assert head.startswith(b"HTTP/1.1 200 ")


async def test_scrape_matches_registry_series(
    finished_run: Run, scraped: tuple[bytes, bytes]
) -> None:
    _, body = scraped
    scraped_samples = samples_of_text(body.decode())
    assert set(scraped_samples) == set(samples_of_registry(finished_run.registry))


async def test_scrape_matches_registry_values(
    finished_run: Run, scraped: tuple[bytes, bytes]
) -> None:
    _, body = scraped
    assert samples_of_text(body.decode()) == samples_of_registry(finished_run.registry)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("outcome", OUTCOMES)
async def test_scrape_cycles_match_report(
    finished_run: Run, scraped: tuple[bytes, bytes], target: str, outcome: str
) -> None:
    _, body = scraped
    key = ("stressor_cycles_total", frozenset({("target", target), ("outcome", outcome)}))
    assert samples_of_text(body.decode())[key] == finished_run.target(target)["outcomes"][outcome]
