"""Checks of the soak stack: alert rules, Prometheus and Grafana configuration, compose.

No Docker engine is needed, because each part is checked on its own. promtool
validates and unit-tests the Prometheus files. The compose file, provisioning and
dashboard are parsed and cross-checked. One live test runs ``stressor soak`` with a
real Prometheus on 127.0.0.1 and evaluates every query of the dashboard and the alerts.

``prometheus`` and ``promtool`` come from Debian's ``prometheus`` package. Without
them the tests that need them fail when the CI environment variable is set and are
skipped otherwise.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DASHBOARD_FILE = REPO / "dashboards" / "stressor.json"
PROMETHEUS_CONFIG = REPO / "dashboards" / "prometheus" / "prometheus.yml"
ALERTS_FILE = REPO / "dashboards" / "prometheus" / "alerts.yml"
ALERTS_TEST_FILE = Path(__file__).resolve().parent / "data" / "stressor_alerts_test.yml"
DATASOURCES_FILE = REPO / "dashboards" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS_FILE = REPO / "dashboards" / "provisioning" / "dashboards" / "stressor.yml"

METRICS_PORT = 9466
DASHBOARD_UID = "stressor-overview"
PANEL_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ROW_TITLES = ["Overview", "Latency", "Faults", "Stressor health"]
ALERT_NAMES = {
    "StressorUnexpectedHang",
    "StressorUnexpectedLoss",
    "StressorUnexpectedFinding",
    "StressorDown",
    "StressorNotProgressing",
}
# Metrics with a target label: a dashboard query on them must honour $target.
TARGET_METRIC = re.compile(
    r"stressor_(?:cycles_total|hangs_total|faults_injected_total|window_hits_total"
    r"|lines_\w+_total|\w+_latency_seconds\w*|active_cycles|unexpected_findings_total)\b"
)


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as file:
        return yaml.safe_load(file)


def load_dashboard() -> dict[str, Any]:
    with DASHBOARD_FILE.open(encoding="utf-8") as file:
        dashboard: dict[str, Any] = json.load(file)
    return dashboard


def dashboard_panels() -> list[dict[str, Any]]:
    """Return every panel that is not a row, including those inside collapsed rows."""
    panels = []
    for panel in load_dashboard()["panels"]:
        if panel["type"] == "row":
            panels.extend(panel.get("panels", []))
        else:
            panels.append(panel)
    return panels


def dashboard_queries() -> list[tuple[str, str]]:
    """Return (panel title and refId, PromQL expression) of every dashboard query."""
    return [
        (f"{panel['title']} {query['refId']}", query["expr"])
        for panel in dashboard_panels()
        for query in panel["targets"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS_FILE)["groups"] for rule in group["rules"]]


def require_tool(name: str) -> str:
    """Return the path of ``name``, or fail in CI and skip elsewhere when it is missing."""
    path = shutil.which(name)
    if path is not None:
        return path
    reason = (
        f"{name} is not on PATH: install Debian's prometheus package"
        " (apt-get install prometheus), which provides prometheus and promtool"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )


# ---------------------------------------------------------------------------------
# Prometheus configuration and alert rules


def test_prometheus_config_valid() -> None:
    # promtool resolves rule_files relative to the config, so it also checks alerts.yml.
    result = run_promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_valid() -> None:
    result = run_promtool("check", "rules", str(ALERTS_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass() -> None:
    test_config = load_yaml(ALERTS_TEST_FILE)
    loaded = [(ALERTS_TEST_FILE.parent / path).resolve() for path in test_config["rule_files"]]
    assert loaded == [ALERTS_FILE]
    result = run_promtool("test", "rules", str(ALERTS_TEST_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_labelled_and_annotated() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == ALERT_NAMES
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name


def test_hang_alert_reads_unexpected_hangs() -> None:
    rule = next(rule for rule in alert_rules() if rule["alert"] == "StressorUnexpectedHang")
    assert 'stressor_unexpected_findings_total{outcome="hang"}' in rule["expr"]
    assert rule["for"] == "0m"


def test_prometheus_config_scrapes_stressor() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"stressor", "prometheus"}
    targets = [t for group in jobs["stressor"]["static_configs"] for t in group["targets"]]
    assert targets == [f"stressor:{METRICS_PORT}"]
    rule_files = [PROMETHEUS_CONFIG.parent / path for path in config["rule_files"]]
    assert [path.resolve() for path in rule_files] == [ALERTS_FILE]


def test_datasource_time_interval_matches_scrape_interval() -> None:
    # Grafana derives $__rate_interval from timeInterval. A value below the real
    # scrape interval gives rate() windows with too few samples.
    scrape_interval = load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    (datasource,) = load_yaml(DATASOURCES_FILE)["datasources"]
    assert datasource["jsonData"]["timeInterval"] == scrape_interval


# ---------------------------------------------------------------------------------
# Compose file and Dockerfile


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_yaml(COMPOSE_FILE)["services"]
    return services


def parse_volume(entry: str | dict[str, Any]) -> tuple[str, str, bool]:
    """Return (source, container path, read-only) of a short or long volume entry."""
    if isinstance(entry, dict):
        return entry["source"], entry["target"], bool(entry.get("read_only", False))
    source, target, *mode = entry.split(":")
    return source, target, "ro" in (mode[0].split(",") if mode else [])


def parse_port(entry: str | dict[str, Any]) -> tuple[str | None, int, int]:
    """Return (host address, published port, container port) of a port entry."""
    if isinstance(entry, dict):
        return entry.get("host_ip"), int(entry["published"]), int(entry["target"])
    parts = str(entry).split(":")
    if len(parts) == 3:
        return parts[0], int(parts[1]), int(parts[2])
    if len(parts) == 2:
        return None, int(parts[0]), int(parts[1])
    return None, int(parts[0]), int(parts[0])


def is_bind_mount(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str, bool]]:
    """Return (host path, container path, read-only) of a service's bind mounts."""
    mounts = []
    for entry in service.get("volumes", []):
        source, target, read_only = parse_volume(entry)
        if is_bind_mount(source):
            mounts.append(((COMPOSE_FILE.parent / source).resolve(), target, read_only))
    return mounts


