"""Tests of the engine: replayable schedules, cancellation, concurrency and bounded runs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import trio

from stressor.engine import run_stress
from stressor.hooks import HookPoint
from stressor.record import RunRecord
from stressor.results import CycleResult
from stressor.scenario import ConfigError, Scenario

# Upper bound of a short run, in seconds: far above the second or so it takes.
RUN_LIMIT = 20.0


class RecordingObserver:
    """Record every cycle start, end and abandonment, and the maximum of cycles active at once."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[CycleResult] = []
        self.abandoned: list[str] = []
        self.active = 0
        self.max_active = 0

    def cycle_started(self, target: str) -> None:
        self.started.append(target)
        self.active += 1
        self.max_active = max(self.max_active, self.active)

    def cycle_finished(self, result: CycleResult) -> None:
        self.finished.append(result)
        self.active -= 1

    def cycle_abandoned(self, target: str) -> None:
        self.abandoned.append(target)
        self.active -= 1


class TempDirLister:
    """List a directory into ``seen`` each time a cycle starts."""

    def __init__(self, directory: Path, seen: list[str]) -> None:
        self.directory = directory
        self.seen = seen

    def cycle_started(self, target: str) -> None:
        self.seen.extend(sorted(os.listdir(self.directory)))

    def cycle_finished(self, result: CycleResult) -> None:
        pass

    def cycle_abandoned(self, target: str) -> None:
        pass


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``tempfile`` create its directories in a fresh directory of the test."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def scenario(**changes: object) -> Scenario:
    """Return a short reference-only scenario without a metrics port, changed by ``changes``."""
    fields: dict[str, object] = {
        "targets": ("reference",),
        "cycles": 6,
        "duration": None,
        "concurrency": 4,
        "seed": 7,
        "deadline": 0.3,
        "max_wait": 0.6,
        "metrics_port": 0,
    }
    fields.update(changes)
    return Scenario(**fields)  # type: ignore[arg-type]


async def run(chosen: Scenario, *observers: object) -> RunRecord:
    """Run ``chosen`` to its end within ``RUN_LIMIT`` seconds and return its record."""
    record = RunRecord(chosen)
    with trio.fail_after(RUN_LIMIT):
        await run_stress(chosen, record, list(observers))  # type: ignore[arg-type]
    return record


def fault_labels(record: RunRecord) -> list[tuple[str, int, tuple[str, ...]]]:
    ordered = sorted(record.results, key=lambda result: (result.target, result.cycle))
    return [(result.target, result.cycle, result.faults) for result in ordered]


# --- replayable schedules -----------------------------------------------------------


async def test_run_stress_same_seed_same_faults(private_tmp: Path) -> None:
    chosen = scenario(targets=("reference", "polling"), fault_probability=0.5)
    first = await run(chosen)
    second = await run(chosen)
    assert fault_labels(first) == fault_labels(second)


async def test_run_stress_other_seed_other_faults(private_tmp: Path) -> None:
    first = await run(scenario(seed=7, fault_probability=0.5))
    second = await run(scenario(seed=8, fault_probability=0.5))
    assert fault_labels(first) != fault_labels(second)


async def test_run_stress_faults_use_chosen_points(private_tmp: Path) -> None:
    record = await run(scenario(points=(HookPoint.AFTER_REMOVE,)))
    labels = {fault for result in record.results for fault in result.faults}
    assert labels == {"late-write@after-remove"}


async def test_run_stress_no_faults_at_probability_0(private_tmp: Path) -> None:
    record = await run(scenario(fault_probability=0.0))
    assert all(result.faults == () for result in record.results)


async def test_run_stress_runs_every_cycle(private_tmp: Path) -> None:
    record = await run(scenario(targets=("reference", "polling"), cycles=5))
    assert sorted((result.target, result.cycle) for result in record.results) == sorted(
        (target, cycle) for target in ("reference", "polling") for cycle in range(5)
    )


async def test_run_stress_results_carry_run_seed(private_tmp: Path) -> None:
    record = await run(scenario(seed=12345))
    assert {result.seed for result in record.results} == {12345}


async def test_run_stress_reference_passes(private_tmp: Path) -> None:
    record = await run(scenario())
    assert [result.outcome for result in record.results] == ["ok"] * 6


async def test_run_stress_docker_1121_hangs(private_tmp: Path) -> None:
    record = await run(scenario(targets=("docker-1.12.1",), points=(HookPoint.BEFORE_REMOVE,)))
    assert [result.outcome for result in record.results] == ["hang"] * 6


# --- observers ----------------------------------------------------------------------


async def test_run_stress_observer_sees_every_result(private_tmp: Path) -> None:
    observer = RecordingObserver()
    record = await run(scenario(), observer)
    assert observer.finished == record.results


