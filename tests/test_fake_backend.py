"""The fake backend: the simulated inotify, the fake os, targets on fake files, exact replay."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import trio
import trio.testing

from stressor import PythonTarget, Watcher, WriterDone
from stressor.backends import current_backend, make_backend, redirect_os, use_backend
from stressor.backends.fake import FAKE_EPOCH, FakeBackend
from stressor.backends.virtual_time import VirtualClock, run_in_virtual_time
from stressor.cycle import CycleLimits, CycleSetup, run_cycle
from stressor.exact import REPLAY_DIRECTORY, run_cycle_exactly, scheduling_seed
from stressor.faults import FaultSpec
from stressor.formats import format_line
from stressor.hooks import HookPoint
from stressor.replay import replay_command
from stressor.results import CycleResult
from stressor.rotations import ROTATION_METHODS
from stressor.scenario import ConfigError, Scenario
from stressor.scenario_file import load_scenario_file
from stressor.schedule import make_schedule
from stressor.targets import get_target
from stressor.targets.base import FollowContext, LineReader
from stressor.watchers import inotify

WINDOW = (HookPoint.AFTER_EXIT, HookPoint.BEFORE_REMOVE, HookPoint.AFTER_REMOVE)
EVERY_POINT = (HookPoint.BEFORE_START, HookPoint.MID_STREAM, *WINDOW)
DOUBLE_ROTATION = FaultSpec("rotate", (HookPoint.AFTER_EXIT,), method="chain", count=2)


def fake_setup(**fields: object) -> CycleSetup:
    """Return a setup whose cycles each run in a fresh fake file system."""
    return CycleSetup(backend="fake", **fields)  # type: ignore[arg-type]


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """Virtual time for the test, as exact replays use it (pytest-trio picks up the clock)."""
    return VirtualClock()


@pytest.fixture
def fake():
    """A fake backend made current for the test, with /work as a writable directory."""
    backend = FakeBackend(record=True)
    backend.os.makedirs("/work", 0o700)
    with use_backend(backend):
        yield backend


# --- the simulated inotify -------------------------------------------------------------


def write(fake: FakeBackend, path: str, data: bytes = b"x\n") -> None:
    fd = fake.os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fake.os.write(fd, data)
    finally:
        fake.os.close(fd)


def events(instance) -> list[tuple[int, str, str]]:
    return [(e.wd, inotify.mask_names(e.mask), e.name) for e in instance.read_events()]


async def test_watch_descriptors_follow_the_inode(fake):
    write(fake, "/work/a")
    fake.os.symlink("/work/a", "/work/link")
    instance = fake.open_inotify()

    first = instance.add_watch("/work/a", inotify.IN_MODIFY)
    again = instance.add_watch("/work/link", inotify.IN_ATTRIB)
    other = instance.add_watch("/work", inotify.IN_CREATE)
    write(fake, "/work/a")
    fake.os.chmod("/work/a", 0o600)

    assert first == again == 1
    assert other == 2
    # The second add replaced the mask: the write raises nothing any more.
    assert events(instance) == [(1, "IN_ATTRIB", "")]


async def test_rm_watch_queues_ignored_and_rejects_unknown(fake):
    write(fake, "/work/a")
    instance = fake.open_inotify()
    wd = instance.add_watch("/work/a", inotify.IN_MODIFY)

    instance.rm_watch(wd)
    with pytest.raises(OSError) as caught:
        instance.rm_watch(wd)

    assert caught.value.errno == errno.EINVAL
    assert events(instance) == [(wd, "IN_IGNORED", "")]


async def test_add_watch_errors_are_oserrors_with_the_path(fake):
    instance = fake.open_inotify()

    with pytest.raises(FileNotFoundError) as caught:
        instance.add_watch("/work/missing", inotify.IN_MODIFY)

    assert caught.value.filename == "/work/missing"


async def test_identical_unread_events_merge(fake):
    write(fake, "/work/a")
    instance = fake.open_inotify()
    instance.add_watch("/work/a", inotify.IN_MODIFY | inotify.IN_ATTRIB)

    for _ in range(5):
        write(fake, "/work/a")
    fake.os.chmod("/work/a", 0o600)
    write(fake, "/work/a")
    first = events(instance)
    write(fake, "/work/a")
    second = events(instance)

    assert first == [(1, "IN_MODIFY", ""), (1, "IN_ATTRIB", ""), (1, "IN_MODIFY", "")]
    # An event already read is not merged into.
    assert second == [(1, "IN_MODIFY", "")]


async def test_full_queue_queues_one_overflow():
    fake = FakeBackend(max_queued_events=4)
    fake.os.makedirs("/work", 0o700)
    write(fake, "/work/a")
    instance = fake.open_inotify()
    wd = instance.add_watch("/work/a", inotify.IN_ATTRIB)
    directory = instance.add_watch("/work", inotify.IN_ATTRIB)

    # The directory's and the file's events alternate, so none merge.
    for _ in range(4):
        fake.os.chmod("/work/a", 0o600)
    instance.rm_watch(wd)
    full = events(instance)

    # Four events fill the queue; then one overflow stands for all the rest,
    # IN_IGNORED included.
    pair = [(directory, "IN_ATTRIB", "a"), (wd, "IN_ATTRIB", "")]
    assert full == pair * 2 + [(-1, "IN_Q_OVERFLOW", "")]
    assert events(instance) == []


async def test_overflow_is_queued_again_once_read(fake):
    small = FakeBackend(max_queued_events=2)
    small.os.makedirs("/work", 0o700)
    write(small, "/work/a")
    instance = small.open_inotify()
    instance.add_watch("/work/a", inotify.IN_ATTRIB)
    instance.add_watch("/work", inotify.IN_ATTRIB)

    for _ in range(3):
        small.os.chmod("/work/a", 0o600)
    assert [mask for _, mask, _ in events(instance)] == ["IN_ATTRIB", "IN_ATTRIB", "IN_Q_OVERFLOW"]
    small.os.chmod("/work/a", 0o640)
    assert len(events(instance)) == 2


async def test_read_events_stops_at_one_read_size(fake):
    instance = fake.open_inotify()
    instance.add_watch("/work", inotify.IN_CREATE)
    name_bytes = 240
    for number in range(400):
        write(fake, f"/work/{number:0{name_bytes}d}")

    first = instance.read_events()
    rest = instance.read_events()

    # Each event is 16 bytes of header and 256 of padded name: 240 fit in 64 KiB.
    assert len(first) == inotify.READ_SIZE // (16 + 256)
    assert len(first) + len(rest) == 400


async def test_wait_readable_wakes_on_event_and_close(fake, virtual_clock):
    write(fake, "/work/a")
    instance = fake.open_inotify()
    instance.add_watch("/work/a", inotify.IN_MODIFY)
    woken_at = []

    async def wait() -> None:
        await instance.wait_readable()
        woken_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(1.5)
        write(fake, "/work/a")
    instance.read_events()

    closed = []

    async def wait_until_closed() -> None:
        try:
            await instance.wait_readable()
        except trio.ClosedResourceError as error:
            closed.append(error)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_until_closed)
        await trio.testing.wait_all_tasks_blocked()
        await instance.aclose()

    assert len(closed) == 1
    assert woken_at == [pytest.approx(1.5, abs=1e-3)]


async def test_delete_self_waits_for_last_close(fake):
    write(fake, "/work/a")
    instance = fake.open_inotify()
    wd = instance.add_watch("/work/a", inotify.IN_ATTRIB | inotify.IN_DELETE_SELF)
    fd = fake.os.open("/work/a", os.O_RDONLY)
    duplicate = fake.os.dup(fd)

    fake.os.unlink("/work/a")
    after_unlink = events(instance)
    fake.os.close(fd)
    after_first_close = events(instance)
    fake.os.close(duplicate)

    assert after_unlink == [(wd, "IN_ATTRIB", "")]
    assert after_first_close == []
    assert events(instance) == [(wd, "IN_DELETE_SELF", ""), (wd, "IN_IGNORED", "")]


async def test_trace_records_operations_and_events(fake):
    instance = fake.open_inotify()
    instance.add_watch("/work", inotify.IN_CREATE)
    before = len(fake.trace.entries)

    write(fake, "/work/a")

    entries = fake.trace.entries[before:]
    assert [entry.kind for entry in entries[:2]] == ["op", "event-queued"]
    assert entries[0].detail == "open /work/a fd 3"
    assert "IN_CREATE name 'a'" in entries[1].detail


# --- the fake os -----------------------------------------------------------------------


async def test_fake_os_touches_no_real_file(fake, tmp_path):
    path = str(tmp_path / "only-fake")
    fake.os.makedirs(str(tmp_path), 0o700, exist_ok=True)

    write(fake, path, b"hello\n")

    assert not os.path.exists(path)
    assert fake.os.stat(path).st_size == 6


async def test_fake_os_descriptors_share_offsets_like_dup(fake):
    write(fake, "/work/a", b"0123456789")
    fd = fake.os.open("/work/a", os.O_RDONLY)
    duplicate = fake.os.dup(fd)

    assert fake.os.read(fd, 4) == b"0123"
    assert fake.os.read(duplicate, 3) == b"456"
    assert fake.os.pread(fd, 2, 0) == b"01"
    assert fake.os.lseek(fd, 0, os.SEEK_CUR) == 7
    fake.os.close(fd)
    assert fake.os.read(duplicate, 10) == b"789"
    with pytest.raises(OSError) as caught:
        fake.os.read(fd, 1)
    assert caught.value.errno == errno.EBADF


async def test_fake_os_appends_after_truncate(fake):
    writer = fake.os.open("/work/a", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    fake.os.write(writer, b"0123456789")
    fake.os.truncate("/work/a", 0)
    fake.os.write(writer, b"ab")

    assert fake.os.stat("/work/a").st_size == 2
    fake.os.close(writer)


async def test_fake_os_refuses_functions_it_does_not_simulate(fake):
    assert fake.os.O_RDONLY == os.O_RDONLY
    with pytest.raises(AttributeError, match="not simulated"):
        fake.os.sendfile  # noqa: B018 - the lookup is what fails


async def test_fake_lines_carry_the_virtual_wall_clock(fake, virtual_clock):
    await trio.sleep(2.0)

    line = format_line(1, 1, trio.current_time(), "cri")

    assert line.startswith(b"2026-01-01T00:00:02")
    assert fake.utc_now().timestamp() == pytest.approx(FAKE_EPOCH + 2.0, abs=1e-3)


def test_backends_by_name():
    assert make_backend("real") is current_backend()
    assert make_backend("fake").name == "fake"
    with pytest.raises(ValueError, match="choose one of real, fake"):
        make_backend("tmpfs")


# --- every built-in target on fake files ---------------------------------------------------


async def test_reference_passes_late_writes_on_fake_files(run_batch, virtual_clock):
    batch = await run_batch("reference", 100, EVERY_POINT, setup=fake_setup())

    assert batch.outcomes == {"ok": 100}
    assert sum(result.window_hit for result in batch.results) > 0


@pytest.mark.parametrize("method", ROTATION_METHODS)
async def test_reference_passes_rotations_on_fake_files(run_batch, virtual_clock, method):
    symlink = method == "symlink-swap"
    spec = FaultSpec("rotate", EVERY_POINT, method=method, count=2)

    batch = await run_batch(
        "reference", 60, WINDOW, faults=(spec,), setup=fake_setup(symlink=symlink)
    )

    assert batch.findings == {}, [r for r in batch.results if r.findings][:3]


async def test_reference_passes_partials_and_bursts_fake(run_batch, virtual_clock):
    faults = (
        FaultSpec("partial-line", EVERY_POINT, delay=(1e-6, 0.005)),
        FaultSpec("burst", EVERY_POINT, lines=50),
    )

    batch = await run_batch("reference", 60, WINDOW, faults=faults, setup=fake_setup())

    assert batch.findings == {}


async def test_polling_passes_late_writes_on_fake_files(run_batch, virtual_clock):
    batch = await run_batch("polling", 60, EVERY_POINT, setup=fake_setup())

    assert batch.outcomes == {"ok": 60}


async def test_docker_1_12_1_hangs_late_write_fake(run_batch, virtual_clock):
    batch = await run_batch("docker-1.12.1", 100, (HookPoint.BEFORE_REMOVE,), setup=fake_setup())

    assert batch.findings["hang"] >= 90
    assert all(result.window_hit for result in batch.results)


async def test_docker_1_13_0_survives_late_write_fake(run_batch, virtual_clock):
    batch = await run_batch("docker-1.13.0", 100, (HookPoint.BEFORE_REMOVE,), setup=fake_setup())

    assert batch.findings["hang"] == 0
    assert batch.findings["crash"] == 0


async def test_docker_1_12_1_hangs_double_rotation_fake(run_batch, virtual_clock):
    batch = await run_batch("docker-1.12.1", 100, (), faults=(DOUBLE_ROTATION,), setup=fake_setup())

    assert batch.findings["hang"] >= 90


async def test_docker_17_12_0_survives_rotations_fake(run_batch, virtual_clock):
    batch = await run_batch(
        "docker-17.12.0", 100, (), faults=(DOUBLE_ROTATION,), setup=fake_setup()
    )

    assert batch.findings["hang"] == 0


@pytest.mark.parametrize(
    ("target", "points", "faults", "hangs"),
    [
        ("docker-1.12.1", (HookPoint.BEFORE_REMOVE,), (), True),
        ("docker-1.13.0", (HookPoint.BEFORE_REMOVE,), (), False),
        ("docker-1.12.1", (), (DOUBLE_ROTATION,), True),
        ("docker-17.12.0", (), (DOUBLE_ROTATION,), False),
    ],
    ids=["1.12.1-late-write", "1.13.0-late-write", "1.12.1-rotations", "17.12.0-rotations"],
)
async def test_controls_agree_on_real_and_fake_files(run_batch, target, points, faults, hangs):
    # Both on the real clock, the same schedules: hang rates agree in kind.
    with trio.fail_after(60):
        real = await run_batch(target, 40, points, faults=faults)
        fake = await run_batch(target, 40, points, faults=faults, setup=fake_setup())

    for batch in (real, fake):
        rate = batch.findings["hang"] / len(batch.results)
        assert (rate >= 0.9) if hangs else (rate == 0), (target, batch.outcomes)


# --- followers written outside stressor -----------------------------------------------------


class PollingTestFollower:
    """A follower from outside stressor that calls os itself, as tests/test_cycle.py does."""

    name = "outside-follower"
    description = "polls the file with os calls of its own"

    async def follow(self, ctx: FollowContext) -> None:
        fd = os.open(ctx.path, os.O_RDONLY)
        try:
            ctx.ready()
            reader = LineReader(fd)
            while not ctx.writer_done.is_closed():
                for line in reader.read_lines():
                    ctx.deliver(line)
                await trio.sleep(0.001)
            for line in reader.read_lines():
                ctx.deliver(line)
        finally:
            os.close(fd)


async def test_follower_calling_os_itself_runs_on_fake_files(run_batch, virtual_clock):
    batch = await run_batch(PollingTestFollower(), 30, WINDOW, setup=fake_setup())

    assert batch.outcomes == {"ok": 30}
    assert os is sys.modules["os"]


async def python_follow(path: str, watcher: Watcher, writer_done: WriterDone, deliver) -> None:
    """A Python follower of the API, with plain os calls (as in examples/my_follower.py)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    pending = b""

    def read_lines() -> None:
        nonlocal pending
        while chunk := os.read(fd, 65536):
            pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            deliver(line + b"\n")

    try:
        watcher.add(path)
        async with trio.open_nursery() as nursery:

            async def stop() -> None:
                await writer_done.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop)
            while True:
                read_lines()
                await watcher.events.receive()
        await watcher.remove(path)
        read_lines()
    finally:
        os.close(fd)


