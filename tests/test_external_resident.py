"""Long-lived external followers (``lifetime = "run"``) and the TCP output source.

``dir_follower.py`` plays a log shipper: one process follows every ``*.log`` file
in a directory, printing lines on stdout or sending them over TCP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import trio

from stressor.api import build_scenario
from stressor.engine import run_stress
from stressor.external.procfs import group_members
from stressor.faults import FaultSpec
from stressor.hooks import HookPoint
from stressor.record import RunRecord
from stressor.scenario import ConfigError
from stressor.scenario_file import load_scenario_file
from stressor.targets.base import open_target
from stressor.targets.command import CommandTarget

FOLLOWER = os.path.join(os.path.dirname(__file__), "dir_follower.py")
MID_STREAM = (HookPoint.MID_STREAM,)
ROTATION = (FaultSpec("rotate", MID_STREAM, method="rename-create"),)


def shipper(*options: str, **settings: object) -> CommandTarget:
    """A long-lived dir_follower.py on ``{dir}``; ``options`` go to the program."""
    argv = [sys.executable, FOLLOWER, "{dir}", *options]
    settings.setdefault("ready", "open")  # it polls the directory: no inotify watch
    return CommandTarget("shipper", argv, lifetime="run", **settings)  # type: ignore[arg-type]


def running_followers(under: str) -> list[int]:
    """Return the PIDs of dir_follower.py processes whose directory is below ``under``."""
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as file:
                argv = file.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if FOLLOWER.encode() in argv and any(arg.startswith(under.encode()) for arg in argv):
            found.append(int(name))
    return found


def program_pids(follower: object) -> list[int]:
    process = follower.resident._process  # type: ignore[attr-defined]
    return group_members(process.pid) if process is not None else []


async def test_one_program_serves_concurrent_cycles(run_batch, tmp_path):
    async with open_target(shipper(), str(tmp_path)) as follower:
        batch = await run_batch(follower, 24, (), lines=20, faults=ROTATION, concurrency=6)
        started = follower.resident._generation
        pids = program_pids(follower)

    assert batch.outcomes == {"ok": 24}, [r.detail for r in batch.results]
    assert all(r.lines_read == r.lines_written == 20 for r in batch.results)
    assert started == 1
    # Leaving the session ended the program and removed its directory.
    assert pids and not any(os.path.exists(f"/proc/{pid}") for pid in pids)
    assert not os.path.exists(tmp_path / "shipper")


@pytest.mark.parametrize(
    ("options", "point", "window"),
    [
        (("--watch-files",), HookPoint.BEFORE_REMOVE, True),
        ((), HookPoint.AFTER_REMOVE, False),
    ],
    ids=["watching-before-remove", "polling-after-remove"],
)
async def test_removal_point_late_writes_judged(run_batch, tmp_path, options, point, window):
    # A program with a watch on each file gets before-remove after the writer's exit,
    # and a fault there is a window hit. One without a watch gets after-remove at once,
    # so it has no window. Either way the late line comes before the end marker.
    late = (FaultSpec("late-write", (point,)),)

    async with open_target(shipper(*options), str(tmp_path)) as follower:
        batch = await run_batch(follower, 8, (), lines=5, faults=late, concurrency=4)

    assert batch.outcomes == {"ok": 8}, [r.detail for r in batch.results]
    assert all(r.faults == (f"late-write@{point.value}",) for r in batch.results)
    assert all(r.lines_read == 6 for r in batch.results)
    assert all(r.window_hit == window for r in batch.results)


async def test_tcp_source_long_lived(run_batch, tmp_path):
    target = shipper("--port", "{port}", source="tcp")

    async with open_target(target, str(tmp_path)) as follower:
        batch = await run_batch(follower, 12, (), lines=15, faults=ROTATION, concurrency=4)

    assert batch.outcomes == {"ok": 12}, [r.detail for r in batch.results]


async def test_tcp_source_per_cycle(run_batch):
    # One program per cycle, following its cycle's own directory, sending over TCP.
    argv = [sys.executable, FOLLOWER, "{dir}", "--port", "{port}"]
    target = CommandTarget("tcp-per-cycle", argv, source="tcp")

    batch = await run_batch(target, 6, (), lines=10, faults=ROTATION, concurrency=3)

    assert batch.outcomes == {"ok": 6}, [r.detail for r in batch.results]


async def test_descriptor_leak_on_removed_files(run_batch, tmp_path):
    target = shipper("--leak", release=0.2)

    async with open_target(target, str(tmp_path)) as follower:
        batch = await run_batch(follower, 4, (), lines=5, concurrency=2)

    assert batch.findings["leak"] == 4, [r.detail for r in batch.results]
    detail = batch.results[0].detail
    assert "held 0.2 s after the cycle's files were removed" in detail
    assert "cycle-" in detail
    assert "(deleted)" in detail


async def test_leak_found_through_symlinked_directory(run_batch, tmp_path):
    # /proc names files by their real path, whatever path the run was given.
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)

    async with open_target(shipper("--leak", release=0.2), str(tmp_path / "link")) as follower:
        batch = await run_batch(follower, 3, (), lines=5, concurrency=3)

    assert batch.findings["leak"] == 3, [r.detail for r in batch.results]


async def test_watch_on_removed_file_listed(run_batch, tmp_path):
    target = shipper("--leak", "--watch-files", release=0.2)

    async with open_target(target, str(tmp_path)) as follower:
        batch = await run_batch(follower, 2, (), lines=5, concurrency=1)

    assert batch.findings["leak"] == 2, [r.detail for r in batch.results]
    assert "inotify wd:" in batch.results[0].detail


async def test_watches_dropped_with_their_files_no_leak(run_batch, tmp_path):
    # The kernel drops a watch once its file is removed and closed: no leak, at
    # any concurrency, also when new files reuse the inode numbers.
    target = shipper("--watch-files", release=0.2)

    async with open_target(target, str(tmp_path)) as follower:
        batch = await run_batch(follower, 24, (), lines=5, faults=ROTATION, concurrency=6)

    assert batch.outcomes == {"ok": 24}, [r.detail for r in batch.results]


async def test_late_line_warned_not_judged(run_batch, tmp_path, caplog):
    async with open_target(shipper("--echo-late", "0.3"), str(tmp_path)) as follower:
        batch = await run_batch(follower, 2, (), lines=3, concurrency=1)
        await trio.sleep(0.5)

    assert batch.outcomes == {"ok": 2}
    assert follower.resident.late_lines >= 3
    assert "printed a line after its cycle was judged" in caplog.text


async def test_torn_payload_line_is_torn_not_crash(run_batch, tmp_path):
    # The program prints a line whose time stamp is two halves run together.
    script = (
        "import sys, subprocess; print('stressor w=1 seq=1 t=1.12' '3.456789', flush=True);"
        " subprocess.run(['tail', '-n', '+1', '-F', sys.argv[1]])"
    )
    target = CommandTarget("torn", [sys.executable, "-c", script, "{path}"])

    batch = await run_batch(target, 2, (), lines=3, concurrency=2)

    assert batch.findings["torn"] == 2, [r.detail for r in batch.results]
    assert "crash" not in batch.findings


async def test_growing_descriptors_found_after_the_first_cycle(run_batch, tmp_path):
    # Each file makes the program open /dev/null for good: only counts show it.
    async with open_target(shipper("--hold-per-file", release=0.2), str(tmp_path)) as follower:
        batch = await run_batch(follower, 4, (), lines=5, concurrency=1)

    leaks = [r.cycle for r in batch.results if "leak" in r.findings]
    assert leaks == [1, 2, 3], [r.detail for r in batch.results]
    assert "open descriptors" in batch.results[1].detail


async def test_start_up_descriptor_is_no_leak(run_batch, tmp_path):
    # Opening something once, for the first file, is how a program starts, not a leak.
    async with open_target(shipper("--hold-once", release=0.2), str(tmp_path)) as follower:
        batch = await run_batch(follower, 4, (), lines=5, concurrency=1)

    assert batch.outcomes == {"ok": 4}, [r.detail for r in batch.results]


async def test_program_that_exits_fails_its_cycles_and_restarts(run_batch, tmp_path):
    async with open_target(shipper("--exit-after", "3"), str(tmp_path)) as follower:
        batch = await run_batch(follower, 6, (), lines=5, concurrency=1)
        generation = follower.resident._generation

    # It exits on its third file: in cycles 2 and 5, the second time after a restart.
    crashes = [r for r in batch.results if "crash" in r.findings]
    assert [r.cycle for r in crashes] == [2, 5], [r.detail for r in batch.results]
    assert "shipper (long-lived) exited with status 7" in crashes[0].detail
    assert generation == 2


async def test_stalled_program_loses_lines_with_evidence(run_batch, tmp_path):
    async with open_target(shipper("--stall-after", "2", quiet=0.2), str(tmp_path)) as follower:
        batch = await run_batch(follower, 3, (), lines=5, concurrency=1)

    assert [r.outcome for r in batch.results] == ["ok", "lost", "lost"]
    detail = batch.results[2].detail
    assert "wchan:" in detail
    assert "long-lived program's last output" in detail


async def test_cancelled_run_ends_the_program(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    scenario = build_scenario(targets=[shipper()], duration=60, concurrency=2)

    with trio.move_on_after(1.0):
        await run_stress(scenario, RunRecord(scenario))

    assert running_followers(str(tmp_path)) == []
    assert os.listdir(tmp_path) == []


def test_killed_stressor_leaves_no_program(tmp_path):
    # Even SIGKILL, which stressor cannot handle, must not leave the program running.
    path = tmp_path / "shipper.toml"
    path.write_text(
        'targets = ["shipper"]\nduration = 60\n'
        "[[commands]]\n"
        'name = "shipper"\n'
        f'argv = ["{sys.executable}", "{FOLLOWER}", "{{dir}}"]\n'
        'lifetime = "run"\nready = "open"\n'
    )
    environment = {**os.environ, "TMPDIR": str(tmp_path)}
    run = subprocess.Popen(
        [sys.executable, "-m", "stressor", "run", str(path), "--metrics-port", "0", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not running_followers(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running_followers(str(tmp_path)), "the long-lived program never started"
    finally:
        run.kill()
        run.wait()

    deadline = time.monotonic() + 5
    while running_followers(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running_followers(str(tmp_path)) == []


async def test_unopened_target_opens_per_cycle(run_batch):
    # Without an open session (as in replay), run_cycle opens one for the cycle.
    batch = await run_batch(shipper(), 2, (), lines=5, concurrency=1)

    assert batch.outcomes == {"ok": 2}, [r.detail for r in batch.results]


async def test_follow_outside_a_session_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match=r"within open_session\(\)"):
        await shipper().follow(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "settings", "message"),
    [
        (["prog", "{path}"], {"lifetime": "run"}, r"\{path\} differs in each cycle.*\{dir\}"),
        (["prog"], {"lifetime": "run"}, r"lifetime = 'run' needs \{dir\}"),
        (["prog", "{dir}"], {"lifetime": "run", "done": "pid"}, r"done 'pid'.*set done = 'never'"),
        (["prog", "{dir}"], {"lifetime": "run", "output": "events"}, r"output 'events'"),
        (["prog", "{dir}"], {"lifetime": "forever"}, r"lifetime 'forever': choose one of"),
        (["prog", "{path}"], {"source": "tcp"}, r"source 'tcp': argv must pass \{port\}"),
        (["prog", "{port}"], {}, r"\{port\} is filled only with source = 'tcp'"),
        (["prog", "{path}"], {"release": 0.5}, r"release 0.5: applies to lifetime = 'run'"),
        (["prog", "{dir}"], {"lifetime": "run", "release": 0}, r"release 0: give seconds"),
        (["prog", "{dri}"], {}, r"unknown placeholder \{dri\}; known: \{path\}"),
        (["prog"], {"strace_delays": {"close": "x"}}, r"strace_delays.close 'x': give seconds"),
        (["prog"], {"strace_delays": {"close": -1}}, r"strace_delays.close -1: give seconds"),
        (["prog"], {"strace_delays": {"bad name": 1}}, r"name a system call"),
        (["prog"], {"quiet": float("nan")}, r"quiet nan: give seconds"),
    ],
)
def test_invalid_settings(argv, settings, message):
    with pytest.raises(ValueError, match=message):
        CommandTarget("mine", argv, **settings)


def test_unknown_setting_names_the_known_ones():
    with pytest.raises(TypeError, match=r"unknown settings lifespan; known: .*lifetime"):
        CommandTarget("mine", ["prog"], lifespan="run")


def test_scenario_file_long_lived_tcp(tmp_path):
    path = tmp_path / "shipper.toml"
    path.write_text(
        'targets = ["shipper"]\n'
        "[[commands]]\n"
        'name = "shipper"\n'
        f'argv = ["{sys.executable}", "{FOLLOWER}", "{{dir}}", "--port", "{{port}}"]\n'
        'source = "tcp"\n'
        'lifetime = "run"\n'
        "release = 0.5\n"
    )

    loaded = load_scenario_file(str(path))

    program = loaded.settings["extra_targets"]["shipper"].program
    assert (program.lifetime, program.source, program.release) == ("run", "tcp", 0.5)


def test_scenario_file_rejects_bad_lifetime(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[commands]]\nname = "x"\nargv = ["prog", "{path}"]\nlifetime = "run"\n')

    with pytest.raises(ConfigError, match=r"commands\[0\]\.argv: invalid value .*\{path\} differs"):
        load_scenario_file(str(path))


def test_scenario_file_bad_release_names_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[commands]]\nname = "x"\nargv = ["prog", "{dir}"]\nlifetime = "run"\nrelease = 0\n'
    )

    with pytest.raises(ConfigError, match=r"commands\[0\]\.release: invalid value 0: give seconds"):
        load_scenario_file(str(path))


def test_replay_and_shrink_of_recipe(tmp_path):
    replay = subprocess.run(
        [sys.executable, "-m", "stressor", "replay", "--target", "tail-F", "--seed", "1",
         "--cycle", "0"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    shrink = subprocess.run(
        [sys.executable, "-m", "stressor", "run", "--target", "tail-F", "--cycles", "2",
         "--metrics-port", "0", "--quiet", "--shrink-budget", "5"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip

    assert replay.returncode == 0, replay.stderr
    assert "attempt 1: ok" in replay.stdout
    assert shrink.returncode == 0, shrink.stderr
    assert "Traceback" not in shrink.stderr


def test_command_targets_refused_on_fake_files(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stressor", "run", "--target", "tail-F", "--backend", "fake",
         "--cycles", "1", "--metrics-port", "0", "--quiet"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 2
    assert "tail-F" in result.stderr
    assert "--backend real" in result.stderr


def test_cli_run_with_long_lived_program(tmp_path):
    path = tmp_path / "shipper.toml"
    path.write_text(
        'targets = ["shipper"]\ncycles = 8\nconcurrency = 4\n'
        "[[commands]]\n"
        'name = "shipper"\n'
        f'argv = ["{sys.executable}", "{FOLLOWER}", "{{dir}}"]\n'
        'lifetime = "run"\n'
    )
    report = tmp_path / "report.json"

    result = subprocess.run(
        [sys.executable, "-m", "stressor", "run", str(path), "--metrics-port",
         "0", "--quiet", "--report", str(report)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = json.loads(report.read_text())["targets"]["shipper"]["outcomes"]
    assert {name: count for name, count in outcomes.items() if count} == {"ok": 8}