async def test_run_stress_observer_starts_match_ends(private_tmp: Path) -> None:
    observer = RecordingObserver()
    await run(scenario(), observer)
    assert len(observer.started) == len(observer.finished)


async def test_run_stress_nothing_abandoned_at_end(private_tmp: Path) -> None:
    observer = RecordingObserver()
    await run(scenario(), observer)
    assert observer.abandoned == []


async def test_run_stress_sets_finished_at(private_tmp: Path) -> None:
    record = await run(scenario())
    assert record.finished_at is not None
    assert record.started_at <= record.finished_at


# --- concurrency --------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 3, 8])
async def test_run_stress_concurrency_not_exceeded(private_tmp: Path, concurrency: int) -> None:
    observer = RecordingObserver()
    await run(scenario(targets=("reference", "polling"), concurrency=concurrency), observer)
    assert observer.max_active <= concurrency


@pytest.mark.parametrize("concurrency", [1, 3, 8])
async def test_run_stress_concurrency_reached(private_tmp: Path, concurrency: int) -> None:
    observer = RecordingObserver()
    await run(scenario(targets=("reference", "polling"), concurrency=concurrency), observer)
    assert observer.max_active == concurrency


async def test_run_stress_inotify_limit_raises(private_tmp: Path) -> None:
    chosen = scenario(concurrency=4096)
    with pytest.raises(ConfigError) as caught:
        await run(chosen)
    assert caught.value.option == "--concurrency"


# --- bounded by duration ------------------------------------------------------------


async def test_run_stress_duration_ends(private_tmp: Path) -> None:
    started = trio.current_time()
    await run(scenario(cycles=None, duration=0.5))
    assert trio.current_time() - started < 0.5 + 0.6 + 2.0


async def test_run_stress_duration_runs_cycles(private_tmp: Path) -> None:
    record = await run(scenario(cycles=None, duration=0.5))
    assert len(record.results) > 0


# --- cancellation -------------------------------------------------------------------


@pytest.fixture
async def cancelled_run(private_tmp: Path) -> tuple[RunRecord, RecordingObserver, list[str]]:
    """Cancel a long run after 0.5 s and return its record, observer and listed temp dirs."""
    chosen = scenario(targets=("reference", "docker-1.12.1"), cycles=None, duration=60.0)
    record = RunRecord(chosen)
    observer = RecordingObserver()
    seen_dirs: list[str] = []

    with trio.fail_after(RUN_LIMIT):
        with trio.move_on_after(0.5):
            await run_stress(chosen, record, [observer, TempDirLister(private_tmp, seen_dirs)])
    return record, observer, seen_dirs


async def test_cancel_keeps_finished_results(
    cancelled_run: tuple[RunRecord, RecordingObserver, list[str]],
) -> None:
    record, _, _ = cancelled_run
    assert len(record.results) > 0


async def test_cancel_results_are_finished_cycles(
    cancelled_run: tuple[RunRecord, RecordingObserver, list[str]],
) -> None:
    record, observer, _ = cancelled_run
    assert record.results == observer.finished


async def test_cancel_abandons_in_flight(
    cancelled_run: tuple[RunRecord, RecordingObserver, list[str]],
) -> None:
    _, observer, _ = cancelled_run
    assert len(observer.abandoned) > 0


async def test_cancel_every_start_ends(
    cancelled_run: tuple[RunRecord, RecordingObserver, list[str]],
) -> None:
    _, observer, _ = cancelled_run
    assert len(observer.started) == len(observer.finished) + len(observer.abandoned)


async def test_cancel_abandons_at_most_concurrency(
    cancelled_run: tuple[RunRecord, RecordingObserver, list[str]],
) -> None:
    record, observer, _ = cancelled_run
    assert len(observer.abandoned) <= record.scenario.concurrency


async def test_cancel_sets_finished_at(
    cancelled_run: tuple[RunRecord, RecordingObserver, list[str]],
) -> None:
    record, _, _ = cancelled_run
    assert record.finished_at is not None


async def test_run_stress_used_temp_dir(
    cancelled_run: tuple[RunRecord, RecordingObserver, list[str]],
) -> None:
    _, _, seen_dirs = cancelled_run
    assert any(name.startswith("stressor-") for name in seen_dirs)


async def test_cancel_removes_temp_dir(
    private_tmp: Path, cancelled_run: tuple[RunRecord, RecordingObserver, list[str]]
) -> None:
    assert os.listdir(private_tmp) == []


async def test_run_stress_removes_temp_dir(private_tmp: Path) -> None:
    await run(scenario())
    assert os.listdir(private_tmp) == []