async def test_python_follower_runs_unchanged_on_fake_files(run_batch, virtual_clock):
    target = PythonTarget("python-follower", python_follow)

    batch = await run_batch(target, 40, WINDOW, setup=fake_setup())

    assert batch.outcomes == {"ok": 40}


async def test_redirect_os_restores_module(fake):
    with redirect_os(python_follow):
        assert os is not sys.modules["os"]
        # Looked up per call: a task on the real backend gets the real function.
        with use_backend(make_backend("real")):
            assert os.getpid == sys.modules["os"].getpid
        assert os.open == fake.os.open
    assert os is sys.modules["os"]


# --- exact replay ---------------------------------------------------------------------------

MIXED_FAULTS = (
    FaultSpec("partial-line", EVERY_POINT, probability=0.5, delay=(1e-6, 0.01)),
    FaultSpec("burst", EVERY_POINT, probability=0.3, lines=20),
    FaultSpec("rotate", EVERY_POINT, probability=0.5, method="rename-create", count=2),
    FaultSpec("rotate", WINDOW, probability=0.3, method="copytruncate"),
    FaultSpec("pause", EVERY_POINT, probability=0.3, delay=(1e-4, 0.02)),
)


@pytest.mark.parametrize("target_name", ["docker-1.12.1", "docker-1.13.0"])
@pytest.mark.parametrize("cycle", [0, 1, 2])
def test_replay_on_fake_files_is_exact(target_name, cycle):
    scenario = Scenario(
        targets=(target_name,),
        cycles=10,
        duration=None,
        seed=11,
        faults=MIXED_FAULTS,
        backend="fake",
        deadline=0.5,
        max_wait=5.0,
    )
    schedule = scenario.schedule(cycle)
    limits = CycleLimits(deadline=scenario.deadline, max_wait=scenario.max_wait)
    target = scenario.target(target_name)

    runs = [run_cycle_exactly(target, schedule, limits, scenario.cycle_setup()) for _ in range(20)]

    first = runs[0]
    assert first.trace
    for run in runs[1:]:
        assert run.trace == first.trace
        assert run.result == first.result
    # Same findings, lines and latencies, in virtual seconds.
    assert {run.result.findings for run in runs} == {first.result.findings}
    assert {run.result.delivery_latencies for run in runs} == {first.result.delivery_latencies}


