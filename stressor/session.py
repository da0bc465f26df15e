"""A run as a process: metrics endpoint, signals, progress and the engine, in one nursery."""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import prometheus_client
import trio
from prometheus_client import CollectorRegistry

from stressor import __version__
from stressor.engine import RunObserver, run_stress
from stressor.exporter import serve_metrics
from stressor.findings import FindingsDirectory
from stressor.logs import RepeatFilter
from stressor.metrics import RunMetrics, ServiceMetrics
from stressor.progress import Progress
from stressor.record import RunRecord
from stressor.scenario import ConfigError, Scenario
from stressor.service import ServiceState

log = logging.getLogger(__name__)

# How often a long run summarises repeated log lines and rewrites the textfile.
SUMMARY_INTERVAL = 30.0


@dataclasses.dataclass(frozen=True)
class SessionOptions:
    """Settings for serving and reporting the run while it goes on.

    Attributes:
        metrics_host: address of the metrics endpoint; 127.0.0.1 unless a container
            needs another.
        progress: print live progress on standard error.
        findings_dir: directory for one JSON file per finding, or None.
        max_findings: the maximum number of finding files kept in ``findings_dir``.
        scenario_path: the scenario file, for the replay commands.
        textfile: path for node_exporter's textfile collector, or None.
        keep_results: keep every cycle's result in memory (off for a soak).
    """

    metrics_host: str = "127.0.0.1"
    progress: bool = True
    findings_dir: str | None = None
    max_findings: int = 1000
    scenario_path: str | None = None
    textfile: str | None = None
    keep_results: bool = True


@dataclasses.dataclass
class Session:
    """The outcome of a finished session, for the command line."""

    record: RunRecord
    registry: CollectorRegistry
    state: ServiceState
    signal_number: int | None = None


async def _stop_on_signal(scope: trio.CancelScope, session: Session) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for number in signals:
            log.warning("received %s: stopping the run", signal.Signals(number).name)
            session.signal_number = number
            scope.cancel()


async def _summarise_periodically(
    repeat_filter: RepeatFilter | None, textfile: str | None, registry: CollectorRegistry
) -> None:
    while True:
        await trio.sleep(SUMMARY_INTERVAL)
        if repeat_filter is not None:
            repeat_filter.flush(logging.getLogger("stressor.engine"))
        if textfile:
            write_textfile(textfile, registry)


def write_textfile(path: str, registry: CollectorRegistry) -> None:
    """Write the registry for node_exporter's textfile collector; log a failure."""
    try:
        prometheus_client.write_to_textfile(path, registry)
    except OSError as error:
        log.error("writing metrics textfile %s failed: %s", path, error)


def _bind_error(host: str, port: int, error: OSError) -> ConfigError:
    reason = error.strerror or str(error)
    return ConfigError(
        "--metrics-host/--metrics-port",
        f"{host}:{port}",
        f"cannot listen there ({reason}); choose another address or port, or port 0",
    )


async def run_session(
    scenario: Scenario, options: SessionOptions, repeat_filter: RepeatFilter | None = None
) -> Session:
    """Serve metrics, watch signals and run the stress until it ends or a signal stops it.

    Raises:
        ConfigError: the metrics port cannot be bound.
    """
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)
    service_metrics = ServiceMetrics(registry, version=__version__)
    state = ServiceState(scenario, service_metrics)
    record = RunRecord(scenario, keep_results=options.keep_results)
    session = Session(record, registry, state)
    observers: list[RunObserver] = [metrics, state]
    progress = Progress.for_scenario(scenario)
    if options.progress:
        observers.append(progress)
    if options.findings_dir:
        observers.append(
            FindingsDirectory(
                options.findings_dir,
                scenario,
                keep=options.max_findings,
                scenario_path=options.scenario_path,
            )
        )

    run_scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, run_scope, session)
        nursery.start_soon(state.watch_loop)
        if scenario.metrics_port:
            serve = functools.partial(
                serve_metrics,
                registry,
                port=scenario.metrics_port,
                host=options.metrics_host,
                health=state,
            )
            try:
                await nursery.start(serve)
            except OSError as error:
                nursery.cancel_scope.cancel()
                raise _bind_error(options.metrics_host, scenario.metrics_port, error) from None
        if options.progress:
            nursery.start_soon(progress.run)
        nursery.start_soon(_summarise_periodically, repeat_filter, options.textfile, registry)
        with run_scope:
            await run_stress(scenario, record, observers, scenario_path=options.scenario_path)
        record.interrupted = session.signal_number is not None
        nursery.cancel_scope.cancel()

    if repeat_filter is not None:
        repeat_filter.flush(logging.getLogger("stressor.engine"))
    if options.textfile:
        write_textfile(options.textfile, registry)
    return session


def run_session_sync(
    scenario: Scenario, options: SessionOptions, repeat_filter: RepeatFilter | None = None
) -> Session:
    """Run ``run_session`` in trio, unwrapping a configuration error from its exception group.

    A group of nothing but ``OSError`` (such as a ``$TMPDIR`` where the run's
    directory cannot be created) is unwrapped too, so the command line reports it
    in one line.
    """
    try:
        return trio.run(run_session, scenario, options, repeat_filter)
    except BaseExceptionGroup as group:
        os_errors, others = group.split(OSError)
        chosen: BaseExceptionGroup[BaseException] | None = group.subgroup(ConfigError)
        if chosen is None and others is None:
            chosen = os_errors
        if chosen is None:
            raise
        error: BaseException = chosen.exceptions[0]
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from None


T = TypeVar("T")


def run_until_signal(
    function: Callable[..., Awaitable[T]], *args: object
) -> tuple[T | None, int | None]:
    """Run ``function(*args)`` in trio until it returns or SIGINT or SIGTERM arrives.

    Returns its value and None, or None and the signal's number when a signal
    cancelled it; its cleanup (temporary directories, followers) runs either way.
    """

    async def main() -> tuple[T | None, int | None]:
        value: T | None = None
        received: int | None = None
        # The receiver outlives the nursery: a function that returns without a
        # checkpoint ends the nursery before the watching task first runs.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    nonlocal received
                    async for number in signals:
                        log.warning("received %s: stopping", signal.Signals(number).name)
                        received = number
                        nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                value = await function(*args)
                nursery.cancel_scope.cancel()
        return value, received

    return trio.run(main)
