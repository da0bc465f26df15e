"""Tests of the command line, each in its own ``python -m stressor`` process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

TARGETS = ["reference", "polling", "docker-1.12.1", "docker-1.13.0"]
OUTCOMES = ["ok", "hang", "lost", "duplicate", "reorder", "torn", "crash", "leak"]
QUANTILE_KEYS = {"p50", "p90", "p99", "max"}

# Seconds a short run may take: far above the second or so it needs.
SHORT_RUN_LIMIT = 60.0

# Short runs: one bad cycle hangs for 0.3 s rather than the default 1 s.
SHORT_LIMITS = ["--deadline", "0.3", "--max-wait", "0.6"]


def run_stressor(
    cwd: Path, *args: str, timeout: float = SHORT_RUN_LIMIT
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m stressor ARGS`` in ``cwd`` and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "stressor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``stressor run`` without a metrics endpoint, unless ``args`` set ``--metrics-port``."""
    return run_stressor(cwd, "run", "--metrics-port", "0", *args)


def table_rows(stdout: str) -> dict[str, dict[str, str]]:
    """Parse the summary table into one dict per target, keyed by column name."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("target "))
    columns = re.split(r"\s{2,}", lines[start].strip())
    rows = {}
    for line in lines[start + 1 :]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != len(columns):
            break
        rows[cells[0]] = dict(zip(columns, cells, strict=True))
    return rows


# --- stressor targets ---------------------------------------------------------------


def test_targets_exits_0(tmp_path: Path) -> None:
    result = run_stressor(tmp_path, "targets")
    assert result.returncode == 0


def test_targets_lists_builtin_names(tmp_path: Path) -> None:
    result = run_stressor(tmp_path, "targets")
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert names[:5] == [*TARGETS, "docker-17.12.0"]
    assert names[5:] == ["tail-F", "tail-f-descriptor", "tail-f-pid", "inotifywait"]


# --- the default run ----------------------------------------------------------------


@pytest.fixture(scope="module")
def default_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``stressor run`` exactly as a user would, without any option, once."""
    cwd = tmp_path_factory.mktemp("default-run")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stressor", "run"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


def test_run_default_exits_0(default_run: tuple[subprocess.CompletedProcess[str], float]) -> None:
    result, _ = default_run
    assert result.returncode == 0, result.stderr


def test_run_default_takes_10_to_20_seconds(
    default_run: tuple[subprocess.CompletedProcess[str], float],
) -> None:
    _, elapsed = default_run
    assert 10.0 <= elapsed <= 20.0


def test_run_default_shows_progress(
    default_run: tuple[subprocess.CompletedProcess[str], float],
) -> None:
    result, _ = default_run
    assert re.search(r"cycles [1-9]\d*", result.stderr)


def test_run_default_has_no_traceback(
    default_run: tuple[subprocess.CompletedProcess[str], float],
) -> None:
    result, _ = default_run
    assert "Traceback" not in result.stderr


def test_run_default_table_has_every_target(
    default_run: tuple[subprocess.CompletedProcess[str], float],
) -> None:
    result, _ = default_run
    assert list(table_rows(result.stdout)) == TARGETS


@pytest.mark.parametrize("target", TARGETS)
def test_run_default_hits_window(
    default_run: tuple[subprocess.CompletedProcess[str], float], target: str
) -> None:
    result, _ = default_run
    assert int(table_rows(result.stdout)[target]["window"]) > 0


def test_run_default_docker_1121_hangs(
    default_run: tuple[subprocess.CompletedProcess[str], float],
) -> None:
    result, _ = default_run
    assert int(table_rows(result.stdout)["docker-1.12.1"]["hang"]) > 0


def test_run_default_docker_1130_never_hangs(
    default_run: tuple[subprocess.CompletedProcess[str], float],
) -> None:
    result, _ = default_run
    assert int(table_rows(result.stdout)["docker-1.13.0"]["hang"]) == 0