def test_trace_leaves_virtual_times_alone():
    scenario = Scenario(
        targets=("docker-1.13.0",), cycles=10, duration=None, seed=3, faults=MIXED_FAULTS
    )
    schedule = scenario.schedule(4)
    limits = CycleLimits(deadline=scenario.deadline, max_wait=scenario.max_wait)
    target = scenario.target("docker-1.13.0")
    untraced = FakeBackend()

    async def run() -> CycleResult:
        with use_backend(untraced):
            untraced.os.makedirs(REPLAY_DIRECTORY, 0o700)
            return await run_cycle(target, schedule, REPLAY_DIRECTORY, limits, CycleSetup())

    seed = scheduling_seed(schedule.seed, schedule.cycle)
    without_trace = run_in_virtual_time(run, seed=seed)
    with_trace = run_cycle_exactly(target, schedule, limits, CycleSetup())

    assert with_trace.result == without_trace


def test_exact_replays_cover_hangs_and_passes():
    scenario = Scenario(
        targets=("docker-1.12.1",), cycles=10, duration=None, seed=11, backend="fake"
    )
    limits = CycleLimits(deadline=scenario.deadline, max_wait=scenario.max_wait)
    outcomes = {
        run_cycle_exactly(
            scenario.target("docker-1.12.1"),
            scenario.schedule(cycle),
            limits,
            scenario.cycle_setup(),
        ).result.outcome
        for cycle in range(12)
    }

    assert "hang" in outcomes
    assert outcomes - {"hang"}


