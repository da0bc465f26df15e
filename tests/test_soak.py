"""The soak service: health answers, logs, finding files, metric exports and steady resources."""

from __future__ import annotations

import http.server
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stressor.logs import JsonFormatter, RepeatFilter

STARTUP_LIMIT = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until(condition, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


class Soak:
    """A ``stressor soak`` subprocess in its own session, ended whatever happens."""

    def __init__(self, tmp_path: Path, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        self.stderr_path = tmp_path / "stderr"
        command = [
            sys.executable, "-m", "stressor", "soak", "--metrics-port", str(self.port),
            "--deadline", "0.3", "--concurrency", "8", *extra,
        ]  # fmt: skip
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                command,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                env={**os.environ, "TMPDIR": str(self.tmp)},
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_ready(self) -> None:
        ready = wait_until(lambda: get(self.port, "/readyz")[0] == 200, STARTUP_LIMIT)
        assert ready, self.stderr

    def stop(self, number: int = signal.SIGTERM) -> tuple[int | None, float]:
        self.process.send_signal(number)
        sent = time.monotonic()
        try:
            status = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            status = None
        return status, time.monotonic() - sent

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def soak_factory(tmp_path):
    started: list[Soak] = []

    def start(*extra: str, port: int | None = None) -> Soak:
        soak = Soak(tmp_path, *extra, port=port)
        started.append(soak)
        return soak

    yield start
    for soak in started:
        soak.close()


def test_soak_health_and_ready(soak_factory):
    soak = soak_factory("--target", "reference")
    soak.wait_ready()

    status, body = get(soak.port, "/healthz")
    assert status == 200
    assert "event loop" in body
    status, _ = get(soak.port, "/readyz")
    assert status == 200
    status, metrics = get(soak.port, "/metrics")
    assert status == 200
    assert 'stressor_build_info{version="' in metrics
    assert "process_open_fds" in metrics
    assert "stressor_loop_lag_seconds" in metrics


def test_soak_sigterm_stops_with_summary(soak_factory):
    soak = soak_factory("--target", "reference", "--target", "docker-1.12.1")
    soak.wait_ready()

    status, stopped_after = soak.stop(signal.SIGTERM)

    assert status == 128 + signal.SIGTERM
    assert stopped_after < 5
    assert "soak summary: target reference" in soak.stderr
    assert "soak summary: target docker-1.12.1" in soak.stderr
    assert "soak stopped after" in soak.stderr
    assert os.listdir(soak.tmp) == []


def test_soak_sigint_stops(soak_factory):
    soak = soak_factory("--target", "reference")
    soak.wait_ready()

    status, stopped_after = soak.stop(signal.SIGINT)

    assert status == 128 + signal.SIGINT
    assert stopped_after < 5


def test_soak_unexpected_finding_fails(soak_factory):
    soak = soak_factory(
        "--target", "docker-1.12.1", "--allow", "docker-1.12.1=lost", "--duration", "3"
    )

    status = soak.process.wait(timeout=30)

    assert status == 1
    assert "unexpected findings {'hang'" in soak.stderr


def test_soak_json_logs(soak_factory):
    soak = soak_factory("--target", "docker-1.12.1", "--log-format", "json", "--duration", "3")

    assert soak.process.wait(timeout=30) == 0
    entries = [json.loads(line) for line in soak.stderr.splitlines()]
    assert entries
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    assert any(entry["message"].startswith("finding: target docker-1.12.1") for entry in entries)
    assert any(entry.get("repeats", 0) > 0 for entry in entries)


def test_soak_findings_directory_capped(soak_factory, tmp_path):
    findings = tmp_path / "findings"
    soak = soak_factory(
        "--target", "docker-1.12.1", "--findings-dir", str(findings), "--max-findings", "3",
        "--duration", "3", "--seed", "11",
    )  # fmt: skip

    assert soak.process.wait(timeout=30) == 0
    files = sorted(findings.iterdir())
    assert len(files) == 3
    entry = json.loads(files[-1].read_text())
    assert entry["target"] == "docker-1.12.1"
    assert entry["seed"] == 11
    assert entry["outcome"] in ("hang", "lost")
    assert entry["replay"].startswith("stressor replay --target docker-1.12.1 --seed 11 --cycle ")

    replay = subprocess.run(
        [sys.executable, "-m", "stressor", *entry["replay"].split()[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    assert f"attempt 1: {entry['outcome']}" in replay.stdout


def test_soak_textfile_written(soak_factory, tmp_path):
    textfile = tmp_path / "stressor.prom"
    soak = soak_factory("--target", "reference", "--textfile", str(textfile), "--duration", "2")

    assert soak.process.wait(timeout=30) == 0
    text = textfile.read_text()
    assert 'stressor_cycles_total{outcome="ok",target="reference"}' in text


def test_run_pushes_to_pushgateway(tmp_path):
    received: list[tuple[str, str, bytes]] = []

    class Gateway(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(("PUT", self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.HTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "stressor", "run", "--target", "reference", "--cycles", "5",
             "--metrics-port", "0", "--quiet", "--pushgateway", url],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()

    assert result.returncode == 0, result.stderr
    assert len(received) == 1
    method, path, body = received[0]
    assert method == "PUT"
    assert path == "/metrics/job/stressor"
    assert b'stressor_cycles_total{outcome="ok",target="reference"} 5.0' in body


def test_run_pushgateway_down_logs_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "stressor", "run", "--target", "reference", "--cycles", "2",
         "--metrics-port", "0", "--quiet", "--pushgateway", url],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0
    assert "pushing metrics to the Pushgateway" in result.stderr
    assert "Traceback" not in result.stderr


def test_repeat_filter_counts_repeats(caplog):
    logger = logging.getLogger("test.repeats")
    repeat_filter = RepeatFilter()
    logger.addFilter(repeat_filter)
    try:
        with caplog.at_level(logging.INFO, logger="test.repeats"):
            for cycle in range(5):
                logger.info("finding %d", cycle, extra={"repeat_key": ("t", "hang")})
            logger.info("other", extra={"repeat_key": ("t", "lost")})
            repeat_filter.flush(logger)
    finally:
        logger.removeFilter(repeat_filter)

    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == "finding 0"
    assert messages[1] == "other"
    assert messages[2] == "repeated 4 more times since the last summary, last: finding 4"
    assert len(messages) == 3


def test_json_formatter_keeps_extra_fields():
    record = logging.LogRecord("stressor.engine", logging.INFO, "", 0, "hello %s", ("x",), None)
    record.target = "reference"

    entry = json.loads(JsonFormatter().format(record))

    assert entry["message"] == "hello x"
    assert entry["level"] == "info"
    assert entry["target"] == "reference"


def read_resources(pid: int) -> tuple[int, int]:
    descriptors = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return descriptors, rss


@pytest.mark.slow
def test_soak_resources_steady(soak_factory):
    # Two minutes with every target, hangs included; samples after a 30 s warm-up.
    soak = soak_factory("--concurrency", "16")
    soak.wait_ready()
    time.sleep(30)
    warm_descriptors, warm_rss = read_resources(soak.process.pid)
    samples = []
    files = []
    for _ in range(9):
        time.sleep(10)
        samples.append(read_resources(soak.process.pid))
        run_dirs = list(soak.tmp.iterdir())
        files.append(sum(len(os.listdir(path)) for path in run_dirs))
        assert soak.process.poll() is None, soak.stderr

    status, _ = soak.stop()
    assert status == 128 + signal.SIGTERM
    assert max(descriptors for descriptors, _ in samples) <= warm_descriptors + 20
    assert samples[-1][1] <= warm_rss * 1.2 + 8 * 1024
    assert max(files) <= 16
    assert os.listdir(soak.tmp) == []
