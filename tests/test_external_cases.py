"""Handed cases from public bug reports that apply to external programs, run on recipes.

``tail -F`` follows the name and reopens the file after each rotation, so it
must pass every rotation case that the reference follower passes; ``tail -f``
by descriptor stays on the old file and must be caught losing lines in the
rotation cases where writes go on after the rotation. The cases about a
follower's own timeout, cancellation or watch removal in-process (02, 04) do
not apply to a program that is started per cycle.
"""

from __future__ import annotations

import os
import shutil

import pytest
import trio

from stressor.cycle import CycleSetup
from stressor.faults import FaultSpec
from stressor.hooks import HookPoint
from stressor.targets.command import recipe

# Skipped where GNU tail is missing, except in CI, where .ci/run installs it: fail there.
pytestmark = pytest.mark.skipif(
    shutil.which("tail") is None and not os.environ.get("CI"), reason="GNU tail not installed"
)

AFTER_EXIT = (HookPoint.AFTER_EXIT,)
MID_STREAM = (HookPoint.MID_STREAM,)
CYCLES = 10

IDLE_THEN_RENAME = (
    FaultSpec("pause", AFTER_EXIT, delay=(0.05, 0.05)),
    FaultSpec("late-write", AFTER_EXIT),
    FaultSpec("rotate", AFTER_EXIT, method="rename-create"),
    FaultSpec("late-write", AFTER_EXIT),
)

CASES = {
    # 01: one line to an idle file; the writer exits and the follower stops at once.
    "01-remove-while-event-pending": dict(lines=1, catch_up=False, settle=0.0),
    # 03: A; idle; then B, a rename to NAME.1, a new NAME and C.
    "03-idle-then-rename": dict(lines=1, faults=IDLE_THEN_RENAME),
    # 05: every write rotates first, one write every 0 to 100 ms.
    "05-rotation-every-write": dict(
        lines=8, max_gap=0.1, setup=CycleSetup(rotate_every=1, rotate_method="rename-create")
    ),
    # 06: L; within 1 ms NAME is renamed and created again; then M.
    "06-write-just-before-rename": dict(
        lines=2,
        faults=(FaultSpec("rotate", MID_STREAM, method="rename-create", delay=(0, 0.001)),),
    ),
    # 07: a symlink into another directory; the target rotates there.
    "07-symlink-target-rotation": dict(
        lines=10,
        symlink=True,
        faults=(FaultSpec("rotate", MID_STREAM, method="rename-create"),),
    ),
    # 08: the file is unlinked while followed, created again, appended to.
    "08-delete-while-open": dict(
        lines=10, faults=(FaultSpec("rotate", MID_STREAM, method="delete-recreate"),)
    ),
    # 09: copy NAME to NAME.1, truncate NAME, append more.
    "09-copytruncate-duplicates": dict(
        lines=10, faults=(FaultSpec("rotate", MID_STREAM, method="copytruncate"),)
    ),
    # 10: 50 writes with no pause; every 10th truncates the file to zero first.
    "10-overwrite-truncate-loop": dict(
        lines=50,
        max_gap=0.0,
        catch_up=False,
        setup=CycleSetup(rotate_every=10, rotate_method="truncate"),
    ),
}

# Cases where lines are written to the new file after the rotation.
LOST_BY_DESCRIPTOR = (
    "03-idle-then-rename",
    "05-rotation-every-write",
    "06-write-just-before-rename",
    "07-symlink-target-rotation",
    "08-delete-while-open",
)


# Truncation cases: see the note in test_tail_F_truncation_no_duplicates.
TRUNCATING = ("09-copytruncate-duplicates", "10-overwrite-truncate-loop")


@pytest.mark.parametrize("case", [case for case in CASES if case not in TRUNCATING])
async def test_tail_F_passes_case(run_batch, case):
    with trio.fail_after(120):
        batch = await run_batch(recipe("tail-F"), CYCLES, (), concurrency=CYCLES, **CASES[case])

    assert batch.outcomes == {"ok": CYCLES}, [r.detail or r.outcome for r in batch.results]


@pytest.mark.parametrize("case", TRUNCATING)
async def test_tail_F_truncation_no_duplicates(run_batch, case):
    # NOTE: tail -F lost lines after a truncation now and then: in 2 of 300 cycles
    # of case 09 (30 at a time), and in 1 of 6 runs of case 10 while another test
    # run loaded the machine. The likely cause: tail notices a truncation only by
    # a smaller size, so a file that grew back past tail's offset first is read on
    # from that offset. Only duplicates and hangs are asserted here.
    with trio.fail_after(120):
        batch = await run_batch(recipe("tail-F"), CYCLES, (), concurrency=CYCLES, **CASES[case])

    assert batch.findings["duplicate"] == 0
    assert batch.findings["hang"] == 0


@pytest.mark.parametrize("case", LOST_BY_DESCRIPTOR)
async def test_tail_f_descriptor_caught(run_batch, case):
    target = recipe("tail-f-descriptor")
    with trio.fail_after(120):
        batch = await run_batch(target, CYCLES, (), concurrency=CYCLES, **CASES[case])

    assert batch.findings["lost"] > 0
    assert batch.findings["hang"] == 0