def container_path_of(service: dict[str, Any], host_path: Path) -> PurePosixPath:
    """Return where ``host_path`` appears inside the service's container."""
    for host, target, _ in bind_mounts(service):
        if host_path == host:
            return PurePosixPath(target)
        if host_path.is_relative_to(host):
            return PurePosixPath(target) / host_path.relative_to(host).as_posix()
    raise AssertionError(f"{host_path} is not mounted into the service")


def test_compose_bind_mounts_exist_read_only() -> None:
    for name, service in compose_services().items():
        for host, target, read_only in bind_mounts(service):
            assert host.is_relative_to(REPO), f"{name}: {host} is outside the repository"
            assert host.exists(), f"{name}: mounted path {host} does not exist"
            assert read_only, f"{name}: {host} is mounted at {target} without :ro"


def test_compose_named_volumes_declared() -> None:
    compose = load_yaml(COMPOSE_FILE)
    declared = set(compose.get("volumes") or {})
    used = set()
    for service in compose["services"].values():
        for entry in service.get("volumes", []):
            source, _, _ = parse_volume(entry)
            if not is_bind_mount(source):
                used.add(source)
    assert used == {"prometheus-data", "grafana-data"}
    assert used <= declared


def test_compose_images_pinned() -> None:
    for name, service in compose_services().items():
        if "image" not in service:
            assert "build" in service, f"{name} has neither image nor build"
            continue
        image = service["image"]
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+\S*", tag), (
            f"{name}: image {image!r} is not pinned to a full version"
        )


def test_compose_ports_only_grafana_and_metrics() -> None:
    published = {}
    for name, service in compose_services().items():
        for entry in service.get("ports", []):
            host, host_port, container_port = parse_port(entry)
            assert host == "127.0.0.1", f"{name}: port {entry!r} is not bound to 127.0.0.1"
            published[name] = (host_port, container_port)
    assert published == {"grafana": (3000, 3000), "stressor": (METRICS_PORT, METRICS_PORT)}


