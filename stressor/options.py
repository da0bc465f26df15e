"""The command-line parser, and the scenario it builds from options and a scenario file."""

from __future__ import annotations

import argparse
import difflib
import textwrap

from stressor import __version__
from stressor.external.table import recipes_named
from stressor.scenario import (
    DEFAULT_METRICS_PORT,
    DEFAULT_TARGETS,
    Scenario,
    build_expectations,
    new_seed,
    parse_outcome_option,
    parse_points,
)
from stressor.scenario_file import ScenarioFile, load_scenario_file


class UsageError(Exception):
    """Invalid usage, reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports errors in one line, with a did-you-mean hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; see `{self.prog} --help`")

    def parse_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        """Parse ``args``; reject unknown options with a hint from the chosen command."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self._command_parser(getattr(parsed, "command", None))
            message = f"unrecognized arguments: {' '.join(extras)}"
            known = [option for action in command._actions for option in action.option_strings]
            close = difflib.get_close_matches(extras[0].split("=")[0], known, n=1)
            if close:
                message += f" (did you mean {close[0]}?)"
            command.error(message)
        return parsed

    def _command_parser(self, name: str | None) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                parser: argparse.ArgumentParser = action.choices[name]
                return parser
        return self


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every command and its options."""
    parser = _Parser(
        prog="stressor",
        description="Fault-injection stress runs for log followers.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"stressor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # Abbreviated options are rejected, so a typo such as --cycle gets a hint
    # instead of silently meaning --cycles.
    commands.add_parser(
        "targets", help="list the built-in targets, one per line", allow_abbrev=False
    )
    run = commands.add_parser(
        "run",
        help="run a bounded stress (the embedded default scenario without options)",
        description="Run cycles against followers and judge them against their expectations.",
        allow_abbrev=False,
    )
    _add_scenario_options(run)
    _add_run_options(run)

    gate = commands.add_parser(
        "gate",
        help="run a bounded stress and judge it against the scenario's [[thresholds]]",
        description="Run the scenario's cycles, then judge every target against the"
        " thresholds the scenario file declares and against its expectation.",
        epilog=GATE_EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_scenario_options(gate)
    _add_gate_options(gate)

    soak = commands.add_parser(
        "soak",
        help="run cycles until stopped, serving metrics, /healthz and /readyz",
        description="Run cycles until SIGTERM or SIGINT, for Prometheus to scrape.",
        allow_abbrev=False,
    )
    _add_scenario_options(soak)
    _add_soak_options(soak)

    replay = commands.add_parser(
        "replay",
        help="run one cycle of a run again, from its seed and cycle index",
        description="Run cycle --cycle of --target with the schedule that --seed gave it.",
        allow_abbrev=False,
    )
    _add_scenario_options(replay)
    _add_replay_options(replay)
    return parser


def _add_scenario_options(command: argparse.ArgumentParser) -> None:
    """Add the options that every command builds its scenario from."""
    command.add_argument(
        "scenario", nargs="?", metavar="SCENARIO.toml",
        help="scenario file; options given on the command line override it",
    )  # fmt: skip
    what = command.add_argument_group("what to stress")
    what.add_argument(
        "--target", action="append", metavar="NAME",
        help="a target to stress; repeat for several (default: reference, polling,"
        " docker-1.12.1 and docker-1.13.0; see `stressor targets` for all)",
    )  # fmt: skip
    what.add_argument("--seed", type=int, help="run seed (default: a random one, printed)")
    what.add_argument("--concurrency", type=int, metavar="K", help="cycles at once (default: 16)")
    what.add_argument(
        "--backend", choices=["real", "fake"], default=None,
        help="real files with kernel inotify, or fake files with a simulated inotify, on"
        " which replays are exact (default: real)",
    )  # fmt: skip

    cycle = command.add_argument_group("each cycle")
    cycle.add_argument("--lines", type=int, metavar="N", help="lines per writer (default: 10)")
    cycle.add_argument(
        "--max-gap", type=float,  metavar="SECONDS",
        help="largest pause before each line, drawn uniformly (default: 0.0005)",
    )  # fmt: skip
    cycle.add_argument(
        "--no-catch-up", dest="catch_up", action="store_false", default=None,
        help="let the writer exit at once instead of waiting until the follower"
        " delivered its lines (the wait is bounded by --deadline)",
    )  # fmt: skip
    cycle.add_argument(
        "--settle", type=float,  metavar="SECONDS",
        help="pause after the last line (and the catch-up) before the writer exits"
        " (default: 0.001)",
    )  # fmt: skip
    cycle.add_argument(
        "--point", action="append", metavar="POINT",
        help="hook point for late writes: after-exit, before-remove or after-remove;"
        " repeat for several, one is drawn per cycle (default: all three)",
    )  # fmt: skip
    cycle.add_argument(
        "--fault-probability", type=float,  metavar="P",
        help="chance that a cycle gets a late write (default: 1)",
    )  # fmt: skip
    cycle.add_argument(
        "--deadline", type=float,  metavar="SECONDS",
        help="a follower without progress this long after the writer's exit is hung (default: 1)",
    )  # fmt: skip
    cycle.add_argument(
        "--max-wait", type=float,  metavar="SECONDS",
        help="a follower not done this long after the writer's exit is hung (default: 10)",
    )  # fmt: skip

    judging = command.add_argument_group("expectations and output")
    judging.add_argument(
        "--expect", action="append", default=[], metavar="NAME=OUTCOME",
        help="an outcome the target must show at least once (a positive control)",
    )  # fmt: skip
    judging.add_argument(
        "--allow", action="append", default=[], metavar="NAME=OUTCOME",
        help="an outcome the target may show without failing the run",
    )  # fmt: skip
    judging.add_argument(
        "--metrics-port", type=int,  metavar="PORT",
        help="serve Prometheus metrics, /healthz and /readyz on PORT, 0 for none"
        f" (default: {DEFAULT_METRICS_PORT})",
    )  # fmt: skip
    judging.add_argument(
        "--log-level", default=None, choices=["debug", "info", "warning", "error"],
        help="log level on standard error (default: warning for run, info for soak)",
    )  # fmt: skip
    judging.add_argument(
        "--log-format", default="text", choices=["text", "json"],
        help="log lines as text or as one JSON object each (default: text)",
    )  # fmt: skip


def _add_run_options(run: argparse.ArgumentParser) -> None:
    """Add the options of a bounded run."""
    group = run.add_argument_group("run length and output")
    how_long = group.add_mutually_exclusive_group()
    how_long.add_argument("--cycles", type=int, metavar="N", help="cycles per target")
    how_long.add_argument(
        "--duration", type=float, metavar="SECONDS",
        help="start new cycles for this many seconds (default: 12)",
    )  # fmt: skip
    group.add_argument("--report", metavar="FILE.json", help="write the JSON report here")
    group.add_argument("--quiet", action="store_true", help="print no live progress")
    group.add_argument(
        "--pushgateway", metavar="URL",
        help="push the final metrics to this Prometheus Pushgateway (job stressor)",
    )  # fmt: skip
    group.add_argument(
        "--textfile", metavar="FILE.prom",
        help="write the final metrics here for node_exporter's textfile collector",
    )  # fmt: skip
    group.add_argument(
        "--shrink-budget", type=float, default=0.0, metavar="SECONDS",
        help="after the run, shrink the first finding of each kind per target to the"
        " smallest schedule that still shows it, within this many seconds in all"
        " (default: 0, no shrinking)",
    )  # fmt: skip


GATE_EXIT_STATUSES = textwrap.dedent(
    """\
    exit status:
      0    every threshold and every target expectation passed
      1    a threshold or a target expectation failed, including a positive
           control that was not caught
      2    invalid usage or configuration, such as an invalid threshold
      3    the stressor itself failed, for example the directory for the cycle
           files could not be created, or a report could not be written
      128+N  signal N (SIGINT, SIGTERM) stopped the run; the reports cover the
           cycles that finished
    """
)


def _add_gate_options(gate: argparse.ArgumentParser) -> None:
    """Add the options of a gate: its length and its reports."""
    group = gate.add_argument_group("run length and reports")
    how_long = group.add_mutually_exclusive_group()
    how_long.add_argument("--cycles", type=int, metavar="N", help="cycles per target")
    how_long.add_argument(
        "--duration", type=float, metavar="SECONDS",
        help="start new cycles for this many seconds (default: the scenario's, else 12)",
    )  # fmt: skip
    group.add_argument("--junit", metavar="FILE.xml", help="write a JUnit XML report here")
    group.add_argument(
        "--report", metavar="FILE.json",
        help="write the JSON report, with a thresholds section, here",
    )  # fmt: skip
    group.add_argument(
        "--markdown", metavar="FILE.md",
        help="write a Markdown summary for a CI job to post here",
    )  # fmt: skip
    group.add_argument("--quiet", action="store_true", help="print no live progress")


def _add_soak_options(soak: argparse.ArgumentParser) -> None:
    """Add the options of an endless run."""
    group = soak.add_argument_group("service")
    group.add_argument(
        "--duration", type=float, metavar="SECONDS",
        help="stop after this many seconds (default: run until SIGTERM or SIGINT)",
    )  # fmt: skip
    group.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="ADDRESS",
        help="address to serve metrics on (default: 127.0.0.1; a container needs 0.0.0.0)",
    )  # fmt: skip
    group.add_argument(
        "--findings-dir", metavar="DIR",
        help="write one JSON file per finding, with its replay command, into DIR",
    )  # fmt: skip
    group.add_argument(
        "--max-findings", type=int, default=1000, metavar="N",
        help="keep at most N finding files, deleting the oldest (default: 1000)",
    )  # fmt: skip
    group.add_argument(
        "--textfile", metavar="FILE.prom",
        help="rewrite the metrics here every 30 s for node_exporter's textfile collector",
    )  # fmt: skip


def _add_replay_options(replay: argparse.ArgumentParser) -> None:
    """Add the options that pick the cycle to replay."""
    group = replay.add_argument_group("cycle to replay")
    group.add_argument("--cycle", type=int, required=True, metavar="C", help="cycle index")
    group.add_argument(
        "--shrink", action="store_true",
        help="on a finding, search for the smallest schedule that still shows it",
    )  # fmt: skip
    group.add_argument(
        "--shrink-budget", type=float, default=30.0, metavar="SECONDS",
        help="maximum seconds the shrinking may take (default: 30)",
    )  # fmt: skip
    group.add_argument(
        "--attempts", type=int, default=3, metavar="N",
        help="runs per smaller schedule before it counts as not failing (default: 3)",
    )  # fmt: skip
    group.add_argument(
        "--repeat", type=int, default=1, metavar="N",
        help="run the cycle N times and count the verdicts (default: 1)",
    )  # fmt: skip


# Scenario field -> parsed option attribute, for options that map one to one.
_OPTION_FIELDS = {
    "concurrency": "concurrency",
    "backend": "backend",
    "seed": "seed",
    "lines": "lines",
    "max_gap": "max_gap",
    "catch_up": "catch_up",
    "settle": "settle",
    "fault_probability": "fault_probability",
    "deadline": "deadline",
    "max_wait": "max_wait",
    "metrics_port": "metrics_port",
}


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """Build the run's scenario: defaults, then the scenario file, then the options.

    Raises:
        ConfigError: an option or a key of the file is invalid.
    """
    return scenario_and_file_from_args(args)[0]


def scenario_and_file_from_args(args: argparse.Namespace) -> tuple[Scenario, ScenarioFile]:
    """Build the run's scenario as ``scenario_from_args`` does; also return the file read.

    Raises:
        ConfigError: an option or a key of the file is invalid.
    """
    loaded = load_scenario_file(args.scenario) if args.scenario else ScenarioFile()
    settings = dict(loaded.settings)
    sources = dict(loaded.sources)

    def override(field: str, value: object) -> None:
        settings[field] = value
        sources.pop(field, None)

    for field, attribute in _OPTION_FIELDS.items():
        value = getattr(args, attribute)
        if value is not None:
            override(field, value)
    if args.target:
        override("targets", tuple(args.target))
    cycles = getattr(args, "cycles", None)
    duration = getattr(args, "duration", None)
    if cycles is not None:
        override("cycles", cycles)
        override("duration", None)
    elif duration is not None:
        override("duration", duration)
        override("cycles", None)
    elif "cycles" in settings and "duration" not in settings:
        settings["duration"] = None
    if args.command in ("soak", "replay"):
        settings["endless"] = True
        if cycles is None and duration is None:
            settings.pop("cycles", None)
            settings["duration"] = None
    if args.point:
        override("points", parse_points(args.point))
    if "seed" not in settings:
        settings["seed"] = new_seed()

    targets = tuple(settings.get("targets", DEFAULT_TARGETS))
    # A recipe named on the command line (--target tail-F) needs no scenario file.
    extra = dict(settings.get("extra_targets", {}))
    extra.update(recipes_named(targets, extra))
    if extra:
        settings["extra_targets"] = extra
    label = f"{args.scenario}: expect/allow" if args.scenario else "--expect/--allow"
    layers = [(loaded.expect, loaded.allow, label)]
    expect = [parse_outcome_option("--expect", text, extra) for text in args.expect]
    allow = [parse_outcome_option("--allow", text, extra) for text in args.allow]
    layers.append((expect, allow, "--expect/--allow"))
    settings["expectations"] = build_expectations(targets, layers, extra)
    return Scenario(**settings, sources=sources), loaded