@pytest.mark.parametrize("target", TARGETS)
def test_run_default_every_target_passes(
    default_run: tuple[subprocess.CompletedProcess[str], float], target: str
) -> None:
    result, _ = default_run
    assert table_rows(result.stdout)[target]["result"] == "pass"


# --- expectations and exit statuses -------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status"),
    [
        pytest.param(["--target", "reference"], 0, id="reference-clean"),
        pytest.param(
            ["--target", "docker-1.12.1", "--expect", "docker-1.12.1=hang",
             "--allow", "docker-1.12.1=lost"],
            0,
            id="docker-1.12.1-expected-hang",
        ),
        pytest.param(
            ["--target", "docker-1.12.1", "--expect", "docker-1.12.1=lost",
             "--point", "before-remove"],
            1,
            id="docker-1.12.1-hang-not-allowed",
        ),
        pytest.param(
            ["--target", "docker-1.13.0", "--allow", "docker-1.13.0=hang",
             "--expect", "docker-1.13.0=hang", "--allow", "docker-1.13.0=lost"],
            1,
            id="docker-1.13.0-never-hangs",
        ),
        pytest.param(
            ["--target", "reference", "--expect", "reference=hang"], 1, id="reference-never-hangs"
        ),
    ],
)  # fmt: skip
def test_run_expectation_exit_status(tmp_path: Path, args: list[str], status: int) -> None:
    result = run(tmp_path, "--cycles", "4", "--seed", "11", "--quiet", *SHORT_LIMITS, *args)
    assert result.returncode == status, result.stdout + result.stderr


def test_run_names_missing_expected_outcome(tmp_path: Path) -> None:
    result = run(
        tmp_path, "--cycles", "4", "--seed", "11", "--quiet", *SHORT_LIMITS,
        "--target", "docker-1.13.0", "--expect", "docker-1.13.0=hang",
        "--allow", "docker-1.13.0=lost",
    )  # fmt: skip
    assert "expected hang never happened" in result.stdout


def test_run_names_unallowed_hang(tmp_path: Path) -> None:
    result = run(
        tmp_path, "--cycles", "4", "--seed", "11", "--quiet", *SHORT_LIMITS,
        "--target", "docker-1.12.1", "--expect", "docker-1.12.1=lost", "--point", "before-remove",
    )  # fmt: skip
    assert "docker-1.12.1: hang in" in result.stdout


# --- invalid usage ------------------------------------------------------------------

# (case, arguments after `stressor run --metrics-port 0`, option named, value named)
BAD_USAGE = [
    ("unknown-target", "--target nope --cycles 1", "--target", "nope"),
    ("cycles-0", "--cycles 0", "--cycles", "0"),
    ("cycles-abc", "--cycles abc", "--cycles", "abc"),
    ("duration-negative", "--duration -1", "--duration", "-1"),
    ("concurrency-0", "--cycles 1 --concurrency 0", "--concurrency", "0"),
    ("concurrency-huge", "--cycles 1 --concurrency 100000", "--concurrency", "100000"),
    (
        "concurrency-inotify",
        "--target reference --cycles 1 --concurrency 4000",
        "--concurrency",
        "4000",
    ),
    ("cycles-and-duration", "--cycles 1 --duration 5", "--duration", "--cycles"),
    ("expect-no-outcome", "--cycles 1 --expect foo", "--expect", "foo"),
    ("expect-bad-outcome", "--cycles 1 --expect reference=bogus", "--expect", "reference=bogus"),
    (
        "expect-target-not-in-run",
        "--target reference --cycles 1 --expect docker-1.12.1=hang",
        "--expect",
        "docker-1.12.1=hang",
    ),
    ("deadline-0", "--cycles 1 --deadline 0", "--deadline", "0"),
    ("max-wait-below-deadline", "--cycles 1 --deadline 2 --max-wait 0.5", "--max-wait", "0.5"),
    ("unknown-point", "--cycles 1 --point nowhere", "--point", "nowhere"),
    ("metrics-port-70000", "--cycles 1 --metrics-port 70000", "--metrics-port", "70000"),
    ("seed-negative", "--target reference --cycles 1 --seed -1", "--seed", "-1"),
    (
        "report-missing-directory",
        "--target reference --cycles 1 --report missing/report.json",
        "--report",
        "missing/report.json",
    ),
]