def test_compose_healthchecks_present() -> None:
    for name, service in compose_services().items():
        healthcheck = service.get("healthcheck")
        assert healthcheck, f"{name} has no healthcheck"
        assert healthcheck["test"][0] == "CMD", name
        assert "timeout" in healthcheck, name


def test_compose_stressor_runs_soak() -> None:
    stressor = compose_services()["stressor"]
    assert stressor["build"]["dockerfile"] == DOCKERFILE.name
    # Dockerfile's ENTRYPOINT is ["stressor"], so the command starts at the subcommand.
    command = stressor["command"]
    assert command[0] == "soak"
    assert command[command.index("--metrics-host") + 1] == "0.0.0.0"
    assert command[command.index("--metrics-port") + 1] == str(METRICS_PORT)
    healthcheck = " ".join(stressor["healthcheck"]["test"])
    assert f"http://127.0.0.1:{METRICS_PORT}/healthz" in healthcheck


def test_compose_prometheus_loads_shipped_config() -> None:
    prometheus = compose_services()["prometheus"]
    flags = dict(flag.split("=", 1) for flag in prometheus["command"])
    config_path = container_path_of(prometheus, PROMETHEUS_CONFIG)
    assert flags["--config.file"] == str(config_path)
    assert container_path_of(prometheus, ALERTS_FILE).parent == config_path.parent


def test_grafana_provider_path_matches_mount() -> None:
    grafana = compose_services()["grafana"]
    (provider,) = load_yaml(PROVIDERS_FILE)["providers"]
    assert provider["type"] == "file"
    dashboard_path = container_path_of(grafana, DASHBOARD_FILE)
    assert dashboard_path.parent == PurePosixPath(provider["options"]["path"])
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert PurePosixPath(home) == dashboard_path
    assert container_path_of(grafana, PROVIDERS_FILE).parent == PurePosixPath(
        "/etc/grafana/provisioning/dashboards"
    )
    assert container_path_of(grafana, DATASOURCES_FILE).parent == PurePosixPath(
        "/etc/grafana/provisioning/datasources"
    )


def test_datasource_matches_dashboard() -> None:
    (datasource,) = load_yaml(DATASOURCES_FILE)["datasources"]
    variable = dashboard_variable("datasource")
    assert datasource["uid"] == variable["current"]["value"]
    assert datasource["type"] == variable["query"] == "prometheus"
    # Grafana reaches Prometheus by its compose service name on its default port.
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose_services()


def dockerfile_instructions() -> list[tuple[str, str]]:
    instructions = []
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def test_dockerfile_runs_soak_as_non_root() -> None:
    instructions = dockerfile_instructions()
    keywords = dict(instructions)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", keywords["FROM"])
    user = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert json.loads(keywords["ENTRYPOINT"]) == ["stressor"]
    assert json.loads(keywords["CMD"]) == ["soak", "--metrics-host", "0.0.0.0"]
    assert keywords["EXPOSE"] == str(METRICS_PORT)


def test_dockerfile_copies_what_the_build_reads() -> None:
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY":
            copied.extend(arguments.split()[:-1])
    # pyproject.toml names README.md as the package's readme, so the build reads it.
    assert {"pyproject.toml", "README.md", "stressor"} <= set(copied)
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert source not in ignored, f"COPY {source}: excluded by .dockerignore"


# ---------------------------------------------------------------------------------
# Dashboard


def dashboard_variable(name: str) -> dict[str, Any]:
    variables = load_dashboard()["templating"]["list"]
    return next(variable for variable in variables if variable["name"] == name)


def panel_id(panel: dict[str, Any]) -> str:
    return str(panel["title"])


DASHBOARD_QUERIES = dashboard_queries()
QUERY_NAMES = [name for name, _ in DASHBOARD_QUERIES]


def test_dashboard_fixed_uid() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == DASHBOARD_UID
    assert dashboard["schemaVersion"] == 39


