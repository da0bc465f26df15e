"""Tests of the Python API: scenarios, runs, results, replays and Python followers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

import stressor
from stressor import HookPoint, PythonTarget, Watcher, WriterDone
from stressor.results import CycleResult
from stressor.targets import BUILTIN_TARGETS

Deliver = Callable[[bytes], None]

# Short limits: a hung cycle costs 0.2 s.
LIMITS = {"deadline": 0.2, "max_wait": 0.4}

# Seconds the script test may take: far above the second it needs.
SCRIPT_LIMIT = 60.0


def make_follower(*, drain: bool) -> stressor.Follow:
    """Return a follower that reads on every event; with ``drain`` it reads once more at the end."""

    async def follow(
        path: str, watcher: Watcher, writer_done: WriterDone, deliver: Deliver
    ) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        pending = b""

        def read_lines() -> None:
            nonlocal pending
            while chunk := os.read(fd, 65536):
                pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                deliver(line + b"\n")

        try:
            watcher.add(path)
            async with trio.open_nursery() as nursery:

                async def stop() -> None:
                    await writer_done.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(stop)
                while True:
                    read_lines()
                    await watcher.events.receive()
            await watcher.remove(path)
            if drain:
                read_lines()
        finally:
            os.close(fd)

    return follow


GOOD = PythonTarget("good", make_follower(drain=True))
LOSSY = PythonTarget("lossy", make_follower(drain=False))


# --- runs of Python followers ---------------------------------------------------------


async def test_run_python_follower_passes() -> None:
    scenario = stressor.build_scenario([GOOD], cycles=40, seed=1, **LIMITS)
    result = await stressor.run(scenario)
    assert result.passed, result.failure_message()
    target = result.targets["good"]
    assert target.cycles == 40
    assert target.outcomes["ok"] == 40
    assert target.window_hits > 0
    assert target.lines["lost"] == 0


async def test_run_result_mirrors_report() -> None:
    result = await stressor.run(stressor.build_scenario([GOOD], cycles=5, seed=2))
    entry = result.report["targets"]["good"]  # type: ignore[index]
    target = result.targets["good"]
    assert result.report["seed"] == result.seed == 2
    assert result.report["passed"] is result.passed
    assert entry["cycles"] == target.cycles
    assert entry["outcomes"] == target.outcomes
    assert entry["exit_latency_seconds"] == target.exit_latency_seconds
    assert set(entry["exit_latency_seconds"]) == {"p50", "p90", "p99", "max"}


async def test_result_report_is_json() -> None:
    result = await stressor.run(stressor.build_scenario([GOOD], cycles=3, seed=3))
    assert json.loads(json.dumps(result.report)) == result.report


async def test_lossy_follower_fails_with_replay() -> None:
    scenario = stressor.build_scenario([LOSSY], cycles=20, seed=4, **LIMITS)
    result = await stressor.run(scenario)
    assert not result.passed
    message = result.failure_message()
    assert "lossy: lost in " in message
    assert "(to tolerate it: allow 'lost' for 'lossy')" in message
    assert "replay: await stressor.replay_cycle(result.scenario, 'lossy', cycle=" in message


async def test_assert_ok_raises_failure_message() -> None:
    result = await stressor.run(stressor.build_scenario([LOSSY], cycles=20, seed=4, **LIMITS))
    with pytest.raises(AssertionError) as caught:
        result.assert_ok()
    assert str(caught.value) == result.failure_message()


async def test_allowed_finding_passes() -> None:
    scenario = stressor.build_scenario(
        [LOSSY], cycles=20, seed=4, allow={"lossy": ["lost"]}, **LIMITS
    )
    result = await stressor.run(scenario)
    assert result.passed, result.failure_message()
    assert result.targets["lossy"].findings["lost"] > 0


async def test_replay_cycle_repeats_finding() -> None:
    # Late writes just before the removal: the lossy follower loses them every time.
    points = (HookPoint.BEFORE_REMOVE,)
    scenario = stressor.build_scenario([LOSSY], cycles=10, seed=5, points=points, **LIMITS)
    result = await stressor.run(scenario)
    finding = result.targets["lossy"].first_findings["lost"]
    replayed = await stressor.replay_cycle(result.scenario, "lossy", finding.cycle, repeat=3)
    target = replayed.targets["lossy"]
    assert target.cycles == 3
    assert target.findings["lost"] == 3
    assert target.first_findings["lost"].faults == finding.faults


async def test_replay_cycle_rejects_negative_cycle() -> None:
    with pytest.raises(stressor.ConfigError, match="cycle: invalid value -1"):
        await stressor.replay_cycle(stressor.build_scenario([GOOD], cycles=1), GOOD, -1)


async def test_builtin_hang_has_cli_replay() -> None:
    points = (HookPoint.BEFORE_REMOVE,)
    scenario = stressor.build_scenario(
        ["docker-1.12.1"], cycles=16, seed=6, points=points, **LIMITS
    )
    result = await stressor.run(scenario)
    assert result.passed, result.failure_message()
    assert result.hangs
    replay = result.hangs[0].replay
    assert replay.startswith("stressor replay --target docker-1.12.1 --seed 6 --cycle ")


async def test_observer_sees_every_cycle() -> None:
    finished: list[CycleResult] = []

    class Observer:
        def cycle_started(self, target: str) -> None:
            pass

        def cycle_finished(self, result: CycleResult) -> None:
            finished.append(result)

        def cycle_abandoned(self, target: str) -> None:
            pass

    await stressor.run(stressor.build_scenario([GOOD], cycles=7), observers=[Observer()])
    assert len(finished) == 7


async def test_run_targets_override_scenario() -> None:
    result = await stressor.run(stressor.Scenario(cycles=3, duration=None), targets=[GOOD])
    assert list(result.targets) == ["good"]


# --- followers that misbehave -----------------------------------------------------------


async def test_raising_follower_is_crash() -> None:
    async def crash(path: str, watcher: Watcher, writer_done: WriterDone, deliver: Deliver) -> None:
        watcher.add(path)
        await writer_done.wait()
        raise RuntimeError("broken pipe to the log store")

    target = PythonTarget("crashing", crash)
    result = await stressor.run(stressor.build_scenario([target], cycles=3, **LIMITS))
    finding = result.targets["crashing"].first_findings["crash"]
    assert "RuntimeError: broken pipe to the log store" in finding.detail


async def test_deliver_str_is_crash() -> None:
    async def text(path: str, watcher: Watcher, writer_done: WriterDone, deliver: Deliver) -> None:
        watcher.add(path)
        await writer_done.wait()
        deliver("a line\n")  # type: ignore[arg-type]

    target = PythonTarget("text", text)
    result = await stressor.run(stressor.build_scenario([target], cycles=2, **LIMITS))
    finding = result.targets["text"].first_findings["crash"]
    assert "deliver() takes bytes, not str" in finding.detail


async def test_stuck_follower_is_hang() -> None:
    async def stuck(path: str, watcher: Watcher, writer_done: WriterDone, deliver: Deliver) -> None:
        watcher.add(path)
        await trio.sleep_forever()

    target = PythonTarget("stuck", stuck)
    result = await stressor.run(stressor.build_scenario([target], cycles=2, **LIMITS))
    assert result.targets["stuck"].outcomes["hang"] == 2
    assert len(result.hangs) == 2


async def test_follower_without_watch_starts_at_once() -> None:
    async def poll(path: str, watcher: Watcher, writer_done: WriterDone, deliver: Deliver) -> None:
        with open(path, "rb") as file:
            while not writer_done.is_closed():
                await trio.sleep(0.001)
            for line in file:
                deliver(line)

    target = PythonTarget("poll", poll, wait_for_watch=False)
    result = await stressor.run(stressor.build_scenario([target], cycles=5, **LIMITS))
    assert result.passed, result.failure_message()


# --- scenarios and targets: validation ----------------------------------------------------


def test_build_scenario_keeps_builtin_expectation() -> None:
    scenario = stressor.build_scenario(["docker-1.12.1", GOOD], cycles=1)
    assert scenario.expectation_for("docker-1.12.1").expect == {"hang"}
    assert scenario.expectation_for("good") == stressor.Expectation()


def test_build_scenario_cycles_replace_duration() -> None:
    scenario = stressor.build_scenario([GOOD], cycles=5)
    assert (scenario.cycles, scenario.duration) == (5, None)


@pytest.mark.parametrize(
    ("targets", "settings", "message"),
    [
        (["tail-f"], {}, "invalid value 'tail-f'"),
        ([GOOD, GOOD], {}, "name each target only once"),
        ([PythonTarget("reference", make_follower(drain=True))], {}, "a built-in target"),
        ([GOOD], {"expect": {"lossy": ["lost"]}}, "not a target of the run"),
        ([GOOD], {"concurrency": 0}, "--concurrency: invalid value 0"),
    ],
    ids=["unknown", "repeated", "builtin-name", "expect-absent", "concurrency"],
)
def test_build_scenario_invalid(
    targets: list[stressor.Target | str], settings: dict[str, object], message: str
) -> None:
    with pytest.raises(stressor.ConfigError, match=message):
        stressor.build_scenario(targets, cycles=1, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a/b", "<lambda>", "x" * 65, ".hidden"])
def test_python_target_invalid_name(name: str) -> None:
    with pytest.raises(ValueError, match="invalid target name"):
        PythonTarget(name, make_follower(drain=True))


def test_extra_targets_stay_in_their_scenario() -> None:
    stressor.build_scenario([GOOD], cycles=1)
    assert "good" not in BUILTIN_TARGETS
    with pytest.raises(stressor.ConfigError):
        stressor.Scenario(targets=("good",), cycles=1, duration=None)


async def test_run_rejects_unbounded_scenario() -> None:
    scenario = stressor.Scenario(cycles=None, duration=None, endless=True)
    with pytest.raises(stressor.ConfigError, match="bound the run"):
        await stressor.run(scenario, targets=[GOOD])


async def test_run_missing_tmpdir_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        await stressor.run(stressor.build_scenario([GOOD], cycles=1))


def test_public_names() -> None:
    for name in stressor.__all__:
        assert hasattr(stressor, name), name


# --- the API from a plain script ------------------------------------------------------------

SCRIPT = """
import json
import os