@pytest.fixture(
    scope="module", params=[case[1:] for case in BAD_USAGE], ids=[case[0] for case in BAD_USAGE]
)
def bad_usage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], str, str]:
    """Run one invalid command line once and return its result, option and value."""
    args, option, value = request.param
    return run(tmp_path_factory.mktemp("bad-usage"), *args.split()), option, value


def test_run_bad_usage_exits_2(
    bad_usage: tuple[subprocess.CompletedProcess[str], str, str],
) -> None:
    result, _, _ = bad_usage
    assert result.returncode == 2, result.stdout + result.stderr


def test_run_bad_usage_one_line(
    bad_usage: tuple[subprocess.CompletedProcess[str], str, str],
) -> None:
    result, _, _ = bad_usage
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_run_bad_usage_names_option(
    bad_usage: tuple[subprocess.CompletedProcess[str], str, str],
) -> None:
    result, option, _ = bad_usage
    assert option in result.stderr, result.stderr


def test_run_bad_usage_names_value(
    bad_usage: tuple[subprocess.CompletedProcess[str], str, str],
) -> None:
    result, _, value = bad_usage
    assert value in result.stderr, result.stderr


def test_run_bad_usage_no_traceback(
    bad_usage: tuple[subprocess.CompletedProcess[str], str, str],
) -> None:
    result, _, _ = bad_usage
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def taken_port_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run with ``--metrics-port`` set to a port a socket of the test listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        cwd = tmp_path_factory.mktemp("taken-port")
        result = run(cwd, "--target", "reference", "--cycles", "1", "--metrics-port", str(port))
    return result, port


def test_run_taken_metrics_port_exits_2(
    taken_port_run: tuple[subprocess.CompletedProcess[str], int],
) -> None:
    result, _ = taken_port_run
    assert result.returncode == 2, result.stderr


def test_run_taken_metrics_port_one_line(
    taken_port_run: tuple[subprocess.CompletedProcess[str], int],
) -> None:
    result, _ = taken_port_run
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_run_taken_metrics_port_names_option(
    taken_port_run: tuple[subprocess.CompletedProcess[str], int],
) -> None:
    result, _ = taken_port_run
    assert "--metrics-port" in result.stderr


def test_run_taken_metrics_port_names_value(
    taken_port_run: tuple[subprocess.CompletedProcess[str], int],
) -> None:
    result, port = taken_port_run
    assert str(port) in result.stderr


def test_run_taken_metrics_port_no_traceback(
    taken_port_run: tuple[subprocess.CompletedProcess[str], int],
) -> None:
    result, _ = taken_port_run
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def unknown_flag_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """Run with ``--cycle``, a misspelling of ``--cycles``."""
    return run(tmp_path_factory.mktemp("unknown-flag"), "--target", "reference", "--cycle", "5")


def test_run_unknown_flag_exits_2(unknown_flag_run: subprocess.CompletedProcess[str]) -> None:
    assert unknown_flag_run.returncode == 2, unknown_flag_run.stdout + unknown_flag_run.stderr


def test_run_unknown_flag_one_line(unknown_flag_run: subprocess.CompletedProcess[str]) -> None:
    assert len(unknown_flag_run.stderr.splitlines()) == 1, unknown_flag_run.stderr


def test_run_unknown_flag_names_it(unknown_flag_run: subprocess.CompletedProcess[str]) -> None:
    assert re.search(r"--cycle\b(?!s)", unknown_flag_run.stderr), unknown_flag_run.stderr


def test_run_unknown_flag_suggests_cycles(
    unknown_flag_run: subprocess.CompletedProcess[str],
) -> None:
    assert "did you mean --cycles" in unknown_flag_run.stderr


