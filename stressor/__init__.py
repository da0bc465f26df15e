"""stressor: a fault-injection stress service for log followers.

These names are the public Python API; the modules behind them are internal.
``build_scenario`` describes a run, and ``run`` stresses its targets inside trio
and returns a ``RunResult`` with the fields of the JSON report. A follower written
in Python becomes a target through ``PythonTarget``; ``stressor.targets.python``
documents the protocol it implements. Any other program becomes one through
``CommandTarget``, or ``recipe`` for the built-in ones such as ``tail-F``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stressor._version import __version__

if TYPE_CHECKING:
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
    from stressor.targets.command import CommandTarget, recipe
    from stressor.targets.python import Follow, PythonTarget, Watcher, WriterDone
    from stressor.watchers.event import Op, WatchEvent

# Public name -> the module that defines it. The names load on first use, so the
# command line starts (and a Ctrl-C during start-up exits) before trio is imported.
_SOURCES = {
    "Finding": "stressor.api",
    "RunResult": "stressor.api",
    "TargetResult": "stressor.api",
    "build_scenario": "stressor.api",
    "replay_cycle": "stressor.api",
    "run": "stressor.api",
    "RunObserver": "stressor.engine",
    "HookPoint": "stressor.hooks",
    "CycleResult": "stressor.results",
    "ConfigError": "stressor.scenario",
    "Expectation": "stressor.scenario",
    "Scenario": "stressor.scenario",
    "Target": "stressor.targets.base",
    "CommandTarget": "stressor.targets.command",
    "recipe": "stressor.targets.command",
    "Follow": "stressor.targets.python",
    "PythonTarget": "stressor.targets.python",
    "Watcher": "stressor.targets.python",
    "WriterDone": "stressor.targets.python",
    "Op": "stressor.watchers.event",
    "WatchEvent": "stressor.watchers.event",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'stressor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CommandTarget",
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
    "recipe",
    "replay_cycle",
    "run",
]
