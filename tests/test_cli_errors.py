"""Bad inputs found after the run, signals outside a run, and replay signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def stressor(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stressor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["run", "--report", "/proc/report.json"], "--report"),
        (["run", "--textfile", "/proc/metrics.prom"], "--textfile"),
        (["run", "--pushgateway", "notaurl"], "--pushgateway"),
        (["run", "--pushgateway", "ftp://127.0.0.1/"], "--pushgateway"),
        (["soak", "--findings-dir", "/etc/hostname"], "--findings-dir"),
        (["soak", "--metrics-host", "256.1.1.1", "--duration", "5"], "--metrics-host"),
        (
            [
                "replay",
                "--target",
                "reference",
                "--seed",
                "1",
                "--cycle",
                "0",
                "--shrink-budget",
                "0",
            ],
            "--shrink-budget",
        ),
    ],  # fmt: skip
    ids=[
        "report-proc",
        "textfile-proc",
        "pushgateway-text",
        "pushgateway-ftp",
        "findings-file",
        "metrics-host",
        "shrink-budget-0",
    ],  # fmt: skip
)
def test_bad_output_rejected_before_run(tmp_path, args, option):
    started = time.monotonic()
    # The metrics host is only used with a metrics port, so that case keeps the default.
    port = [] if "--metrics-host" in args else ["--metrics-port", "0"]
    result = stressor(tmp_path, *args, *port)

    assert result.returncode == 2, result.stdout + result.stderr
    assert option in result.stderr.splitlines()[-1]
    assert result.stderr.splitlines()[-1].startswith("stressor: error: ")
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 10


def test_scenario_not_utf8_rejected(tmp_path):
    scenario = tmp_path / "bad.toml"
    scenario.write_bytes(b"\xff\xfe")

    result = stressor(tmp_path, "run", str(scenario))

    assert result.returncode == 2
    assert "not UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigint_during_startup_is_quiet(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "stressor", "run", "--duration", "5", "--metrics-port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=10)

    assert process.returncode == 128 + signal.SIGINT
    assert "Traceback" not in stderr


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_replay_signal_cleans_up(tmp_path, number):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "stressor", "replay", "--target", "docker-1.12.1", "--seed",
         "1", "--cycle", "0", "--point", "before-remove", "--repeat", "50", "--deadline", "0.5"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(private_tmp)},
    )  # fmt: skip
    time.sleep(2.0)
    process.send_signal(number)
    _, stderr = process.communicate(timeout=10)

    assert process.returncode == 128 + number
    assert "Traceback" not in stderr
    assert os.listdir(private_tmp) == []
