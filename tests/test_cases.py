"""Scenarios distilled from public bug reports: the faulty follower is caught, the reference passes.

Each test states the writer's actions, the rotation and the timing of one report,
runs a small follower that has the fault, and runs ``reference`` on the same
scenario. Timing words follow the reports: "at once" is no pause, "within 1 ms"
is a pause drawn from 0 to 1 ms over many cycles.
"""

from __future__ import annotations

import faulty_followers as faulty
import pytest
import trio

from stressor.cycle import CycleSetup
from stressor.faults import FaultSpec
from stressor.hooks import HookPoint

AFTER_EXIT = (HookPoint.AFTER_EXIT,)
MID_STREAM = (HookPoint.MID_STREAM,)
AFTER_FIRST_READ = (HookPoint.AFTER_FIRST_READ,)


async def run_both(run_batch, follower, cycles, **scenario):
    """Run ``follower`` and ``reference`` on the same scenario; return both batches."""
    with trio.fail_after(120):
        caught = await run_batch(follower, cycles, (), **scenario)
        reference = await run_batch("reference", cycles, (), **scenario)
    return caught, reference


def assert_reference_passes(reference, cycles):
    assert len(reference.results) == cycles
    assert reference.findings == {}, [r for r in reference.results if r.findings][:2]


async def test_remove_while_event_pending(run_batch):
    # One line to an idle file, the writer exits at once and the follower is asked
    # to stop at once, with the line's modify event still queued.
    caught, reference = await run_both(
        run_batch, "docker-1.12.1", 100, lines=1, catch_up=False, settle=0.0
    )

    assert caught.findings["hang"] > 0
    assert_reference_passes(reference, 100)


async def test_remove_while_event_pending_on_reopen(run_batch):
    # Variant: appends without pause and rotates every eight lines (about 1 KiB);
    # the follower removes its watch on each reopen.
    setup = CycleSetup(rotate_every=8, rotate_method="rename-create")
    caught, reference = await run_both(
        run_batch, "docker-1.12.1", 50, lines=40, max_gap=0.0, setup=setup
    )

    assert caught.findings["hang"] > 0
    assert_reference_passes(reference, 50)


# The session starts with the cycle; the writer then writes for well over 50 ms.
LEAVE_MID_STREAM = (FaultSpec("cancel", (HookPoint.BEFORE_START,), delay=(0.01, 0.05)),)

# Variant: the writer exits first, then the client leaves while the follower is
# still at work (the pause keeps the follower from learning that the writer is done).
LEAVE_AFTER_EXIT = (
    FaultSpec("cancel", AFTER_EXIT, delay=(0.01, 0.05)),
    FaultSpec("pause", AFTER_EXIT, delay=(0.08, 0.08)),
)


@pytest.mark.parametrize("faults", [LEAVE_MID_STREAM, LEAVE_AFTER_EXIT], ids=["mid", "after"])
async def test_repeated_follow_cancel_leak(run_batch, faults):
    # The writer appends without pause for the whole session; the client leaves
    # 10 to 50 ms in. One cycle at a time so descriptors can be counted.
    setup = CycleSetup(check_leaks=True)
    follower = faulty.LeavesHandlesOnCancel()
    try:
        caught, reference = await run_both(
            run_batch, follower, 20, lines=60, max_gap=0.004, faults=faults,
            concurrency=1, setup=setup,
        )  # fmt: skip
    finally:
        follower.close_leaks()

    assert caught.findings["leak"] == 20
    assert "open descriptors" in caught.results[0].detail
    assert "inotify watches" in caught.results[0].detail
    assert_reference_passes(reference, 20)


async def test_idle_then_rename(run_batch):
    # A; idle longer than the follower's 10 ms timeout; then B, a rename to
    # NAME.1, a new NAME and C, all before the follower's next scan.
    faults = (
        FaultSpec("pause", AFTER_EXIT, delay=(0.05, 0.05)),
        FaultSpec("late-write", AFTER_EXIT),
        FaultSpec("rotate", AFTER_EXIT, method="rename-create"),
        FaultSpec("late-write", AFTER_EXIT),
    )
    caught, reference = await run_both(
        run_batch, faulty.ClosesIdleFile(), 20, lines=1, faults=faults
    )

    assert caught.findings["lost"] == 20
    assert all(result.lines_lost == 1 for result in caught.results)
    assert_reference_passes(reference, 20)
    assert all(result.lines_read == 3 for result in reference.results)


