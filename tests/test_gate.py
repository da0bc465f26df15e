"""Tests of ``stressor gate``: thresholds, exit statuses, reports and progress."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio
from lxml import etree

from stressor.progress import Progress
from stressor.results import CycleResult
from stressor.scenario import ConfigError
from stressor.scenario_file import load_scenario_file
from stressor.summary import TargetSummary
from stressor.thresholds import (
    METRICS,
    check_threshold_targets,
    evaluate_thresholds,
    parse_check,
    read_thresholds,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = "examples/gate.toml"
SCHEMA = etree.XMLSchema(etree.parse(str(REPO / "tests" / "data" / "junit.xsd")))

# Seconds a gate run may take: far above the few seconds it needs.
RUN_LIMIT = 60.0

# A short gate: a hung cycle costs 0.2 s instead of the default 1 s.
SHORT = """
targets = ["reference", "docker-1.12.1"]
cycles = 40
seed = 11

[limits]
deadline = 0.2
max_wait = 0.4

[expect]
"docker-1.12.1" = ["hang"]

[allow]
"docker-1.12.1" = ["lost"]

[metrics]
port = 0
"""


def gate(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m stressor gate ARGS`` in ``cwd`` without progress output."""
    return subprocess.run(
        [sys.executable, "-m", "stressor", "gate", *args, "--quiet"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT,
        env=env,
    )


def write_scenario(directory: Path, thresholds: str, base: str = SHORT) -> Path:
    """Write a scenario file of ``base`` plus the ``thresholds`` tables; return its path."""
    path = directory / "gate.toml"
    path.write_text(base + textwrap.dedent(thresholds))
    return path


def reports(directory: Path) -> list[str]:
    """Return the options that write all three reports into ``directory``."""
    return [
        "--junit",
        str(directory / "gate.xml"),
        "--report",
        str(directory / "gate.json"),
        "--markdown",
        str(directory / "gate.md"),
    ]


def junit_cases(path: Path) -> dict[str, Any]:
    """Return the JUnit test cases by name."""
    root = etree.parse(str(path)).getroot()
    return {case.get("name"): case for case in root.iter("testcase")}


# --- the example gate: passes, with every report ------------------------------------


@pytest.fixture(scope="module")
def example_gate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    directory = tmp_path_factory.mktemp("example-gate")
    result = gate(REPO, EXAMPLE, *reports(directory))
    return result, directory


def test_example_gate_exits_0(example_gate: tuple[Any, Path]) -> None:
    result, _ = example_gate
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_gate_prints_verdict(example_gate: tuple[Any, Path]) -> None:
    result, _ = example_gate
    assert "gate passed: 0 of 9 checks failed" in result.stdout


def test_example_junit_matches_schema(example_gate: tuple[Any, Path]) -> None:
    _, directory = example_gate
    document = etree.parse(str(directory / "gate.xml"))
    assert SCHEMA.validate(document), SCHEMA.error_log


def test_example_junit_has_one_suite(example_gate: tuple[Any, Path]) -> None:
    _, directory = example_gate
    root = etree.parse(str(directory / "gate.xml")).getroot()
    assert root.tag == "testsuites"
    assert len(root.findall("testsuite")) == 1


def test_example_junit_case_per_target_and_check(example_gate: tuple[Any, Path]) -> None:
    _, directory = example_gate
    names = set(junit_cases(directory / "gate.xml"))
    assert names == {
        "reference: expectation: no finding",
        "reference: window_hits >= 100",
        "reference: hangs == 0",
        "reference: lost == 0",
        "reference: lines_lost == 0",
        "reference: exit_latency.p99 < 0.25",
        "reference: delivery_latency.p99 < 0.1",
        "docker-1.12.1: expectation: must show hang; may show lost",
        "docker-1.12.1: window_hits >= 100",
    }


def test_example_junit_counts(example_gate: tuple[Any, Path]) -> None:
    _, directory = example_gate
    suite = etree.parse(str(directory / "gate.xml")).getroot().find("testsuite")
    assert suite.get("tests") == "9"
    assert suite.get("failures") == "0"
    assert suite.find("testcase/failure") is None


def test_example_json_keeps_run_report(example_gate: tuple[Any, Path]) -> None:
    _, directory = example_gate
    report = json.loads((directory / "gate.json").read_text())
    assert set(report["targets"]) == {"reference", "docker-1.12.1"}
    assert report["targets"]["docker-1.12.1"]["findings"]["hang"] > 0
    assert report["passed"] is True


def test_example_json_thresholds_section(example_gate: tuple[Any, Path]) -> None:
    _, directory = example_gate
    thresholds = json.loads((directory / "gate.json").read_text())["thresholds"]
    assert len(thresholds) == 7
    assert all(entry["passed"] for entry in thresholds)
    first = thresholds[0]
    assert first["check"] == "window_hits >= 100"
    assert first["source"] == f"{EXAMPLE}: thresholds[0]"
    assert first["value"] >= 100


def test_example_json_hangs_carry_replay(example_gate: tuple[Any, Path]) -> None:
    _, directory = example_gate
    report = json.loads((directory / "gate.json").read_text())
    hang = report["targets"]["docker-1.12.1"]["hangs"][0]
    assert hang["replay"].startswith(f"stressor replay {EXAMPLE} --target docker-1.12.1 ")


def test_example_markdown_summary(example_gate: tuple[Any, Path]) -> None:
    _, directory = example_gate
    text = (directory / "gate.md").read_text()
    assert text.startswith("## stressor gate passed\n")
    assert "| reference | hangs == 0 | hangs is 0 | pass |" in text
    assert "FAIL" not in text


def test_example_markdown_counts_table(example_gate: tuple[Any, Path]) -> None:
    _, directory = example_gate
    text = (directory / "gate.md").read_text()
    assert "| target | cycles | ok | hang |" in text
    assert "| reference | 300 | 300 |" in text


# --- a failing threshold: exit 1, with replay commands --------------------------------


@pytest.fixture(scope="module")
def failing_gate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    directory = tmp_path_factory.mktemp("failing-gate")
    scenario = write_scenario(
        directory,
        """
        [[thresholds]]
        target = "*"
        check = "hangs == 0"
        """,
    )
    return gate(directory, scenario.name, *reports(directory)), directory


def test_failing_threshold_exits_1(failing_gate: tuple[Any, Path]) -> None:
    result, _ = failing_gate
    assert result.returncode == 1, result.stdout + result.stderr


def test_failing_threshold_prints_replay(failing_gate: tuple[Any, Path]) -> None:
    result, _ = failing_gate
    assert "FAIL  docker-1.12.1: hangs == 0: hangs is " in result.stdout
    assert "replay: stressor replay gate.toml --target docker-1.12.1 --seed 11" in result.stdout


def test_failing_junit_matches_schema(failing_gate: tuple[Any, Path]) -> None:
    _, directory = failing_gate
    document = etree.parse(str(directory / "gate.xml"))
    assert SCHEMA.validate(document), SCHEMA.error_log


def test_failing_junit_failure_has_replay(failing_gate: tuple[Any, Path]) -> None:
    _, directory = failing_gate
    case = junit_cases(directory / "gate.xml")["docker-1.12.1: hangs == 0"]
    failure = case.find("failure")
    assert failure.get("type") == "threshold"
    assert "which fails hangs == 0" in failure.get("message")
    assert "replay: stressor replay gate.toml --target docker-1.12.1" in failure.text


def test_failing_junit_counts_one_failure(failing_gate: tuple[Any, Path]) -> None:
    _, directory = failing_gate
    suite = etree.parse(str(directory / "gate.xml")).getroot().find("testsuite")
    assert suite.get("tests") == "4"
    assert suite.get("failures") == "1"


def test_failing_json_threshold_entry(failing_gate: tuple[Any, Path]) -> None:
    _, directory = failing_gate
    report = json.loads((directory / "gate.json").read_text())
    entries = {entry["target"]: entry for entry in report["thresholds"]}
    assert report["passed"] is False
    assert entries["reference"]["passed"] is True
    assert entries["reference"]["replay"] is None
    assert entries["docker-1.12.1"]["passed"] is False
    assert entries["docker-1.12.1"]["replay"].startswith("stressor replay ")


def test_failing_json_keeps_expectation_verdict(failing_gate: tuple[Any, Path]) -> None:
    _, directory = failing_gate
    report = json.loads((directory / "gate.json").read_text())
    assert report["targets"]["docker-1.12.1"]["passed"] is True


def test_failing_markdown_lists_failure(failing_gate: tuple[Any, Path]) -> None:
    _, directory = failing_gate
    text = (directory / "gate.md").read_text()
    assert text.startswith("## stressor gate FAILED\n")
    assert "| docker-1.12.1 | hangs == 0 |" in text
    assert "### Failures" in text
    assert "  replay: `stressor replay gate.toml --target docker-1.12.1" in text


# --- positive controls and the window ----------------------------------------------


def test_uncaught_positive_control_exits_1(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, '[[thresholds]]\ncheck = "crash == 0"\n')
    # With no line written at all, no event is pending when the writer exits, so
    # docker-1.12.1 has nothing to deadlock on.
    quiet = ["--lines", "0", "--fault-probability", "0"]
    result = gate(tmp_path, scenario.name, *quiet, "--junit", "gate.xml")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "expected hang never happened" in result.stdout
    name = "docker-1.12.1: expectation: must show hang; may show lost"
    failure = junit_cases(tmp_path / "gate.xml")[name].find("failure")
    assert failure.get("type") == "expectation"


def test_window_threshold_fails_without_window(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path,
        """
        [[thresholds]]
        target = "reference"
        check = "window_hits >= 1"
        """,
        base=SHORT.replace('"docker-1.12.1" = ["hang"]', ""),
    )
    result = gate(tmp_path, scenario.name, "--fault-probability", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  reference: window_hits >= 1: window_hits is 0, which fails" in result.stdout


def test_run_ignores_thresholds(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, '[[thresholds]]\ncheck = "hangs == 0"\n')
    result = subprocess.run(
        [sys.executable, "-m", "stressor", "run", scenario.name, "--quiet", "--cycles", "5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- exit status 2: invalid usage or configuration -----------------------------------


@pytest.mark.parametrize(
    ("thresholds", "expected"),
    [
        ('[[thresholds]]\ncheck = "hang == 0"\n', "did you mean 'hangs'?"),
        ('[[thresholds]]\ntarget = "polling"\ncheck = "hangs == 0"\n', "not part of the run"),
        ("", "declare at least one"),
    ],
    ids=["unknown-metric", "target-not-in-run", "no-thresholds"],
)
def test_invalid_gate_exits_2(tmp_path: Path, thresholds: str, expected: str) -> None:
    scenario = write_scenario(tmp_path, thresholds)
    result = gate(tmp_path, scenario.name)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_gate_without_scenario_exits_2(tmp_path: Path) -> None:
    result = gate(tmp_path)
    assert result.returncode == 2
    assert "SCENARIO" in result.stderr


def test_gate_unwritable_junit_exits_2(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, '[[thresholds]]\ncheck = "hangs == 0"\n')
    result = gate(tmp_path, scenario.name, "--junit", str(tmp_path / "missing" / "gate.xml"))
    assert result.returncode == 2
    assert result.stderr.startswith("stressor: error: --junit: invalid value ")


def test_gate_help_documents_exit_statuses(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stressor", "gate", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT,
    )
    for status in ("  0 ", "  1 ", "  2 ", "  3 "):
        assert status in result.stdout


# --- exit status 3: the stressor itself failed ---------------------------------------


def test_missing_tmpdir_exits_3(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, '[[thresholds]]\ncheck = "hangs == 0"\n')
    env = {**os.environ, "TMPDIR": str(tmp_path / "missing")}
    result = gate(tmp_path, scenario.name, "--junit", "gate.xml", env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.startswith("stressor: error: the stressor itself failed: ")
    assert str(tmp_path / "missing") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "gate.xml").exists()


def test_run_missing_tmpdir_is_one_line(tmp_path: Path) -> None:
    # `stressor run` documents no status 3, so the same failure is status 2 there.
    env = {**os.environ, "TMPDIR": str(tmp_path / "missing")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stressor",
            "run",
            "--quiet",
            "--cycles",
            "1",
            "--metrics-port",
            "0",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("stressor: error: [Errno 2] No such file or directory: ")
    assert "Traceback" not in result.stderr


# --- thresholds: parsing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("hangs == 0", ("hangs", "==", 0.0)),
        ("lost!=1", ("lost", "!=", 1.0)),
        ("  window_hits >= 100 ", ("window_hits", ">=", 100.0)),
        ("exit_latency.p99 < 0.2", ("exit_latency.p99", "<", 0.2)),
        ("delivery_latency.max <= 1e-3", ("delivery_latency.max", "<=", 0.001)),
        ("cycles > .5", ("cycles", ">", 0.5)),
    ],
)
def test_parse_check_valid(text: str, parsed: tuple[str, str, float]) -> None:
    assert parse_check("check", text) == parsed


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("hangs = 0", "unknown operator '='"),
        ("hangs =< 0", "unknown operator '=<'"),
        ("hang == 0", "did you mean 'hangs'?"),
        ("exit_latency.p95 < 0.2", "unknown metric 'exit_latency.p95'"),
        ("exit_latency.p99 < 200ms", "'200ms' is not a number; write the limit in seconds"),
        ("hangs == zero", "'zero' is not a number"),
        ("hangs == nan", "'nan' is not a number"),
        ("hangs == 0 or 1", "write METRIC OPERATOR NUMBER"),
        ("__import__('os') == 0", "write METRIC OPERATOR NUMBER"),
        ("hangs", "write METRIC OPERATOR NUMBER"),
        ("", "write METRIC OPERATOR NUMBER"),
        (7, "write METRIC OPERATOR NUMBER"),
    ],
)
def test_parse_check_invalid(text: object, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_check("gate.toml: thresholds[0].check", text)
    message = str(caught.value)
    assert message.startswith(f"gate.toml: thresholds[0].check: invalid value {text!r}: ")
    assert fix in message


@pytest.mark.parametrize(
    ("value", "key", "fix"),
    [
        ({"thresholds": 1}, "thresholds", "[[thresholds]] table"),
        ({"thresholds": [{"target": "*"}]}, "thresholds[0].check", "missing"),
        (
            {"thresholds": [{"check": "hangs == 0", "name": "x"}]},
            "thresholds[0].name",
            "unknown key",
        ),
        ({"thresholds": [{"check": "hangs == 0", "target": 3}]}, "thresholds[0].target", '"*"'),
        (
            {"thresholds": [{"check": "hangs == 0"}, {"check": "lost ~ 0"}]},
            "thresholds[1].check",
            "write METRIC",
        ),
    ],
)
def test_read_thresholds_invalid(value: dict[str, Any], key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_thresholds("gate.toml", value["thresholds"])
    assert str(caught.value).startswith(f"gate.toml: {key}: invalid value ")
    assert fix in str(caught.value)


def test_read_thresholds_defaults_to_all_targets() -> None:
    (threshold,) = read_thresholds("gate.toml", [{"check": "hangs==0"}])
    assert threshold.target == "*"
    assert threshold.check == "hangs == 0"
    assert threshold.source == "gate.toml: thresholds[0]"


def test_scenario_file_reads_thresholds(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, '[[thresholds]]\ntarget = "reference"\ncheck = "lost < 2"\n')
    (threshold,) = load_scenario_file(str(path)).thresholds
    assert (threshold.target, threshold.metric, threshold.operator) == ("reference", "lost", "<")
    assert threshold.limit == 2.0


def test_scenario_file_threshold_error_names_file(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, '[[thresholds]]\ncheck = "losts == 0"\n')
    with pytest.raises(ConfigError) as caught:
        load_scenario_file(str(path))
    assert str(caught.value).startswith(f"{path}: thresholds[0].check: invalid value 'losts == 0'")


def test_threshold_target_not_in_run_raises() -> None:
    thresholds = read_thresholds("gate.toml", [{"target": "polling", "check": "hangs == 0"}])
    with pytest.raises(ConfigError, match=r"thresholds\[0\]\.target: invalid value 'polling'"):
        check_threshold_targets(thresholds, ["reference"])


# --- thresholds: judging ---------------------------------------------------------------


def cycle(target: str, index: int, **changes: Any) -> CycleResult:
    """Return a passing cycle result of ``target``, changed by ``changes``."""
    fields: dict[str, Any] = {
        "target": target,
        "seed": 1,
        "cycle": index,
        "findings": frozenset(),
        "faults": ("late-write@before-remove",),
        "fault_kinds": ("late-write",),
        "window_hit": True,
        "lines_written": 10,
        "lines_read": 10,
        "lines_lost": 0,
        "lines_duplicated": 0,
        "lines_reordered": 0,
        "lines_torn": 0,
        "delivery_latencies": (0.001,) * 10,
        "exit_latency": 0.01,
    }
    fields.update(changes)
    return CycleResult(**fields)


def summary_of(target: str, *results: CycleResult) -> TargetSummary:
    summary = TargetSummary(target)
    for result in results:
        summary.add(result)
    return summary


def judge_one(check: str, summary: TargetSummary) -> tuple[bool, str]:
    thresholds = read_thresholds("gate.toml", [{"check": check}])
    (result,) = evaluate_thresholds(thresholds, {summary.target: summary})
    return result.passed, result.message


def test_window_hits_threshold_fails_below() -> None:
    summary = summary_of("a", cycle("a", 0, window_hit=False), cycle("a", 1))
    assert judge_one("window_hits >= 2", summary) == (
        False,
        "window_hits is 1, which fails window_hits >= 2",
    )


def test_hangs_threshold_counts_cycles() -> None:
    hung = cycle("a", 1, findings=frozenset({"hang"}), exit_latency=None)
    summary = summary_of("a", cycle("a", 0), hung, hung)
    assert judge_one("hangs <= 2", summary) == (True, "hangs is 2")
    assert judge_one("hangs < 2", summary)[0] is False


def test_latency_threshold_in_seconds() -> None:
    summary = summary_of("a", cycle("a", 0, exit_latency=0.3))
    assert judge_one("exit_latency.max < 0.2", summary) == (
        False,
        "exit_latency.max is 0.3 s, which fails exit_latency.max < 0.2",
    )


def test_latency_threshold_fails_without_samples() -> None:
    hung = cycle("a", 0, findings=frozenset({"hang"}), exit_latency=None)
    passed, message = judge_one("exit_latency.p99 < 1", summary_of("a", hung))
    assert passed is False
    assert "no exit latency was measured" in message


def test_threshold_fails_without_cycles() -> None:
    passed, message = judge_one("hangs == 0", TargetSummary("a"))
    assert passed is False
    assert "no cycle of a finished" in message


def test_all_targets_threshold_judges_each() -> None:
    thresholds = read_thresholds("gate.toml", [{"target": "*", "check": "lost == 0"}])
    lossy = cycle("b", 0, findings=frozenset({"lost"}), lines_lost=1)
    summaries = {"a": summary_of("a", cycle("a", 0)), "b": summary_of("b", lossy)}
    results = evaluate_thresholds(thresholds, summaries)
    assert [(r.target, r.passed) for r in results] == [("a", True), ("b", False)]


def test_every_metric_reads_a_summary() -> None:
    summary = summary_of("a", cycle("a", 0))
    for metric in METRICS.values():
        assert metric.read(summary) is not None, metric.name


# --- progress --------------------------------------------------------------------------


class TerminalStream(io.StringIO):
    """A stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


async def test_progress_bar_by_cycles() -> None:
    progress = Progress(TerminalStream(), total_cycles=4)
    progress._started = trio.current_time()
    for index in range(3):
        progress.cycle_started("a")
        progress.cycle_finished(cycle("a", index))
    line = progress.line()
    assert line.startswith("[###############-----]")
    assert " 75%  ETA " in line
    assert "cycles 3/4  window 3" in line


async def test_progress_bar_by_duration(autojump_clock: trio.testing.MockClock) -> None:
    progress = Progress(TerminalStream(), duration=10.0)
    progress._started = trio.current_time()
    await trio.sleep(4.0)
    line = progress.line()
    assert " 40%  ETA 0:06" in line
    assert "cycles 0  window 0" in line


async def test_progress_plain_lines_without_terminal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stream = io.StringIO()
    progress = Progress(stream, plain_interval=5.0, total_cycles=10)
    with trio.move_on_after(11.0):
        await progress.run()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[   5.0s]  0%  ETA ?  cycles 0/10  window 0")
    assert "#" not in lines[0]
