"""Read a scenario from a TOML file.

An example with every key::

    targets = ["reference", "docker-1.12.1"]
    seed = 7
    cycles = 200            # or: duration = 30.0 (seconds)
    concurrency = 16
    backend = "real"        # or "fake": pyfakefs files with a simulated inotify, on
                            # which `stressor replay` is exact (see below)

    [writer]
    lines = 10
    max_gap = 0.0005        # seconds
    settle = 0.001          # seconds
    catch_up = true
    format = "docker-json"  # or "cri", "plain"
    symlink = false         # follow a symlink to the file in another directory
    rotate_every = 0        # rotate before every N lines, like a size limit; 0: never
    rotate_method = "rename-create"

    [[faults]]              # the late write; without [[faults]] it lands at all three
    kind = "late-write"     # window points
    points = ["after-exit", "before-remove", "after-remove"]
    probability = 1.0

    [[faults]]
    kind = "rotate"         # late-write, partial-line, burst, pause or rotate
    points = ["mid-stream"] # also before-start, after-first-read, after-exit, ...
    method = "chain"        # rename-create, chain, copytruncate, truncate,
    count = 2               # delete-recreate or symlink-swap; rotations in a row
    gap = 0.0               # seconds between them
    probability = 0.5
    # lines = 1             # lines of a late-write (1) or a burst (100)
    # delay = [1e-6, 0.1]   # seconds, log-uniform: a pause, the wait before a
    #                       # late write, or until a partial line is completed
    # complete = true       # whether a partial line is ever completed

    [limits]
    deadline = 1.0          # seconds
    max_wait = 10.0         # seconds
    check_leaks = false     # compare descriptors and watches; needs concurrency = 1

    [expect]
    "docker-1.12.1" = ["hang"]

    [allow]
    "docker-1.12.1" = ["lost"]

    [[thresholds]]          # judged by `stressor gate` only; `stressor run` ignores them
    target = "*"            # a target's name, or "*" for every target of the run
    check = "hangs == 0"    # METRIC OPERATOR NUMBER; stressor.thresholds lists metrics

    [metrics]
    port = 9466

    [[commands]]            # an external program as a target; see stressor.external.table
    name = "my-agent"
    argv = ["./agent", "{path}"]

Every key is optional. A ``[[faults]]`` list replaces the default late write, so a
file with only a rotation injects no late writes. Unknown keys and values of the
wrong type raise ``ConfigError`` naming the file and the key.

``backend`` is a top-level key because it concerns every part of a cycle, not
only the writer: the files, the inotify watches and the followers' reads. On
``"fake"``, in-process targets run on pyfakefs files with a simulated inotify
(``stressor.backends``). ``stressor run`` then keeps the real clock, because its
metrics, progress and ``duration`` are in real seconds. ``stressor replay`` runs
each attempt in virtual time, so it repeats the same events and verdict exactly.
``limits.check_leaks`` needs the real backend (docs/backends.md has the details).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from typing import Any

from stressor.external.table import read_commands, recipes_named
from stressor.faults import FaultSpec
from stressor.hooks import HookPoint, parse_hook_point
from stressor.results import FINDINGS
from stressor.scenario import ConfigError
from stressor.thresholds import Threshold, read_thresholds

# TOML key (dotted for tables) -> Scenario field.
_FIELDS = {
    "targets": "targets",
    "seed": "seed",
    "cycles": "cycles",
    "duration": "duration",
    "concurrency": "concurrency",
    "backend": "backend",
    "writer.lines": "lines",
    "writer.max_gap": "max_gap",
    "writer.settle": "settle",
    "writer.catch_up": "catch_up",
    "writer.format": "line_format",
    "writer.symlink": "symlink",
    "writer.rotate_every": "rotate_every",
    "writer.rotate_method": "rotate_method",
    "limits.check_leaks": "check_leaks",
    "limits.deadline": "deadline",
    "limits.max_wait": "max_wait",
    "metrics.port": "metrics_port",
}
_TABLES = {"writer", "limits", "metrics"}
# [[faults]] key -> the type its value must have.
_FAULT_KEYS: dict[str, type] = {
    "kind": str,
    "points": list,
    "probability": float,
    "lines": int,
    "method": str,
    "count": int,
    "gap": float,
    "delay": float,
    "complete": bool,
}
_TYPE_NAMES = {
    str: "a string",
    list: "a list",
    float: "a number",
    int: "an integer",
    bool: "true or false",
}


@dataclasses.dataclass
class ScenarioFile:
    """Settings read from a scenario file, before the command line overrides them.

    Attributes:
        settings: Scenario field name -> value.
        sources: Scenario field name -> ``FILE: key``, for error messages.
        expect: (target, outcome) pairs from ``[expect]``.
        allow: (target, outcome) pairs from ``[allow]``.
        thresholds: the ``[[thresholds]]`` a gate judges the run against.
    """

    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    expect: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    allow: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    thresholds: list[Threshold] = dataclasses.field(default_factory=list)


def load_scenario_file(path: str) -> ScenarioFile:
    """Parse the TOML scenario at ``path``; raise ``ConfigError`` naming the file and key."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError("SCENARIO", path, "file not found; check the path") from None
    except OSError as error:
        raise ConfigError("SCENARIO", path, f"cannot read it ({error.strerror})") from None
    except UnicodeDecodeError as error:
        fix = f"not UTF-8 text ({error.reason}); save it as UTF-8"
        raise ConfigError("SCENARIO", path, fix) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("SCENARIO", path, f"invalid TOML: {error}") from None

    result = ScenarioFile()
    for key, value in document.items():
        if key in _TABLES:
            _read_table(path, key, value, result)
        elif key == "faults":
            _read_faults(path, value, result)
        elif key in ("expect", "allow"):
            _read_outcomes(path, key, value, getattr(result, key))
        elif key == "thresholds":
            result.thresholds = read_thresholds(path, value)
        elif key == "commands":
            result.settings["extra_targets"] = read_commands(path, value)
            result.sources["extra_targets"] = f"{path}: commands"
        elif key in _FIELDS:
            _store(path, key, value, result)
        else:
            tables = sorted([*_TABLES, "faults", "expect", "allow", "thresholds", "commands"])
            _unknown(path, key, value, [k for k in _FIELDS if "." not in k] + tables)
    # Recipe names (such as "tail-F") work as targets without a [[commands]] table.
    extra = result.settings.get("extra_targets", {})
    recipes = recipes_named(result.settings.get("targets"), extra)
    if recipes:
        result.settings["extra_targets"] = {**extra, **recipes}
    return result


