"""Read a scenario from a TOML file.

An example with every key::

    targets = ["reference", "docker-1.12.1"]
    seed = 7
    cycles = 200            # or: duration = 30.0 (seconds)
    concurrency = 16

    [writer]
    lines = 10
    max_gap = 0.0005        # seconds
    settle = 0.001          # seconds
    catch_up = true

    [[faults]]
    kind = "late-write"
    points = ["after-exit", "before-remove", "after-remove"]
    probability = 1.0

    [limits]
    deadline = 1.0          # seconds
    max_wait = 10.0         # seconds

    [expect]
    "docker-1.12.1" = ["hang"]

    [allow]
    "docker-1.12.1" = ["lost"]

    [metrics]
    port = 9466

Every key is optional. Unknown keys and values of the wrong type raise
``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from typing import Any

from stressor.hooks import parse_hook_point
from stressor.results import FINDINGS
from stressor.scenario import ConfigError

# TOML key (dotted for tables) -> Scenario field.
_FIELDS = {
    "targets": "targets",
    "seed": "seed",
    "cycles": "cycles",
    "duration": "duration",
    "concurrency": "concurrency",
    "writer.lines": "lines",
    "writer.max_gap": "max_gap",
    "writer.settle": "settle",
    "writer.catch_up": "catch_up",
    "limits.deadline": "deadline",
    "limits.max_wait": "max_wait",
    "metrics.port": "metrics_port",
}
_TABLES = {"writer", "limits", "metrics"}
_FAULT_KEYS = {"kind", "points", "probability"}
_FAULT_KINDS = ("late-write",)


@dataclasses.dataclass
class ScenarioFile:
    """Settings read from a scenario file, before the command line overrides them.

    Attributes:
        settings: Scenario field name -> value.
        sources: Scenario field name -> ``FILE: key``, for error messages.
        expect: (target, outcome) pairs from ``[expect]``.
        allow: (target, outcome) pairs from ``[allow]``.
    """

    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    expect: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    allow: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def load_scenario_file(path: str) -> ScenarioFile:
    """Parse the TOML scenario at ``path``; raise ``ConfigError`` naming the file and key."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError("SCENARIO", path, "file not found; check the path") from None
    except OSError as error:
        raise ConfigError("SCENARIO", path, f"cannot read it ({error.strerror})") from None
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
        elif key in _FIELDS:
            _store(path, key, value, result)
        else:
            _unknown(path, key, value, [k for k in _FIELDS if "." not in k] + sorted(_TABLES))
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
    if not isinstance(value, list) or not all(isinstance(entry, Mapping) for entry in value):
        raise ConfigError(f"{path}: faults", value, "write each fault as a [[faults]] table")
    if len(value) > 1:
        raise ConfigError(
            f"{path}: faults", len(value), "give one [[faults]] entry; late writes are one fault"
        )
    for entry in value:
        for key, item in entry.items():
            if key not in _FAULT_KEYS:
                _unknown(path, f"faults.{key}", item, sorted(_FAULT_KEYS))
        kind = entry.get("kind", "late-write")
        if kind not in _FAULT_KINDS:
            raise ConfigError(
                f"{path}: faults.kind", kind, "choose one of " + ", ".join(_FAULT_KINDS)
            )
        if "points" in entry:
            result.settings["points"] = _parse_points(path, entry["points"])
            result.sources["points"] = f"{path}: faults.points"
        if "probability" in entry:
            result.settings["fault_probability"] = entry["probability"]
            result.sources["fault_probability"] = f"{path}: faults.probability"


def _parse_points(path: str, value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{path}: faults.points", value, 'write a list, e.g. ["before-remove"]')
    points = []
    for text in value:
        try:
            points.append(parse_hook_point(str(text)))
        except ValueError as error:
            raise ConfigError(
                f"{path}: faults.points", text, str(error).split(": ", 1)[1]
            ) from None
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