def test_virtual_time_runs_repeat_with_many_tasks():
    async def race() -> list[int]:
        order: list[int] = []

        async def task(number: int) -> None:
            await trio.sleep(0.001)
            order.append(number)
            await trio.lowlevel.checkpoint()
            order.append(number)

        async with trio.open_nursery() as nursery:
            for number in range(30):
                nursery.start_soon(task, number)
        return order

    first = run_in_virtual_time(race, seed="a")

    assert all(run_in_virtual_time(race, seed="a") == first for _ in range(5))


def test_replay_command_runs_exactly_in_separate_processes(tmp_path):
    command = [
        sys.executable, "-m", "stressor", "replay", "--backend", "fake",
        "--target", "docker-1.12.1", "--seed", "5", "--cycle", "3",
        "--point", "before-remove", "--repeat", "2",
    ]  # fmt: skip
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "TMPDIR": str(tmp_path)}
        completed = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=60, check=False
        )
        assert completed.returncode == 0, completed.stderr
        outputs.append(completed.stdout)

    assert outputs[0] == outputs[1]
    assert "2 attempts: identical" in outputs[0]
    assert "attempt 1: hang" in outputs[0]
    assert list(tmp_path.iterdir()) == []


# --- scenarios, the command line and the engine ---------------------------------------------


