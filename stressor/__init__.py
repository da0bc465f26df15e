"""stressor: a fault-injection stress service for log followers.

These names are the public Python API; the modules behind them are internal.
``build_scenario`` describes a run, and ``run`` stresses its targets inside trio
and returns a ``RunResult`` with the fields of the JSON report. A follower written
in Python becomes a target through ``PythonTarget``; ``stressor.targets.python``
documents the protocol it implements.
"""

from stressor._version import __version__
from stressor.api import (
    Finding,
    RunResult,
    TargetResult,
    build_scenario,
    replay_cycle,
    run,
)
from stressor.engine import RunObserver
from stressor.hooks import HookPoint
from stressor.results import CycleResult
from stressor.scenario import ConfigError, Expectation, Scenario
from stressor.targets.base import Target
from stressor.targets.python import Follow, PythonTarget, Watcher, WriterDone
from stressor.watchers.event import Op, WatchEvent

__all__ = [
    "ConfigError",
    "CycleResult",
    "Expectation",
    "Finding",
    "Follow",
    "HookPoint",
    "Op",
    "PythonTarget",
    "RunObserver",
    "RunResult",
    "Scenario",
    "Target",
    "TargetResult",
    "WatchEvent",
    "Watcher",
    "WriterDone",
    "__version__",
    "build_scenario",
    "replay_cycle",
    "run",
]