import trio

import stressor


async def follow(path, watcher, writer_done, deliver):
    fd = os.open(path, os.O_RDONLY)
    pending = b""

    def read_lines():
        nonlocal pending
        while chunk := os.read(fd, 65536):
            pending += chunk
        *lines, pending = pending.split(b"\\n")
        for line in lines:
            deliver(line + b"\\n")

    watcher.add(path)
    async with trio.open_nursery() as nursery:
        async def stop():
            await writer_done.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(stop)
        while True:
            read_lines()
            await watcher.events.receive()
    await watcher.remove(path)
    read_lines()
    os.close(fd)


async def main():
    mine = stressor.PythonTarget("script-follower", follow)
    scenario = stressor.build_scenario([mine, "docker-1.12.1"], cycles=30, seed=9,
                                       deadline=0.2, max_wait=0.4)
    result = await stressor.run(scenario)
    print(json.dumps({
        "passed": result.passed,
        "cycles": {name: target.cycles for name, target in result.targets.items()},
        "hang_replay": result.hangs[0].replay if result.hangs else None,
    }))
    result.assert_ok()


trio.run(main)
"""


def test_api_from_plain_script(tmp_path: Path) -> None:
    script = tmp_path / "stress_it.py"
    script.write_text(textwrap.dedent(SCRIPT))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SCRIPT_LIMIT,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["passed"] is True
    assert output["cycles"] == {"script-follower": 30, "docker-1.12.1": 30}
    assert output["hang_replay"].startswith("stressor replay --target docker-1.12.1 --seed 9 ")