# --- the JSON report ----------------------------------------------------------------


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Run all targets for a few cycles and return the JSON report."""
    cwd = tmp_path_factory.mktemp("report-run")
    result = run(
        cwd, "--cycles", "4", "--seed", "5", "--quiet", "--report", "report.json", *SHORT_LIMITS
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((cwd / "report.json").read_text())


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("seed", int),
        ("started_at", str),
        ("finished_at", str),
        ("stressor_version", str),
        ("passed", bool),
        ("interrupted", bool),
        ("targets", dict),
    ],
)
def test_report_top_level_field(report: dict[str, object], key: str, kind: type) -> None:
    assert isinstance(report[key], kind)


def test_report_seed_is_run_seed(report: dict[str, object]) -> None:
    assert report["seed"] == 5


def test_report_version_is_package_version(report: dict[str, object]) -> None:
    import stressor

    assert report["stressor_version"] == stressor.__version__


def test_report_passed(report: dict[str, object]) -> None:
    assert report["passed"] is True


def test_report_not_interrupted(report: dict[str, object]) -> None:
    assert report["interrupted"] is False


def test_report_times_ordered(report: dict[str, object]) -> None:
    from datetime import datetime

    started = datetime.fromisoformat(str(report["started_at"]))
    finished = datetime.fromisoformat(str(report["finished_at"]))
    assert started <= finished


def test_report_has_every_target(report: dict[str, object]) -> None:
    assert list(report["targets"]) == TARGETS  # type: ignore[arg-type]


@pytest.mark.parametrize("target", TARGETS)
def test_report_target_cycles(report: dict[str, object], target: str) -> None:
    entry = report["targets"][target]  # type: ignore[index]
    assert entry["cycles"] == 4


@pytest.mark.parametrize("target", TARGETS)
def test_report_target_outcome_keys(report: dict[str, object], target: str) -> None:
    entry = report["targets"][target]  # type: ignore[index]
    assert set(entry["outcomes"]) == set(OUTCOMES)


@pytest.mark.parametrize("target", TARGETS)
def test_report_outcome_counts_are_ints(report: dict[str, object], target: str) -> None:
    entry = report["targets"][target]  # type: ignore[index]
    assert all(type(count) is int for count in entry["outcomes"].values())


@pytest.mark.parametrize("target", TARGETS)
def test_report_target_outcomes_add_up(report: dict[str, object], target: str) -> None:
    entry = report["targets"][target]  # type: ignore[index]
    assert sum(entry["outcomes"].values()) == entry["cycles"]


@pytest.mark.parametrize("target", TARGETS)
def test_report_target_window_hits(report: dict[str, object], target: str) -> None:
    entry = report["targets"][target]  # type: ignore[index]
    assert type(entry["window_hits"]) is int


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("latency", ["delivery_latency_seconds", "exit_latency_seconds"])
def test_report_target_latency_keys(report: dict[str, object], target: str, latency: str) -> None:
    entry = report["targets"][target]  # type: ignore[index]
    assert set(entry[latency]) == QUANTILE_KEYS


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("latency", ["delivery_latency_seconds", "exit_latency_seconds"])
def test_report_target_latency_values(report: dict[str, object], target: str, latency: str) -> None:
    values = report["targets"][target][latency]  # type: ignore[index]
    assert all(isinstance(values[key], float) and values[key] >= 0 for key in QUANTILE_KEYS)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("latency", ["delivery_latency_seconds", "exit_latency_seconds"])
def test_report_target_latency_ordered(
    report: dict[str, object], target: str, latency: str
) -> None:
    values = report["targets"][target][latency]  # type: ignore[index]
    assert values["p50"] <= values["p90"] <= values["p99"] <= values["max"]


def test_report_docker_1121_hangs_listed(report: dict[str, object]) -> None:
    entry = report["targets"]["docker-1.12.1"]  # type: ignore[index]
    assert len(entry["hangs"]) == entry["findings"]["hang"] > 0


def test_report_hang_seed_is_run_seed(report: dict[str, object]) -> None:
    hangs = report["targets"]["docker-1.12.1"]["hangs"]  # type: ignore[index]
    assert all(hang["seed"] == 5 for hang in hangs)


def test_report_hang_cycle_is_index(report: dict[str, object]) -> None:
    hangs = report["targets"]["docker-1.12.1"]["hangs"]  # type: ignore[index]
    assert all(type(hang["cycle"]) is int and 0 <= hang["cycle"] < 4 for hang in hangs)


def test_report_hang_cycles_distinct(report: dict[str, object]) -> None:
    hangs = report["targets"]["docker-1.12.1"]["hangs"]  # type: ignore[index]
    cycles = [hang["cycle"] for hang in hangs]
    assert len(set(cycles)) == len(cycles)


# --- signals ------------------------------------------------------------------------


def _stressor_temp_dirs(directory: Path) -> set[str]:
    return {name for name in os.listdir(directory) if name.startswith("stressor-")}


def _wait_for_progress(stderr: Path, limit: float) -> None:
    """Wait until the progress line shows finished cycles, or ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if re.search(r"cycles [1-9]", stderr.read_text()):
            return
        time.sleep(0.1)