async def test_append_before_watch(run_batch):
    # A lands after the first read and before the watch exists; nothing more.
    faults = (FaultSpec("late-write", AFTER_FIRST_READ),)
    caught, reference = await run_both(
        run_batch, faulty.ReadsBeforeWatching(), 30, lines=0, faults=faults
    )

    assert caught.findings["lost"] == 30
    assert_reference_passes(reference, 30)
    assert all(result.lines_read == 1 for result in reference.results)


async def test_append_before_watch_rename_over(run_batch):
    # Variant: a new file is renamed over the followed one in that gap, then A.
    faults = (
        FaultSpec("rotate", AFTER_FIRST_READ, method="rename-over"),
        FaultSpec("late-write", AFTER_FIRST_READ),
    )
    caught, reference = await run_both(
        run_batch, faulty.ReadsBeforeWatching(), 30, lines=0, faults=faults
    )

    assert caught.findings["lost"] == 30
    assert_reference_passes(reference, 30)


async def test_rotation_every_write(run_batch):
    # Every write rotates first (NAME.1 removed, NAME renamed to NAME.1, new NAME),
    # one write every 0 to 100 ms.
    setup = CycleSetup(rotate_every=1, rotate_method="rename-create")
    caught, reference = await run_both(
        run_batch, "docker-1.12.1", 20, lines=8, max_gap=0.1, setup=setup
    )

    assert caught.findings["hang"] + caught.findings["duplicate"] > 0
    assert_reference_passes(reference, 20)
    assert all(result.lines_read == 8 for result in reference.results)


async def test_write_just_before_rename(run_batch):
    # L; within 1 ms NAME is renamed to NAME.1 and created again; then M.
    rotation = FaultSpec("rotate", MID_STREAM, method="rename-create", delay=(0, 0.001))
    caught, reference = await run_both(
        run_batch, faulty.ReopensWithoutDraining(), 50, lines=2, faults=(rotation,)
    )

    assert caught.findings["lost"] > 0
    assert_reference_passes(reference, 50)


async def test_symlink_target_rotation(run_batch):
    # The followed path is a symlink into another directory; the target rotates
    # there by rename and create; the writer goes on writing.
    rotation = FaultSpec("rotate", MID_STREAM, method="rename-create")
    caught, reference = await run_both(
        run_batch, faulty.WatchesLinkDirectoryOnly(), 30, lines=10, faults=(rotation,),
        symlink=True,
    )  # fmt: skip

    assert caught.findings["lost"] == 30
    assert_reference_passes(reference, 30)


async def test_delete_while_open(run_batch):
    # The file is unlinked while the follower has it open, created again, appended to.
    rotation = FaultSpec("rotate", MID_STREAM, method="delete-recreate")
    caught, reference = await run_both(
        run_batch, faulty.IgnoresAttributeChange(), 30, lines=10, faults=(rotation,)
    )

    assert caught.findings["lost"] == 30
    assert_reference_passes(reference, 30)


async def test_copytruncate_duplicates(run_batch):
    # Copy NAME to NAME.1, truncate NAME, append more; NAME.1 matches what the
    # follower watches.
    rotation = FaultSpec("rotate", MID_STREAM, method="copytruncate")
    caught, reference = await run_both(
        run_batch, faulty.FollowsEveryRotatedFile(), 30, lines=10, faults=(rotation,)
    )

    assert caught.findings["duplicate"] > 0
    assert_reference_passes(reference, 30)


async def test_overwrite_truncate_loop(run_batch):
    # 50 writes with no pause; every 10th truncates the file to zero first.
    setup = CycleSetup(rotate_every=10, rotate_method="truncate")
    caught, reference = await run_both(
        run_batch, faulty.KeepsOffsetAfterTruncation(), 20, lines=50, max_gap=0.0, setup=setup,
        catch_up=False,
    )  # fmt: skip

    assert caught.findings["lost"] > 0
    assert_reference_passes(reference, 20)