def test_dashboard_variables() -> None:
    datasource = dashboard_variable("datasource")
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    target = dashboard_variable("target")
    assert target["type"] == "query"
    assert target["datasource"] == PANEL_DATASOURCE
    assert target["query"] == "label_values(stressor_cycles_total, target)"
    assert target["multi"] is True
    assert target["includeAll"] is True
    # With .* for All, target=~"$target" also matches targets that appear later.
    assert target["allValue"] == ".*"


def test_dashboard_rows() -> None:
    rows = [panel for panel in load_dashboard()["panels"] if panel["type"] == "row"]
    assert [row["title"] for row in rows] == ROW_TITLES
    overview, *details = rows
    assert overview["collapsed"] is False
    for row in details:
        assert row["collapsed"] is True, row["title"]
        assert row["panels"], row["title"]


def test_dashboard_panel_ids_unique() -> None:
    dashboard = load_dashboard()
    rows = [panel for panel in dashboard["panels"] if panel["type"] == "row"]
    ids = [panel["id"] for panel in rows + dashboard_panels()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("panel", dashboard_panels(), ids=panel_id)
def test_dashboard_panel_complete(panel: dict[str, Any]) -> None:
    assert panel["datasource"] == PANEL_DATASOURCE
    assert panel["targets"]
    for query in panel["targets"]:
        assert query["datasource"] == PANEL_DATASOURCE, query["refId"]
    assert panel["description"].strip()
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["unit"]
    steps = defaults["thresholds"]["steps"]
    assert steps
    assert steps[0]["value"] is None, "the first threshold step must be the base (null)"


@pytest.mark.parametrize(("name", "expr"), DASHBOARD_QUERIES, ids=QUERY_NAMES)
def test_dashboard_ranges_use_rate_interval(name: str, expr: str) -> None:
    ranges = re.findall(r"\[([^\]]*)\]", expr)
    assert all(window == "$__rate_interval" for window in ranges), ranges
    calls = re.findall(r"\b(?:rate|irate|increase)\(", expr)
    assert len(calls) <= len(ranges), "every rate() and increase() needs a range"


@pytest.mark.parametrize(("name", "expr"), DASHBOARD_QUERIES, ids=QUERY_NAMES)
def test_dashboard_queries_filter_target(name: str, expr: str) -> None:
    for match in re.finditer(TARGET_METRIC.pattern + r"(\{[^}]*\})?", expr):
        selector = match.group(1)
        assert selector, f"{match.group(0)} has no label selector"
        assert 'target=~"$target"' in selector, match.group(0)


# ---------------------------------------------------------------------------------
# Live: stressor soak scraped by a real Prometheus, everything on 127.0.0.1

# Every wait of the live test is bounded by one of these, in seconds.
START_TIMEOUT = 20.0
DATA_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
HTTP_TIMEOUT = 5.0

# Naming docker-1.12.1 in [allow] replaces its built-in expectation, which is that
# it must hang and may lose lines. Its hangs become unexpected, so the shipped hang
# alert has to fire for it, while its lost lines stay allowed.
LIVE_SCENARIO = """\
targets = ["reference", "docker-1.12.1"]
concurrency = 8

[limits]
deadline = 0.3

[allow]
"docker-1.12.1" = ["lost"]
"""

# The proxy handler keeps an http_proxy variable from sending local requests elsewhere.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str) -> tuple[int, bytes]:
    """Return the status and body of a GET, also for error statuses."""
    try:
        with _HTTP.open(url, timeout=HTTP_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    details: Callable[[], str] = lambda: "",
) -> Any:
    """Call ``check`` until it returns a true value and return that value.

    Connection and parse errors count as not yet. After ``timeout`` seconds the test
    fails with the last error and the text that ``details`` returns.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, ValueError) as error:
            last_error = error
        else:
            if result:
                return result
        time.sleep(0.25)
    message = f"timed out after {timeout:g} s waiting for {what} (last error: {last_error})"
    pytest.fail(f"{message}\n{details()}")


class Service:
    """A process started in its own process group, with its output in a log file."""

    def __init__(self, name: str, command: list[str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def exited(self) -> bool:
        """Return whether the process exited, without reaping it (its group stays valid)."""
        if self.process.returncode is not None:
            return True
        result = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return result is not None

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return f"--- last lines of {self.name}'s output ---\n" + "\n".join(
            text.splitlines()[-lines:]
        )

    def stop(self) -> float | None:
        """Send SIGTERM to the process group, SIGKILL after STOP_TIMEOUT.

        Returns the seconds the process took to exit after SIGTERM, or None when it
        had to be killed. Stragglers of the group are killed before the leader is
        reaped, so the group id cannot belong to another process by then.
        """
        if self.process.returncode is not None:
            return 0.0
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        took: float | None = None
        while time.monotonic() - started < STOP_TIMEOUT:
            if self.exited():
                took = time.monotonic() - started
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)
        return took


@contextlib.contextmanager
def started(service: Service) -> Iterator[Service]:
    try:
        yield service
    finally:
        service.stop()


def live_prometheus_config(directory: Path, stressor_port: int, prometheus_port: int) -> Path:
    """Write the shipped config and rules into ``directory``, rewritten for this test.

    Scrapes and rule evaluations run every second, and both jobs point at 127.0.0.1.
    The rule files keep their names, so the shipped alerts.yml is what is loaded.
    """
    config = load_yaml(PROMETHEUS_CONFIG)
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    addresses = {
        "stressor": f"127.0.0.1:{stressor_port}",
        "prometheus": f"127.0.0.1:{prometheus_port}",
    }
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [addresses[job["job_name"]]]}]
    for rule_file in config["rule_files"]:
        shutil.copy(PROMETHEUS_CONFIG.parent / rule_file, directory / rule_file)
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def substitute_variables(expr: str) -> str:
    """Replace the dashboard's variables as Grafana would with all targets selected."""
    expr = expr.replace("$__rate_interval", "30s")
    expr = expr.replace("${target}", ".*").replace("$target", ".*")
    assert "$" not in expr, f"unhandled dashboard variable in {expr!r}"
    return expr


class PrometheusAPI:
    """A client of the Prometheus HTTP API that raises on any error status."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        status, body = http_get(f"{self.base}{path}?{query}" if query else self.base + path)
        document = json.loads(body)
        if status != 200 or document.get("status") != "success":
            raise AssertionError(f"GET {path} {params}: status {status}: {document}")
        return document["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", expr
        result: list[dict[str, Any]] = data["result"]
        return result


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    values = [float(sample["value"][1]) for sample in result]
    return [value for value in values if math.isfinite(value)]


def by_target(result: list[dict[str, Any]]) -> dict[str, float]:
    return {sample["metric"]["target"]: float(sample["value"][1]) for sample in result}


@pytest.mark.timeout(120)
def test_live_soak_with_prometheus() -> None:
    """Run a soak scraped by Prometheus with the shipped config and rules, and query it."""
    prometheus_binary = require_tool("prometheus")
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stack-")))
        stressor_port = free_port()
        prometheus_port = free_port()
        while prometheus_port == stressor_port:
            prometheus_port = free_port()

        scenario = directory / "scenario.toml"
        scenario.write_text(LIVE_SCENARIO, encoding="utf-8")
        soak_command = [sys.executable, "-m", "stressor", "soak", str(scenario)]
        soak_command += ["--metrics-host", "127.0.0.1", "--metrics-port", str(stressor_port)]
        soak = stack.enter_context(
            started(Service("stressor soak", soak_command, directory / "soak.log", directory))
        )
        stressor_url = f"http://127.0.0.1:{stressor_port}"

        def soak_ready() -> bool:
            assert not soak.exited(), "stressor soak exited early\n" + soak.log_tail()
            return http_get(f"{stressor_url}/readyz")[0] == 200

        wait_for("stressor's /readyz to answer 200", soak_ready, START_TIMEOUT)
        assert http_get(f"{stressor_url}/healthz")[0] == 200

        # The compose healthcheck's own command, pointed at this soak's port.
        healthcheck = load_yaml(COMPOSE_FILE)["services"]["stressor"]["healthcheck"]["test"]
        code = healthcheck[healthcheck.index("-c") + 1]
        code = code.replace(f"127.0.0.1:{METRICS_PORT}", f"127.0.0.1:{stressor_port}")
        no_proxy_env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=no_proxy_env,
        )
        assert result.returncode == 0, result.stderr

        config = live_prometheus_config(directory, stressor_port, prometheus_port)
        prometheus_command = [
            prometheus_binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ]
        prometheus = stack.enter_context(
            started(
                Service("prometheus", prometheus_command, directory / "prometheus.log", directory)
            )
        )
        api = PrometheusAPI(prometheus_port)

        def prometheus_ready() -> bool:
            assert not prometheus.exited(), "prometheus exited early\n" + prometheus.log_tail()
            return http_get(f"{api.base}/-/ready")[0] == 200

        wait_for("Prometheus's /-/ready to answer 200", prometheus_ready, START_TIMEOUT)

        def targets_up() -> bool:
            active = api.get("/api/v1/targets")["activeTargets"]
            health = {target["labels"]["job"]: target["health"] for target in active}
            return health == {"stressor": "up", "prometheus": "up"}

        wait_for("both scrape targets to be up", targets_up, START_TIMEOUT)

        # Every panel has data in this run: both targets ran cycles, docker-1.12.1 hung
        # and lost lines, and stressor creates its per-target series at 0. Queries run
        # until each has a finite value, because rate() needs two scrapes.
        queries = {name: substitute_variables(expr) for name, expr in DASHBOARD_QUERIES}
        pending = dict(queries)

        def every_query_has_data() -> bool:
            for name, expr in list(pending.items()):
                if finite_values(api.query(expr)):
                    del pending[name]
            return not pending

        wait_for(
            "every dashboard query to return data",
            every_query_has_data,
            DATA_TIMEOUT,
            lambda: f"queries without data: {sorted(pending)}\n{soak.log_tail()}",
        )

        variable_values = api.get(
            "/api/v1/label/target/values", **{"match[]": "stressor_cycles_total"}
        )
        assert set(variable_values) == {"reference", "docker-1.12.1"}

        pass_fail = by_target(api.query(queries["Pass/fail by target A"]))
        assert pass_fail == {"reference": 0.0, "docker-1.12.1": 1.0}
        hangs_by_fault = api.query(queries["Hangs by fault A"])
        assert any(
            sample["metric"]["target"] == "docker-1.12.1" and float(sample["value"][1]) > 0
            for sample in hangs_by_fault
        )

        # Alert expressions may be empty while they do not fire, but must evaluate.
        for rule in alert_rules():
            api.query(rule["expr"])

        def hang_alert_firing() -> list[dict[str, Any]]:
            alerts: list[dict[str, Any]] = api.get("/api/v1/alerts")["alerts"]
            firing = [alert for alert in alerts if alert["state"] == "firing"]
            hang = [
                alert
                for alert in firing
                if alert["labels"]["alertname"] == "StressorUnexpectedHang"
                and alert["labels"]["target"] == "docker-1.12.1"
            ]
            return firing if hang else []

        def alert_details() -> str:
            alerts = api.get("/api/v1/alerts")["alerts"]
            return f"alerts: {alerts}\n{prometheus.log_tail()}"

        firing = wait_for(
            "StressorUnexpectedHang for docker-1.12.1",
            hang_alert_firing,
            DATA_TIMEOUT,
            alert_details,
        )
        firing_names = {
            (alert["labels"]["alertname"], alert["labels"].get("target")) for alert in firing
        }
        assert firing_names == {("StressorUnexpectedHang", "docker-1.12.1")}

        groups = api.get("/api/v1/rules", type="alert")["groups"]
        rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
        assert set(rules) == ALERT_NAMES
        for name, rule in rules.items():
            assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"

        took = soak.stop()
        assert took is not None, f"stressor soak ignored SIGTERM for {STOP_TIMEOUT:g} s"
        prometheus.stop()
