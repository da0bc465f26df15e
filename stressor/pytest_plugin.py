"""The pytest plugin: a ``stress`` fixture that stresses a follower inside a pytest-trio test.

Installing stressor registers it through the ``pytest11`` entry point::

    @pytest.mark.trio
    async def test_my_follower(stress):
        result = await stress(my_follower, cycles=200)
        result.assert_ok()

A failed ``assert_ok`` lists each finding with the command that replays its cycle:
``pytest NODEID --stressor-replay=SEED:CYCLE`` runs only that cycle, with the same
schedule, in each ``stress`` call of the test.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from stressor.api import RunResult, replay_cycle, run
from stressor.scenario import BUILTIN_EXPECTATIONS, Expectation, Scenario, new_seed
from stressor.targets import Target
from stressor.targets.python import Follow, PythonTarget

DEFAULT_CYCLES = 200


def _parse_replay(text: str) -> tuple[int, int]:
    seed, sep, cycle = text.partition(":")
    if not sep or not seed.isdigit() or not cycle.isdigit():
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: write SEED:CYCLE, e.g. 1234:17, as a failure message shows"
        )
    return int(seed), int(cycle)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the options that fix the seed or replay one cycle."""
    group = parser.getgroup("stressor", "stress tests of log followers")
    group.addoption(
        "--stressor-seed",
        type=int,
        metavar="SEED",
        help="run seed of every stress() call (default: a new one per call, shown on failure)",
    )
    group.addoption(
        "--stressor-replay",
        type=_parse_replay,
        metavar="SEED:CYCLE",
        help="run only cycle CYCLE of seed SEED in each stress() call, to replay a finding",
    )


class Stress:
    """The ``stress`` fixture: ``await stress(follower, cycles=N, ...)`` returns a ``RunResult``."""

    def __init__(self, nodeid: str, *, seed: int | None, replay: tuple[int, int] | None) -> None:
        self._nodeid = nodeid
        self._seed = seed
        self._replay = replay

    async def __call__(
        self,
        follower: Follow | Target | str,
        *,
        cycles: int = DEFAULT_CYCLES,
        seed: int | None = None,
        name: str | None = None,
        expect: Iterable[str] = (),
        allow: Iterable[str] = (),
        **settings: Any,
    ) -> RunResult:
        """Stress ``follower`` for ``cycles`` cycles and return the result.

        Args:
            follower: a Python follower (``stressor.targets.python.Follow``), a
                target object, or a built-in target's name.
            cycles: cycles to run.
            seed: the run seed; by default ``--stressor-seed`` or a new one.
            name: the target's name for a Python follower (default: its function name).
            expect: findings the follower must show, for a positive control.
            allow: findings the follower may show.
            settings: further ``Scenario`` fields, such as ``deadline=0.3`` or
                ``points=(HookPoint.BEFORE_REMOVE,)``.
        """
        target = _as_target(follower, name)
        target_name = target if isinstance(target, str) else target.name
        expectations = dict(settings.pop("expectations", {}))
        if expect or allow:
            expectations[target_name] = Expectation(frozenset(expect), frozenset(allow))
        elif target_name in BUILTIN_EXPECTATIONS:
            expectations.setdefault(target_name, BUILTIN_EXPECTATIONS[target_name])
        if self._replay is not None:
            seed, cycle = self._replay
        elif seed is None:
            seed = self._seed if self._seed is not None else new_seed()
        # The default targets stay in the scenario until run() replaces them
        # with the follower under test.
        scenario = Scenario(
            cycles=cycles, duration=None, seed=seed, expectations=expectations, **settings
        )
        if self._replay is not None:
            return await replay_cycle(scenario, target, cycle, replay=self._replay_command)
        return await run(scenario, targets=[target], replay=self._replay_command)

    def _replay_command(self, target: str, seed: int, cycle: int) -> str:
        return f"pytest {shlex.quote(self._nodeid)} --stressor-replay={seed}:{cycle}"


def _as_target(follower: Follow | Target | str, name: str | None) -> Target | str:
    if isinstance(follower, str):
        return follower
    if hasattr(follower, "follow") and hasattr(follower, "name"):
        return follower  # type: ignore[return-value]
    function: Callable[..., Any] = follower
    default = getattr(function, "__name__", "python-follower")
    return PythonTarget(name or _plain_name(default), follower)


def _plain_name(text: str) -> str:
    """Return ``text`` with characters a target name cannot have replaced by ``-``."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in text).strip("-._")
    return cleaned[:64] or "python-follower"


@pytest.fixture
def stress(request: pytest.FixtureRequest) -> Stress:
    """Return ``stress``: ``await stress(follower, cycles=200)`` runs stressor on a follower."""
    config = request.config
    return Stress(
        request.node.nodeid,
        seed=config.getoption("stressor_seed"),
        replay=config.getoption("stressor_replay"),
    )