def test_scenario_rejects_leak_checks_on_fake_files():
    with pytest.raises(ConfigError) as caught:
        Scenario(backend="fake", check_leaks=True, concurrency=1)

    message = str(caught.value)
    assert "--check-leaks/--backend" in message
    assert "/proc" in message


def test_scenario_rejects_an_unknown_backend():
    with pytest.raises(ConfigError, match="--backend: invalid value 'tmpfs'"):
        Scenario(backend="tmpfs")


def test_scenario_file_reads_the_backend(tmp_path):
    path = tmp_path / "fake.toml"
    path.write_text('backend = "fake"\ntargets = ["reference"]\n')

    loaded = load_scenario_file(str(path))

    assert loaded.settings["backend"] == "fake"
    assert loaded.sources["backend"] == f"{path}: backend"


def test_replay_command_names_the_fake_backend():
    scenario = Scenario(backend="fake")

    command = replay_command(scenario, "reference", 1, 2, None)

    assert command.endswith("--backend fake")


def test_run_on_fake_files_from_the_command_line(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    completed = subprocess.run(
        [
            sys.executable, "-m", "stressor", "run", "--backend", "fake",
            "--target", "reference", "--target", "docker-1.13.0", "--cycles", "30",
            "--metrics-port", "0", "--quiet", "--seed", "2",
        ],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "seed 2: passed" in completed.stdout
    assert list(tmp_path.iterdir()) == []


async def test_fake_cycle_uses_fresh_file_system(tmp_path):
    schedule = make_schedule(1, 0, lines=3, max_gap=0.0, points=WINDOW)
    limits = CycleLimits(deadline=0.5, max_wait=5.0)

    result = await run_cycle(
        get_target("reference"), schedule, str(tmp_path / "nowhere"), limits, fake_setup()
    )

    assert result.outcome == "ok"
    assert result.lines_written == result.lines_read == 4
    assert not (tmp_path / "nowhere").exists()
