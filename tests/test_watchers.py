"""Watchers on real files with kernel inotify: the correct one and the fsnotify v1.2.11 model."""

from __future__ import annotations

import os

import pytest
import trio

from stressor.hooks import HookPoint, Hooks
from stressor.watchers import inotify
from stressor.watchers.event import Op
from stressor.watchers.fsnotify import open_fsnotify_watcher
from stressor.watchers.kernel import open_inotify_watcher
from stressor.watchers.polling import open_polling_watcher


def append(path, data: bytes = b"line\n") -> None:
    with open(path, "ab") as file:
        file.write(data)


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "test.log"
    path.write_bytes(b"")
    return str(path)


def test_parse_events_decodes_names():
    header = inotify._HEADER.pack(3, inotify.IN_MODIFY, 0, 8) + b"abc\0\0\0\0\0"
    ignored = inotify._HEADER.pack(3, inotify.IN_IGNORED, 0, 0)

    events = inotify.parse_events(header + ignored)

    assert events == [
        inotify.RawEvent(3, inotify.IN_MODIFY, 0, "abc"),
        inotify.RawEvent(3, inotify.IN_IGNORED, 0, ""),
    ]
    assert events[1].describe() == "IN_IGNORED"


def test_add_watch_missing_file_raises_oserror(tmp_path):
    fd = inotify.init()
    try:
        with pytest.raises(FileNotFoundError) as caught:
            inotify.add_watch(fd, str(tmp_path / "missing"), inotify.FSNOTIFY_MASK)
    finally:
        os.close(fd)

    assert caught.value.filename == str(tmp_path / "missing")


async def test_kernel_watcher_reports_write(log_file):
    with trio.fail_after(5):
        async with open_inotify_watcher(Hooks()) as watcher:
            watcher.add(log_file)
            append(log_file)
            event = await watcher.events.receive()

    assert event.path == log_file
    assert event.op == Op.WRITE


async def test_kernel_watcher_remove_does_not_wait_for_reader(log_file):
    hooks = Hooks()
    with trio.fail_after(5):
        async with open_inotify_watcher(hooks) as watcher:
            watcher.add(log_file)
            append(log_file)
            await trio.testing.wait_all_tasks_blocked()
            await watcher.remove(log_file)

    assert set(hooks.fired_at) == {HookPoint.BEFORE_REMOVE, HookPoint.AFTER_REMOVE}


async def test_kernel_watcher_closes_descriptor(log_file):
    before = inotify.count_instances()
    with trio.fail_after(5):
        async with open_inotify_watcher(Hooks()) as watcher:
            watcher.add(log_file)
            assert inotify.count_instances() == before + 1

    assert inotify.count_instances() == before


async def test_fsnotify_remove_waits_for_pending_event(log_file):
    # The reader holds a modify event nobody receives, so IN_IGNORED is never
    # reached and the removal cannot return: the 2016 deadlock.
    with trio.fail_after(5):
        async with open_fsnotify_watcher(Hooks()) as watcher:
            watcher.add(log_file)
            append(log_file)
            with trio.move_on_after(0.3) as scope:
                await watcher.remove(log_file)

    assert scope.cancelled_caught


async def test_fsnotify_remove_returns_when_events_received(log_file):
    with trio.fail_after(5):
        async with open_fsnotify_watcher(Hooks()) as watcher:
            watcher.add(log_file)
            append(log_file)

            async def receive_events() -> None:
                while True:
                    await watcher.events.receive()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive_events)
                error = await watcher.remove(log_file)
                nursery.cancel_scope.cancel()

    assert error is None


async def test_fsnotify_remove_without_pending_event_returns(log_file):
    with trio.fail_after(5):
        async with open_fsnotify_watcher(Hooks()) as watcher:
            watcher.add(log_file)
            error = await watcher.remove(log_file)
            second = await watcher.remove(log_file)

    assert error is None
    assert "non-existent" in str(second)


async def test_fsnotify_v1_4_7_remove_does_not_wait(log_file):
    with trio.fail_after(5):
        async with open_fsnotify_watcher(Hooks(), remove_waits=False) as watcher:
            watcher.add(log_file)
            append(log_file)
            await trio.testing.wait_all_tasks_blocked()
            error = await watcher.remove(log_file)

    assert error is None


async def test_fsnotify_drops_event_for_missing_path(log_file):
    received = []
    with trio.fail_after(5):
        async with open_fsnotify_watcher(Hooks()) as watcher:
            watcher.add(log_file)
            with open(log_file, "ab") as file:
                file.write(b"x\n")
                os.unlink(log_file)
            with trio.move_on_after(0.3):
                while True:
                    received.append((await watcher.events.receive()).op)

    assert Op.REMOVE in received
    assert not any(op & Op.WRITE for op in received)


async def test_fsnotify_close_releases_blocked_reader(log_file):
    before = inotify.count_instances()
    with trio.fail_after(5):
        async with open_fsnotify_watcher(Hooks()) as watcher:
            watcher.add(log_file)
            append(log_file)
            await trio.testing.wait_all_tasks_blocked()
            assert watcher.events.ready()

    assert inotify.count_instances() == before


async def test_polling_watcher_reports_write(log_file):
    with trio.fail_after(5):
        async with open_polling_watcher(Hooks(), interval=0.001) as watcher:
            watcher.add(log_file)
            append(log_file)
            event = await watcher.events.receive()

    assert event.op == Op.WRITE
