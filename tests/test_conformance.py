"""The simulated inotify against the kernel: the same operations must give the same events.

Each script runs twice, on real files with kernel inotify and on fake files with
the simulation. Both watch the followed file and its directories with every event
bit (``IN_ALL_EVENTS``), and the scripts act through stressor's own writer and
rotations, so the file operations are exactly those of a cycle's faults. The
events are compared as (watch descriptor, watched path, mask names, entry name,
cookie group), cookies only as "the same cookie as the event it pairs with".
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
from collections.abc import Callable

import pytest

from stressor.backends import Backend, InotifyInstance, current_backend, use_backend
from stressor.backends.fake import FakeBackend
from stressor.backends.fake_inotify import (
    IN_ALL_EVENTS,
    IN_DONT_FOLLOW,
    IN_EXCL_UNLINK,
    IN_MASK_ADD,
    IN_MASK_CREATE,
    IN_ONESHOT,
    IN_ONLYDIR,
)
from stressor.backends.real import RealBackend
from stressor.cycle_files import prepare_files
from stressor.faults import FAULT_KINDS
from stressor.rotations import CHAIN_KEEP, ROTATION_METHODS, rotate
from stressor.targets.base import LineReader
from stressor.watchers import inotify
from stressor.writers import Writer

Event = tuple[int, str, str, str, str]


@dataclasses.dataclass
class Lab:
    """One run of a script: the backend, a watched file, its writer and optionally a reader."""

    backend: Backend
    directory: str
    path: str
    instance: InotifyInstance
    writer: Writer
    reader: LineReader | None
    labels: dict[int, str] = dataclasses.field(default_factory=dict)
    steps: list[tuple[str, list[Event]]] = dataclasses.field(default_factory=list)
    cookies: dict[int, str] = dataclasses.field(default_factory=dict)
    batch: list[Event] = dataclasses.field(default_factory=list)
    spare: list[InotifyInstance] = dataclasses.field(default_factory=list)

    @property
    def fs(self):  # noqa: ANN201 - the backend's os, typed by its protocol
        return self.backend.os

    def watch(self, path: str, mask: int = IN_ALL_EVENTS) -> int:
        wd = self.instance.add_watch(path, mask)
        self.labels.setdefault(wd, os.path.relpath(path, self.directory))
        return wd

    def collect(self) -> None:
        """Read every queued event into the current batch, normalised."""
        while events := self.instance.read_events():
            for event in events:
                cookie = ""
                if event.cookie:
                    cookie = self.cookies.setdefault(event.cookie, f"c{len(self.cookies) + 1}")
                label = self.labels.get(event.wd, "?") if event.wd >= 0 else "-"
                self.batch.append(
                    (event.wd, label, inotify.mask_names(event.mask), event.name, cookie)
                )

    def step(self, label: str, action: Callable[[], object], *, read_now: bool = True) -> None:
        """Run one operation, let the reader read, and record the events it raised."""
        try:
            action()
        except OSError as error:
            self.batch.append((0, "error", errno.errorcode[error.errno or 0], "", ""))
        if self.reader is not None:
            self.reader.read_lines()
        if read_now:
            self.collect()
            self.steps.append((label, self.batch))
            self.batch = []


def open_lab(backend: Backend, directory: str, *, symlink: bool, reader: bool) -> Lab:
    """Lay out the file as a cycle does, and watch it and its directories."""
    fs = backend.os
    if isinstance(backend, FakeBackend):
        backend.os.makedirs(directory, 0o700, exist_ok=True)
    files = prepare_files(backend, directory, "lab", 0, symlink, shared=None)
    cycle_directory = files.own_directory
    assert cycle_directory is not None
    path = files.path
    instance = backend.open_inotify()
    writer = Writer(path, line_format="plain")
    read = LineReader(fs.open(path, os.O_RDONLY | os.O_CLOEXEC)) if reader else None
    lab = Lab(backend, cycle_directory, path, instance, writer, read)
    lab.watch(path)
    lab.watch(cycle_directory)
    if symlink:
        lab.watch(os.path.join(cycle_directory, "target"))
    lab.collect()
    lab.steps.append(("setup", lab.batch))
    lab.batch = []
    return lab


def close_lab(lab: Lab) -> None:
    """End as a cycle does: the writer and the reader close, then the events are read."""
    lab.step("writer closes", lab.writer.close)
    if lab.reader is not None:
        reader = lab.reader
        lab.reader = None
        lab.step("reader closes", lambda: lab.fs.close(reader.fd))


Script = Callable[[Lab], None]


def _late_write(lab: Lab) -> None:
    lab.step("write", lab.writer.write_line)
    lab.step("late write", lab.writer.write_line)


def _burst(lab: Lab) -> None:
    def burst() -> None:
        for _ in range(20):
            lab.writer.write_line("burst")

    lab.step("burst", burst)


def _partial_completed(lab: Lab) -> None:
    lab.step("write", lab.writer.write_line)
    lab.step("partial", lambda: lab.writer.write_partial("partial"))
    lab.step("completed", lab.writer.complete_partial)


def _partial_abandoned(lab: Lab) -> None:
    lab.step("partial", lambda: lab.writer.write_partial("partial"))
    lab.step("abandoned", lab.writer.abandon_partial)


def _partial_across_rotation(lab: Lab) -> None:
    # The rest of the line goes to the descriptor the line started on, which is
    # then the only one left open on the rotated file.
    lab.step("partial", lambda: lab.writer.write_partial("partial"))
    lab.step("rotate", lambda: rotate(lab.writer, "rename-create", 1))
    lab.step("completed", lab.writer.complete_partial)
    lab.step("write", lab.writer.write_line)


def _rotations(method: str, count: int, *, follow_name: bool) -> Script:
    def script(lab: Lab) -> None:
        lab.step("write", lab.writer.write_line)
        for number in range(1, count + 1):
            lab.step(f"rotate {number}", lambda n=number: rotate(lab.writer, method, n))
            if follow_name:
                # As the reference follower does: watch the file the path names now.
                lab.step("watch again", lambda: lab.watch(lab.path))
            lab.step("write", lab.writer.write_line)

    return script


def _kind_scripts() -> dict[str, tuple[Script, bool]]:
    """Scripts per fault kind and rotation method: name -> (script, needs a symlink)."""
    scripts: dict[str, tuple[Script, bool]] = {
        "late-write": (_late_write, False),
        "burst": (_burst, False),
        "partial-line-completed": (_partial_completed, False),
        "partial-line-abandoned": (_partial_abandoned, False),
        "partial-line-across-rotation": (_partial_across_rotation, False),
    }
    for method in ROTATION_METHODS:
        # Enough rotations for the chain to replace its oldest file.
        count = CHAIN_KEEP + 1 if method == "chain" else 2
        symlink = method == "symlink-swap"
        scripts[f"rotate-{method}"] = (_rotations(method, count, follow_name=False), symlink)
        followed = _rotations(method, count, follow_name=True)
        scripts[f"rotate-{method}-follow-name"] = (followed, symlink)
    return scripts


KIND_SCRIPTS = _kind_scripts()


def test_scripts_cover_fault_kinds():
    # pause and cancel act on no file, so they need no script.
    with_files = set(FAULT_KINDS) - {"pause", "cancel"}
    assert with_files == {"late-write", "burst", "partial-line", "rotate"}
    for kind in with_files:
        assert any(name.startswith(kind) for name in KIND_SCRIPTS), kind
    for method in ROTATION_METHODS:
        assert f"rotate-{method}" in KIND_SCRIPTS


async def run_script(
    backend: Backend, directory: str, script: Script, *, symlink: bool, reader: bool
) -> list[tuple[str, list[Event]]]:
    with use_backend(backend):
        lab = open_lab(backend, directory, symlink=symlink, reader=reader)
        try:
            script(lab)
            close_lab(lab)
        finally:
            for instance in [lab.instance, *lab.spare]:
                await instance.aclose()
    return lab.steps


async def run_both(tmp_path, script: Script, *, symlink: bool = False, reader: bool = False):
    """Run ``script`` on real and on fake files; return (kernel steps, simulated steps)."""
    directory = str(tmp_path / "lab")
    os.mkdir(directory)
    real = await run_script(RealBackend(), directory, script, symlink=symlink, reader=reader)
    fake = await run_script(FakeBackend(), directory, script, symlink=symlink, reader=reader)
    return real, fake


def assert_same(real, fake) -> None:
    assert [label for label, _ in fake] == [label for label, _ in real]
    for (label, expected), (_, got) in zip(real, fake, strict=True):
        assert got == expected, f"step {label!r}: kernel {expected}, simulation {got}"


@pytest.mark.parametrize("reader", [False, True], ids=["writer-only", "with-reader"])
@pytest.mark.parametrize("name", list(KIND_SCRIPTS))
async def test_fault_kind_events_match_kernel(tmp_path, name, reader):
    script, symlink = KIND_SCRIPTS[name]

    real, fake = await run_both(tmp_path, script, symlink=symlink, reader=reader)

    assert_same(real, fake)
    assert any(events for _, events in real)


def _unread_until_end(script: Script) -> Script:
    """Run ``script`` leaving events unread until the end, so identical ones merge."""

    def unread(lab: Lab) -> None:
        original = lab.step

        def step(label: str, action: Callable[[], object], *, read_now: bool = True) -> None:
            original(label, action, read_now=False)

        lab.step = step  # type: ignore[method-assign]
        script(lab)
        lab.step = original  # type: ignore[method-assign]

    return unread


@pytest.mark.parametrize("name", list(KIND_SCRIPTS))
async def test_fault_kind_events_match_kernel_when_read_late(tmp_path, name):
    script, symlink = KIND_SCRIPTS[name]

    real, fake = await run_both(tmp_path, _unread_until_end(script), symlink=symlink, reader=True)

    assert_same(real, fake)


# Operations beyond the faults: the rules the simulation encodes, one script each.


def _hard_links(lab: Lab) -> None:
    link = lab.path + ".hard"
    lab.step("link", lambda: lab.fs.link(lab.path, link))
    lab.step("unlink first name", lambda: lab.fs.unlink(lab.path))
    lab.step("write", lab.writer.write_line)
    lab.step("unlink last name", lambda: lab.fs.unlink(link))


def _attributes_and_sizes(lab: Lab) -> None:
    lab.step("chmod", lambda: lab.fs.chmod(lab.path, 0o640))
    lab.step("empty write", lambda: lab.fs.write(lab.writer._fd, b""))
    lab.step("write", lab.writer.write_line)
    lab.step("truncate", lambda: lab.fs.truncate(lab.path, 3))
    lab.step("ftruncate", lambda: lab.fs.ftruncate(lab.writer._fd, 0))
    lab.step("truncate empty file", lambda: lab.fs.truncate(lab.path, 0))

    def reopen_truncating() -> None:
        lab.writer.write_line()
        lab.fs.close(lab.fs.open(lab.path, os.O_WRONLY | os.O_TRUNC))

    lab.step("open with O_TRUNC", reopen_truncating)

    def read_at_end() -> None:
        fd = lab.fs.open(lab.path, os.O_RDONLY)
        lab.fs.read(fd, 100)
        lab.fs.read(fd, 100)
        lab.fs.pread(fd, 10, 0)
        lab.fs.close(fd)

    lab.step("read to the end", read_at_end)


def _copies(lab: Lab) -> None:
    copy = lab.path + ".copy"
    lab.step("copy empty file", lambda: lab.backend.copyfile(lab.path, copy))
    lab.step("write", lab.writer.write_line)
    lab.step("copy onto existing", lambda: lab.backend.copyfile(lab.path, copy))
    lab.step("duplicate and close", lambda: lab.fs.close(lab.fs.dup(lab.writer._fd)))


def _directories(lab: Lab) -> None:
    sub = os.path.join(lab.directory, "sub")
    lab.step("mkdir", lambda: lab.fs.mkdir(sub, 0o700))
    lab.step("watch it", lambda: lab.watch(sub))
    lab.step("rename it", lambda: lab.fs.rename(sub, sub + "2"))
    lab.step("symlink in it", lambda: lab.fs.symlink(lab.path, os.path.join(sub + "2", "l")))
    lab.step("remove the symlink", lambda: lab.fs.unlink(os.path.join(sub + "2", "l")))
    lab.step("rmdir it", lambda: lab.fs.rmdir(sub + "2"))


def _merge_ignores_cookie(lab: Lab) -> None:
    elsewhere = os.path.join(os.path.dirname(lab.directory), "elsewhere")
    lab.fs.mkdir(elsewhere, 0o700)
    instance = lab.backend.open_inotify()
    lab.spare.append(instance)

    def move_away_twice() -> None:
        instance.add_watch(lab.directory, inotify.IN_MOVED_FROM)
        for number in range(2):
            name = os.path.join(lab.directory, "moved")
            lab.fs.close(lab.fs.open(name, os.O_CREAT | os.O_WRONLY, 0o600))
            lab.fs.rename(name, os.path.join(elsewhere, f"moved{number}"))
        # Two IN_MOVED_FROM with equal names and different cookies: one is left.
        left = [
            (event.wd, inotify.mask_names(event.mask), event.name)
            for event in instance.read_events()
        ]
        lab.batch.append((len(left), "second instance", str(left), "", ""))

    lab.step("moved away twice", move_away_twice)


def _watch_flags(lab: Lab) -> None:
    modify, attrib = inotify.IN_MODIFY, inotify.IN_ATTRIB
    lab.step("oneshot", lambda: lab.watch(lab.path, modify | IN_ONESHOT))
    lab.step("write twice", lambda: [lab.writer.write_line() for _ in range(2)])
    lab.step("watch modify", lambda: lab.watch(lab.path, modify))
    lab.step("add attrib", lambda: lab.watch(lab.path, attrib | IN_MASK_ADD))
    lab.step("write", lab.writer.write_line)
    lab.step("chmod", lambda: lab.fs.chmod(lab.path, 0o600))
    lab.step("mask create on a watch", lambda: lab.watch(lab.path, attrib | IN_MASK_CREATE))
    lab.step("add and create", lambda: lab.watch(lab.path, attrib | IN_MASK_CREATE | IN_MASK_ADD))
    lab.step("onlydir on a file", lambda: lab.watch(lab.path, modify | IN_ONLYDIR))
    lab.step("no event bits", lambda: lab.watch(lab.path, 0))
    lab.step("missing path", lambda: lab.watch(lab.path + ".missing"))
    lab.step("remove unknown watch", lambda: lab.instance.rm_watch(999))

    def exclude_unlinked() -> None:
        lab.watch(lab.directory, IN_ALL_EVENTS | IN_EXCL_UNLINK)
        lab.fs.unlink(lab.path)
        lab.writer.write_line()

    lab.step("exclude unlinked", exclude_unlinked)

    link = os.path.join(lab.directory, "link")

    def watch_symlink_itself() -> None:
        lab.fs.symlink(lab.path + ".other", link)
        lab.watch(link, IN_ALL_EVENTS | IN_DONT_FOLLOW)

    lab.step("watch a symlink itself", watch_symlink_itself)
    lab.step("move the symlink", lambda: lab.fs.replace(link, link + ".moved"))
    lab.step("remove the symlink", lambda: lab.fs.unlink(link + ".moved"))

    def remove_watches() -> None:
        for wd in sorted(lab.labels):
            with contextlib.suppress(OSError):
                lab.instance.rm_watch(wd)

    lab.step("remove every watch", remove_watches)


PRIMITIVE_SCRIPTS: dict[str, Script] = {
    "hard-links": _hard_links,
    "attributes-and-sizes": _attributes_and_sizes,
    "copies": _copies,
    "directories": _directories,
    "merge-ignores-cookie": _merge_ignores_cookie,
    "watch-flags": _watch_flags,
}


@pytest.mark.parametrize("reader", [False, True], ids=["writer-only", "with-reader"])
@pytest.mark.parametrize("name", list(PRIMITIVE_SCRIPTS))
async def test_operation_events_match_kernel(tmp_path, name, reader):
    real, fake = await run_both(tmp_path, PRIMITIVE_SCRIPTS[name], reader=reader)

    assert_same(real, fake)


def _max_queued_events() -> int | None:
    try:
        with open("/proc/sys/fs/inotify/max_queued_events") as file:
            return int(file.read())
    except (OSError, ValueError):
        return None


async def _fill_queue(backend: Backend, directory: str, writes: int) -> list[tuple[int, str]]:
    """Alternate events of two watches (so none merge) past the queue limit; read them all."""
    with use_backend(backend):
        fs = current_backend().os
        path = os.path.join(directory, "full.log")
        fd = fs.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        instance = backend.open_inotify()
        try:
            instance.add_watch(directory, inotify.IN_MODIFY)
            instance.add_watch(path, inotify.IN_MODIFY)
            for _ in range(writes):
                fs.write(fd, b"x")
            events = []
            while batch := instance.read_events():
                events += [(event.wd, inotify.mask_names(event.mask)) for event in batch]
            fs.write(fd, b"x")
            events += [
                (event.wd, inotify.mask_names(event.mask)) for event in instance.read_events()
            ]
            return events
        finally:
            fs.close(fd)
            await instance.aclose()


async def test_queue_overflow_matches_kernel(tmp_path):
    limit = _max_queued_events()
    if limit is None or limit > 200_000:
        pytest.skip(f"max_queued_events is {limit}; too large to fill in a test")
    directory = str(tmp_path)
    fake_backend = FakeBackend(max_queued_events=limit)
    fake_backend.os.makedirs(directory, 0o700, exist_ok=True)
    writes = limit // 2 + 3

    real = await _fill_queue(RealBackend(), directory, writes)
    fake = await _fill_queue(fake_backend, directory, writes)

    assert fake == real
    assert len(real) == limit + 1 + 2
    assert real[limit] == (-1, "IN_Q_OVERFLOW")
