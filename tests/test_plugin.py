"""Tests of the pytest plugin: the ``stress`` fixture, in this session and in subprocesses."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stressor import HookPoint
from stressor.pytest_plugin import Stress

REPO = Path(__file__).resolve().parent.parent

# Seconds a pytest subprocess may take: far above the seconds it needs.
PYTEST_LIMIT = 60.0

LIMITS = {"deadline": 0.2, "max_wait": 0.4}

# A test module as a team would write it: one correct follower, one that loses
# the lines written just before it stops.
TEST_MODULE = """
import os

import pytest
import trio


def make_follower(drain):
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
        if drain:
            read_lines()
        os.close(fd)

    return follow


@pytest.mark.trio
async def test_good_follower(stress):
    result = await stress(make_follower(True), name="good", cycles=30, deadline=0.2)
    result.assert_ok()


@pytest.mark.trio
async def test_lossy_follower(stress):
    result = await stress(make_follower(False), name="lossy", cycles=30, deadline=0.2)
    print(f"seed={result.seed} cycles={result.targets['lossy'].cycles}")
    result.assert_ok()
"""


def pytest_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest in a subprocess in ``cwd`` and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PYTEST_LIMIT,
    )


@pytest.fixture(scope="module")
def team_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    directory = tmp_path_factory.mktemp("team")
    (directory / "test_followers.py").write_text(textwrap.dedent(TEST_MODULE))
    return directory, pytest_in(directory, "-q", "test_followers.py")


# --- pytest subprocesses -----------------------------------------------------------------


def test_plugin_example_passes() -> None:
    result = pytest_in(REPO, "-q", "examples/test_my_follower.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_plugin_counts_pass_and_failure(
    team_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, result = team_run
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout


def test_plugin_failure_names_finding(
    team_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, result = team_run
    assert "AssertionError: stressor run failed (seed " in result.stdout
    assert "lossy: lost in " in result.stdout


def test_plugin_failure_has_replay_command(
    team_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, result = team_run
    assert re.search(
        r"replay: pytest test_followers\.py::test_lossy_follower --stressor-replay=\d+:\d+",
        result.stdout,
    )


def test_plugin_replay_runs_one_cycle(
    team_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    directory, first = team_run
    match = re.search(r"replay: pytest (\S+) --stressor-replay=(\d+):(\d+)", first.stdout)
    assert match is not None, first.stdout
    nodeid, seed, _ = match.groups()
    result = pytest_in(directory, "-q", "-s", nodeid, f"--stressor-replay={seed}:{match[3]}")
    assert f"seed={seed} cycles=1" in result.stdout, result.stdout + result.stderr
    assert "1 deselected" not in result.stdout


def test_plugin_invalid_replay_option(tmp_path: Path) -> None:
    (tmp_path / "test_followers.py").write_text(textwrap.dedent(TEST_MODULE))
    result = pytest_in(tmp_path, "-q", "--stressor-replay=latest")
    assert result.returncode == 4
    assert "write SEED:CYCLE" in result.stderr


# --- the fixture in this session ----------------------------------------------------------


async def test_stress_builtin_target(stress: Stress) -> None:
    result = await stress("reference", cycles=10, **LIMITS)
    result.assert_ok()
    assert result.targets["reference"].cycles == 10


async def test_stress_keeps_builtin_expectation(stress: Stress) -> None:
    points = (HookPoint.BEFORE_REMOVE,)
    result = await stress("docker-1.12.1", cycles=10, points=points, **LIMITS)
    result.assert_ok()
    assert result.targets["docker-1.12.1"].findings["hang"] > 0


async def test_stress_seed_is_kept(stress: Stress) -> None:
    result = await stress("reference", cycles=2, seed=1234)
    assert result.seed == 1234


async def test_stress_replay_command_names_test(stress: Stress) -> None:
    points = (HookPoint.BEFORE_REMOVE,)
    result = await stress("docker-1.12.1", cycles=4, seed=5, points=points, **LIMITS)
    replay = result.hangs[0].replay
    assert replay.startswith("pytest tests/test_plugin.py::test_stress_replay_command_names_test ")
    assert "--stressor-replay=5:" in replay