def _store(path: str, key: str, value: Any, result: ScenarioFile) -> None:
    field = _FIELDS[key]
    if field == "targets":
        if not isinstance(value, list):
            raise ConfigError(f"{path}: {key}", value, 'write a list, e.g. ["reference"]')
        value = tuple(value)
    result.settings[field] = value
    result.sources[field] = f"{path}: {key}"


def _read_table(path: str, table: str, value: Any, result: ScenarioFile) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: {table}", value, f"write it as a [{table}] table")
    for key, item in value.items():
        dotted = f"{table}.{key}"
        if dotted not in _FIELDS:
            known = [k.split(".", 1)[1] for k in _FIELDS if k.startswith(table + ".")]
            _unknown(path, dotted, item, known)
        _store(path, dotted, item, result)


def _read_faults(path: str, value: Any, result: ScenarioFile) -> None:
    """Read ``[[faults]]``; the file's list replaces the default late write entirely."""
    if not isinstance(value, list) or not all(isinstance(entry, Mapping) for entry in value):
        raise ConfigError(f"{path}: faults", value, "write each fault as a [[faults]] table")
    result.settings["points"] = ()
    result.sources["points"] = f"{path}: faults"
    specs = []
    primary_taken = False
    for index, entry in enumerate(value):
        spec = _fault_spec(path, index, entry)
        simple = set(entry) <= {"kind", "points", "probability"}
        if spec.kind == "late-write" and simple and not primary_taken:
            primary_taken = True
            key = f"{path}: faults[{index}]"
            result.settings["points"] = spec.points
            result.sources["points"] = f"{key}.points"
            result.settings["fault_probability"] = spec.probability
            result.sources["fault_probability"] = f"{key}.probability"
        else:
            specs.append(spec)
    result.settings["faults"] = tuple(specs)
    result.sources["faults"] = f"{path}: faults"


def _fault_spec(path: str, index: int, entry: Mapping[str, Any]) -> FaultSpec:
    """Build one ``[[faults]]`` entry, checking the type of each key."""
    prefix = f"{path}: faults[{index}]"
    for key, item in entry.items():
        if key not in _FAULT_KEYS:
            _unknown(path, f"faults[{index}].{key}", item, sorted(_FAULT_KEYS))
    fields: dict[str, Any] = {}
    for key, item in entry.items():
        expected = _FAULT_KEYS[key]
        if key == "points":
            fields["points"] = _parse_points(f"{prefix}.points", item)
        elif key == "delay":
            fields["delay"] = _parse_delay(f"{prefix}.delay", item)
        elif not _has_type(item, expected):
            raise ConfigError(f"{prefix}.{key}", item, f"must be {_TYPE_NAMES[expected]}")
        else:
            fields[key] = item
    return FaultSpec(**fields)


def _has_type(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _parse_delay(key: str, value: Any) -> tuple[float, float]:
    """Read a delay: one number of seconds, or [low, high] drawn log-uniformly."""
    if _has_type(value, float):
        return (float(value), float(value))
    if isinstance(value, list) and len(value) == 2 and all(_has_type(v, float) for v in value):
        return (float(value[0]), float(value[1]))
    raise ConfigError(key, value, "write seconds as a number or as [low, high]")


def _parse_points(key: str, value: Any) -> tuple[HookPoint, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(key, value, 'write a list, e.g. ["before-remove"]')
    points = []
    for text in value:
        try:
            points.append(parse_hook_point(str(text)))
        except ValueError as error:
            raise ConfigError(key, text, str(error).split(": ", 1)[1]) from None
    return tuple(dict.fromkeys(points))


def _read_outcomes(path: str, table: str, value: Any, pairs: list[tuple[str, str]]) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: {table}", value, f'write [{table}] with TARGET = ["OUTCOME"]')
    for target, outcomes in value.items():
        key = f"{path}: {table}.{target}"
        if isinstance(outcomes, str):
            outcomes = [outcomes]
        if not isinstance(outcomes, list):
            raise ConfigError(key, outcomes, 'write a list of outcomes, e.g. ["hang"]')
        for outcome in outcomes:
            if outcome not in FINDINGS:
                raise ConfigError(key, outcome, "choose one of " + ", ".join(FINDINGS))
            pairs.append((target, outcome))


def _unknown(path: str, key: str, value: Any, known: list[str]) -> None:
    raise ConfigError(f"{path}: {key}", value, "unknown key; known keys: " + ", ".join(known))
