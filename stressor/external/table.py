"""Read the ``[[commands]]`` tables of a scenario file into command targets.

An example::

    targets = ["my-agent", "tail-F"]   # a recipe name works without a table

    [[commands]]
    name = "my-agent"
    argv = ["./agent", "--follow", "{path}", "--pid", "{writer_pid}"]
    done = "pid"                        # pid, stdin, signal or never
    # output = "lines"                  # or "events" (one line per file event)
    # source = "stdout"                 # or "file": it writes to {output};
    #                                   # or "tcp": it connects to 127.0.0.1:{port}
    # signal = "SIGTERM"                # with done = "signal"
    # ready = "watch"                   # or "open" (file open or watched), "start"
    # ready_timeout = 2.0               # seconds
    # quiet = 0.2                       # seconds, with done = "never"
    # grace = 0.2                       # seconds from SIGTERM to SIGKILL
    # shell = false                     # argv as one string for /bin/sh -c
    # strace_delays = { inotify_rm_watch = 0.01, close = 0.01 }
    # lifetime = "cycle"                # or "run": one program for the whole run
    # release = 1.0                     # seconds, with lifetime = "run"

    [[commands]]
    name = "my-shipper"                 # a long-lived program on a directory
    argv = ["./shipper", "--watch", "{dir}", "--send-to", "127.0.0.1:{port}"]
    lifetime = "run"                    # it follows each cycle's file in {dir}
    source = "tcp"

    [[commands]]
    name = "tail-pid-widened"
    recipe = "tail-f-pid"               # a recipe, with any key above overriding it
    strace_delays = { close = 0.02 }
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stressor.external.program import SettingError
from stressor.scenario import ConfigError
from stressor.targets.base import Target
from stressor.targets.command import RECIPES, CommandTarget, recipe

# Key -> (type check, what the value must be).
_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "name": (str, "a string"),
    "recipe": (str, "a string"),
    "argv": ((list, str), "a list of strings (or one string with shell = true)"),
    "shell": (bool, "true or false"),
    "done": (str, "a string"),
    "output": (str, "a string"),
    "source": (str, "a string"),
    "signal": (str, "a string"),
    "ready": (str, "a string"),
    "ready_timeout": ((int, float), "a number of seconds"),
    "quiet": ((int, float), "a number of seconds"),
    "grace": ((int, float), "a number of seconds"),
    "strace_delays": (Mapping, "a table of syscall = seconds"),
    "lifetime": (str, "a string"),
    "release": ((int, float), "a number of seconds"),
    "description": (str, "a string"),
}


def read_commands(path: str, value: Any) -> dict[str, Target]:
    """Build a target from each ``[[commands]]`` table; raise ``ConfigError`` naming the key."""
    if not isinstance(value, list) or not all(isinstance(entry, Mapping) for entry in value):
        raise ConfigError(f"{path}: commands", value, "write each command as a [[commands]] table")
    targets: dict[str, Target] = {}
    for index, entry in enumerate(value):
        prefix = f"{path}: commands[{index}]"
        target = _read_command(prefix, entry)
        if target.name in targets:
            raise ConfigError(f"{prefix}.name", target.name, "name each command only once")
        targets[target.name] = target
    return targets


def _read_command(prefix: str, entry: Mapping[str, Any]) -> CommandTarget:
    for key, item in entry.items():
        if key not in _KEYS:
            known = ", ".join(sorted(_KEYS))
            raise ConfigError(f"{prefix}.{key}", item, f"unknown key; known keys: {known}")
        kind, wanted = _KEYS[key]
        if isinstance(item, bool) and kind is not bool or not isinstance(item, kind):
            raise ConfigError(f"{prefix}.{key}", item, f"must be {wanted}")
    options = dict(entry)
    name = options.pop("name", None)
    if name is None:
        raise ConfigError(f"{prefix}.name", None, 'name the target, e.g. name = "my-agent"')
    if "strace_delays" in options:
        options["strace_delays"] = dict(options["strace_delays"])
    try:
        known = options.pop("recipe", None)
        if known is not None:
            if known not in RECIPES:
                raise ConfigError(f"{prefix}.recipe", known, "choose one of " + ", ".join(RECIPES))
            if "argv" in options:
                raise ConfigError(
                    f"{prefix}.argv", options["argv"], "give recipe or argv, not both"
                )
            return recipe(known, name=name, **options)
        if "argv" not in options:
            raise ConfigError(f"{prefix}.argv", None, "give the program's argv, or a recipe")
        return CommandTarget(name, options.pop("argv"), **options)
    except SettingError as error:
        raise ConfigError(f"{prefix}.{error.key}", error.value, error.fix) from None
    except (ValueError, RuntimeError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(prefix, dict(entry), str(error)) from None


def recipes_named(targets: Any, defined: Mapping[str, Target]) -> dict[str, Target]:
    """Return the recipes that ``targets`` names and no ``[[commands]]`` table defines."""
    if not isinstance(targets, list | tuple):
        return {}
    return {
        name: recipe(name)
        for name in targets
        if isinstance(name, str) and name in RECIPES and name not in defined
    }