@pytest.fixture(scope="module", params=[signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def stopped_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    """Start a 60-second run, send the signal after about 3 s and return what followed."""
    number = request.param
    cwd = tmp_path_factory.mktemp("stopped-run")
    # A private TMPDIR, so other stressor processes on the machine cannot interfere.
    private_tmp = tmp_path_factory.mktemp("stopped-run-tmp")
    temp_dirs_before = _stressor_temp_dirs(private_tmp)
    with (cwd / "stdout").open("w") as out, (cwd / "stderr").open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "stressor", "run", "--duration", "60",
             "--report", "report.json", "--metrics-port", "0"],
            cwd=cwd,
            stdout=out,
            stderr=err,
            start_new_session=True,
            env={**os.environ, "TMPDIR": str(private_tmp)},
        )  # fmt: skip
        try:
            _wait_for_progress(cwd / "stderr", 3.0)
            process.send_signal(number)
            sent = time.monotonic()
            try:
                status = process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                status = None
            stopped_after = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    try:
        os.killpg(process.pid, 0)
        strays = True
    except ProcessLookupError:
        strays = False
    report_path = cwd / "report.json"
    return {
        "signal": number,
        "status": status,
        "stopped_after": stopped_after,
        "strays": strays,
        "new_temp_dirs": _stressor_temp_dirs(private_tmp) - temp_dirs_before,
        "report_text": report_path.read_text() if report_path.exists() else None,
        "stderr": (cwd / "stderr").read_text(),
    }


def test_signal_exit_status(stopped_run: dict[str, object]) -> None:
    assert stopped_run["status"] == 128 + stopped_run["signal"], stopped_run["stderr"]


def test_signal_stops_within_5_seconds(stopped_run: dict[str, object]) -> None:
    assert stopped_run["stopped_after"] < 5.0


def test_signal_no_traceback(stopped_run: dict[str, object]) -> None:
    assert "Traceback" not in stopped_run["stderr"]


def test_signal_report_written(stopped_run: dict[str, object]) -> None:
    assert stopped_run["report_text"] is not None


def test_signal_report_is_json(stopped_run: dict[str, object]) -> None:
    assert isinstance(json.loads(stopped_run["report_text"]), dict)


def test_signal_report_interrupted(stopped_run: dict[str, object]) -> None:
    assert json.loads(stopped_run["report_text"])["interrupted"] is True


def test_signal_report_not_passed(stopped_run: dict[str, object]) -> None:
    assert json.loads(stopped_run["report_text"])["passed"] is False


def test_signal_report_counts_cycles(stopped_run: dict[str, object]) -> None:
    targets = json.loads(stopped_run["report_text"])["targets"]
    assert sum(entry["cycles"] for entry in targets.values()) > 0


def test_signal_leaves_no_process(stopped_run: dict[str, object]) -> None:
    assert stopped_run["strays"] is False


def test_signal_leaves_no_temp_dir(stopped_run: dict[str, object]) -> None:
    assert stopped_run["new_temp_dirs"] == set()
