"""External programs as targets: GNU tail, inotifywait and a program that deadlocks.

These run real programs on real files. Each test that needs a program skips
when it is not installed (``.ci/run`` installs inotify-tools and strace).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
import trio
import trio.testing

from stressor.external.output import OutputParser
from stressor.external.process import MissingToolError, read_pipe
from stressor.external.procfs import WatchProbe, inotify_watches, kernel_device
from stressor.faults import FaultSpec
from stressor.hooks import HookPoint
from stressor.scenario import ConfigError, build_expectations
from stressor.scenario_file import load_scenario_file
from stressor.targets.command import CommandTarget, recipe
from stressor.watchers import inotify

AFTER_EXIT = (HookPoint.AFTER_EXIT,)
MID_STREAM = (HookPoint.MID_STREAM,)
HANGS = os.path.join(os.path.dirname(__file__), "hangs_at_removal.py")
ROTATION = (FaultSpec("rotate", MID_STREAM, method="rename-create"),)


def needs(tool: str, package: str) -> pytest.MarkDecorator:
    """Skip when ``tool`` is missing, except in CI, where .ci/run installs it: fail there."""
    missing = shutil.which(tool) is None and not os.environ.get("CI")
    return pytest.mark.skipif(missing, reason=f"{tool} not installed (Debian package {package})")


needs_tail = needs("tail", "coreutils")
needs_inotifywait = needs("inotifywait", "inotify-tools")
needs_strace = needs("strace", "strace")


def line(seq: int) -> bytes:
    return f"stressor w=1 seq={seq} t=1.000000\n".encode()


def test_output_parser_partial_and_other_lines():
    parser = OutputParser()
    first = line(1)

    assert parser.feed(b"==> app.log <==\n" + first[:10]) == []
    assert parser.feed(first[10:] + b"\ntail: app.log: file truncated\n") == [first]
    parser.feed(b"half a line")
    parser.finish()

    assert parser.ignored == 4  # the header, the blank line, tail's note, the fragment
    assert "half a line" in parser.describe_last()


async def test_read_pipe_until_end_of_file():
    read_end, write_end = os.pipe()
    stream = trio.lowlevel.FdStream(read_end)
    os.write(write_end, b"first\n")

    assert await read_pipe(stream, 1024) == b"first\n"

    os.write(write_end, b"second\n")
    os.close(write_end)
    assert await read_pipe(stream, 1024) == b"second\n"
    assert await read_pipe(stream, 1024) == b""
    await stream.aclose()


async def test_read_pipe_other_stream():
    send, receive = trio.testing.memory_stream_one_way_pair()
    await send.send_all(b"line\n")

    assert await read_pipe(receive, 1024) == b"line\n"


async def test_inotify_watches_hex_descriptors(tmp_path):
    # Watch descriptors from 10 on are printed in hex in fdinfo (wd:a, wd:b, ...).
    fd = inotify.init()
    try:
        for index in range(12):
            path = tmp_path / str(index)
            path.touch()
            inotify.add_watch(fd, str(path), inotify.IN_MODIFY)

        watches = [watch for watch in inotify_watches(os.getpid()) if watch.fd == fd]
    finally:
        await inotify.close(fd)

    assert sorted(watch.wd for watch in watches) == list(range(1, 13))


def _file_id(path: os.PathLike[str]) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_ino, kernel_device(info.st_dev)


async def test_watch_probe_finds_moved_watch(tmp_path):
    path = tmp_path / "app.log"
    path.touch()
    probe = WatchProbe(os.getpid())
    first = inotify.init()
    second = inotify.init()
    try:
        wd = inotify.add_watch(first, str(path), inotify.IN_MODIFY)
        assert probe.watching(*_file_id(path))

        inotify.rm_watch(first, wd)
        assert not probe.watching(*_file_id(path))

        # The watch is now on a different descriptor from the one the probe found first.
        inotify.add_watch(first, str(path), inotify.IN_MODIFY)
        assert probe.watching(*_file_id(path))
        inotify.add_watch(second, str(path), inotify.IN_MODIFY)
        await inotify.close(first)
        assert probe.watching(*_file_id(path))
    finally:
        await inotify.close(second)

    assert not probe.watching(*_file_id(path))


@needs_tail
async def test_watch_probe_sees_descendants(tmp_path):
    path = tmp_path / "app.log"
    path.touch()
    # sh runs tail as its child, so the watch belongs to a descendant of the root.
    argv = ["sh", "-c", 'tail -f "$0"; true', str(path)]
    shell = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
    probe = WatchProbe(shell.pid)
    try:
        with trio.fail_after(10):
            while not probe.watching(*_file_id(path)):
                await trio.sleep(0.01)
        assert probe.watching(*_file_id(path))

        # Once sh is gone, tail still watches but is no descendant of the root.
        os.kill(shell.pid, signal.SIGKILL)
        shell.wait()
        assert not probe.watching(*_file_id(path))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()


def test_command_fills_placeholders():
    target = CommandTarget("mine", ["prog", "--pid={writer_pid}", "{path}", "{dir}"])

    assert target.command("/tmp/a b/app.log", 42) == [
        "prog",
        "--pid=42",
        "/tmp/a b/app.log",
        "/tmp/a b",
    ]


def test_command_quotes_for_shell():
    target = CommandTarget("mine", "prog {path} | cat", shell=True)

    assert target.command("/tmp/a b/app.log", None) == [
        "/bin/sh",
        "-c",
        "prog '/tmp/a b/app.log' | cat",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"done": "later"}, "done 'later': choose one of pid, stdin, signal, never"),
        ({"signal": "SIGNOPE"}, "signal 'SIGNOPE': name a signal"),
        ({"shell": True}, "give one string with shell = true"),
        ({"quiet": 0}, "quiet 0: give seconds"),
    ],
)
def test_command_invalid_settings(options, message):
    with pytest.raises(ValueError, match=message):
        CommandTarget("mine", ["prog"], **options)


def test_recipe_unknown_name():
    with pytest.raises(KeyError, match="unknown recipe 'tail-X': choose one of tail-F"):
        recipe("tail-X")


def test_strace_missing_names_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")

    with pytest.raises(MissingToolError, match=r"needs 'strace'.*apt-get install strace"):
        CommandTarget("mine", ["prog"], strace_delays={"close": 0.01})


@needs_tail
async def test_tail_F_rotation_no_loss(run_batch):
    batch = await run_batch(recipe("tail-F"), 10, (), lines=20, faults=ROTATION, concurrency=10)

    assert batch.outcomes == {"ok": 10}, [r.detail for r in batch.results]
    assert all(r.lines_read == r.lines_written == 20 for r in batch.results)


@needs_tail
async def test_tail_f_descriptor_rotation_loses(run_batch):
    # tail -f keeps reading the renamed file, so every line after the rotation is lost.
    target = recipe("tail-f-descriptor")
    batch = await run_batch(target, 10, (), lines=20, faults=ROTATION, concurrency=10)

    assert batch.findings["lost"] == 10
    assert all(r.lines_lost > 0 for r in batch.results)


@needs_tail
async def test_tail_f_pid_late_writes(run_batch):
    # A burst right before the writer exits, without waiting for tail to catch up:
    # tail must read it all before it notices the writer's PID is gone.
    faults = (FaultSpec("burst", AFTER_EXIT, lines=50),)
    batch = await run_batch(
        recipe("tail-f-pid"), 10, (), faults=faults, catch_up=False, settle=0.0, concurrency=10
    )

    assert batch.outcomes == {"ok": 10}, [r.detail for r in batch.results]
    assert all(r.lines_read == r.lines_written == 60 for r in batch.results)
    assert all(r.exit_latency is not None and r.exit_latency < 0.5 for r in batch.results)
    assert all(r.window_hit for r in batch.results)


@needs_inotifywait
async def test_inotifywait_reports_every_write(run_batch):
    batch = await run_batch(recipe("inotifywait"), 10, AFTER_EXIT, concurrency=10)

    assert batch.outcomes == {"ok": 10}, [r.detail for r in batch.results]


@needs_inotifywait
async def test_inotifywait_misses_after_rename(run_batch):
    # Its watch stays on the renamed file's inode: the new file's writes go unreported.
    batch = await run_batch(
        recipe("inotifywait"), 10, (), lines=20, max_gap=0.01, faults=ROTATION, concurrency=10
    )

    assert batch.findings["lost"] == 10


@needs_strace
@needs_tail
async def test_strace_widening_delays_exit(run_batch):
    # tail closes stdout and stderr right before it exits. Holding each close(2)
    # open for 50 ms keeps its watch in place 100 ms longer after the writer's exit.
    target = recipe("tail-f-pid", strace_delays={"close": 0.05})
    batch = await run_batch(target, 4, AFTER_EXIT, concurrency=4)

    assert batch.outcomes == {"ok": 4}, [r.detail for r in batch.results]
    assert all(r.exit_latency is not None and r.exit_latency >= 0.1 for r in batch.results)


def _processes_running(needle: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as file:
                if needle.encode() in file.read():
                    found.append(int(name))
        except (OSError, ValueError):
            continue
    return found


def _zombie_children() -> list[int]:
    zombies = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as file:
                stat = file.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z" and fields[1] == str(os.getpid()):
            zombies.append(int(name))
    return zombies


@pytest.mark.parametrize("ignore_sigterm", [False, True], ids=["sigterm", "ignores-sigterm"])
async def test_deadlock_hang_with_evidence(run_batch, tmp_path, ignore_sigterm):
    flags = ["--ignore-sigterm"] if ignore_sigterm else []
    target = CommandTarget("hangs", [sys.executable, HANGS, "{path}", *flags], done="stdin")

    with trio.fail_after(60):
        batch = await run_batch(target, 3, AFTER_EXIT, concurrency=3)

    assert batch.findings["hang"] == 3
    assert batch.findings["lost"] == 0
    detail = batch.results[0].detail
    for evidence in ("wchan: ", "stack: ", "State: S", "fds (", "anon_inode:inotify"):
        assert evidence in detail
    assert "(the followed file)" in detail
    assert "last output" in detail
    assert "stressor w=1 seq=" in detail
    if ignore_sigterm:
        ignored = int(re.search(r"SigIgn: ([0-9a-f]+)", detail)[1], 16)
        assert ignored & (1 << (signal.SIGTERM - 1))
    assert _processes_running(str(tmp_path)) == []  # the program's argv names the file
    assert _zombie_children() == []
    assert os.listdir(tmp_path) == []


def test_scenario_file_commands_and_recipes(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'targets = ["tail-F", "mine"]\n'
        "[[commands]]\n"
        'name = "mine"\n'
        'argv = ["prog", "{path}"]\n'
        'done = "stdin"\n'
        "[expect]\n"
        'mine = ["lost"]\n'
    )

    loaded = load_scenario_file(str(path))
    extra = loaded.settings["extra_targets"]

    assert sorted(extra) == ["mine", "tail-F"]
    assert extra["mine"].done == "stdin"
    assert extra["tail-F"].argv[-1] == "{path}"
    expectations = build_expectations(("tail-F", "mine"), [(loaded.expect, [], "file")], extra)
    assert expectations["mine"].expect == {"lost"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = "x"\nargv = ["p"]\ndone = "later"', r"commands\[0\]\.done: invalid value 'later'"),
        ('name = "x"\nrecipe = "tail-X"', r"commands\[0\]\.recipe.*choose one of tail-F"),
        ('name = "x"', r"commands\[0\]\.argv.*give the program's argv"),
        ('name = "x"\nargv = ["p"]\ntimeout = 1', r"commands\[0\]\.timeout.*unknown key"),
    ],
)
def test_scenario_file_bad_commands(tmp_path, table, message):
    path = tmp_path / "s.toml"
    path.write_text("[[commands]]\n" + table + "\n")

    with pytest.raises(ConfigError, match=message):
        load_scenario_file(str(path))


async def test_watchdog_example_rotation(run_batch):
    pytest.importorskip("watchdog")
    script = os.path.join(os.path.dirname(__file__), "..", "examples", "watchdog_follower.py")
    target = CommandTarget("watchdog", [sys.executable, script, "{path}"], done="stdin")

    batch = await run_batch(target, 10, AFTER_EXIT, lines=20, faults=ROTATION, concurrency=10)

    assert batch.outcomes == {"ok": 10}, [r.detail or r.outcome for r in batch.results]


@needs_tail
async def test_helper_outliving_leader_is_killed(run_batch, tmp_path):
    # The helper ignores SIGTERM, so it outlives the leader and only SIGKILL ends it.
    script = """(trap '' TERM; exec tail -f "$0" > /dev/null) & exec tail -n +1 -s 0.05 -F "$0" """
    target = CommandTarget("with-helper", ["sh", "-c", script, "{path}"])

    with trio.fail_after(60):
        batch = await run_batch(target, 3, AFTER_EXIT, concurrency=3)

    assert batch.outcomes == {"ok": 3}, [r.detail for r in batch.results]
    assert _processes_running(str(tmp_path)) == []  # both tails' argv names the file
    assert os.listdir(tmp_path) == []


@needs_tail
async def test_signal_mode_death_by_signal(run_batch):
    target = CommandTarget("tail-term", ["tail", "-n", "+1", "-F", "{path}"], done="signal")

    batch = await run_batch(target, 4, (), concurrency=4)

    assert batch.outcomes == {"ok": 4}, [r.detail for r in batch.results]


async def test_failed_program_is_a_crash(run_batch):
    script = "echo starting; echo 'no such file' >&2; exit 3"
    target = CommandTarget("fails", ["sh", "-c", script], done="stdin", ready="start")

    batch = await run_batch(target, 2, (), lines=1, concurrency=2)

    assert batch.findings["crash"] == 2
    assert batch.results[0].detail == (
        "follower raised CommandError: fails exited with status 3: no such file"
    )


@needs_tail
async def test_file_source_reads_output(run_batch):
    def leftovers() -> list[str]:
        return [name for name in os.listdir(tempfile.gettempdir()) if "stressor-output-" in name]

    before = leftovers()
    # tail writes to {output}, a file stressor reads, instead of its stdout.
    argv = ["sh", "-c", 'exec tail -n +1 -F "$0" > "$1"', "{path}", "{output}"]
    target = CommandTarget("tail-to-file", argv, source="file")

    batch = await run_batch(target, 6, AFTER_EXIT, faults=ROTATION, concurrency=6)

    assert batch.outcomes == {"ok": 6}, [r.detail for r in batch.results]
    assert leftovers() == before


@needs_tail
def test_recipe_as_command_line_target(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "stressor", "run", "--target", "tail-F", "--cycles", "5",
         "--metrics-port", "0", "--quiet", "--expect", "tail-F=lost", "--allow", "tail-F=hang"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip

    # tail -F loses nothing here, so the made-up expectation fails: the recipe ran.
    assert result.returncode == 1, result.stderr
    assert "tail-F: expected lost never happened in 5 cycles" in result.stdout


def test_output_parser_drops_overlong_line():
    parser = OutputParser()

    for _ in range(20):
        assert parser.feed(b"x" * 65536) == []
    found = parser.feed(b"tail of the long line\n" + line(1))

    assert found == [line(1)]
    assert parser.ignored == 1
    assert not parser._pending
