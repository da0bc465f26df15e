"""Per-cycle schedules: every random choice of a cycle, derived from (run seed, cycle index)."""

from __future__ import annotations

import dataclasses
import random

from stressor.faults import Fault, FaultSpec, draw_fault
from stressor.hooks import HookPoint


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """Everything random about one cycle.

    Attributes:
        seed: the run seed.
        cycle: the cycle index within the run.
        gaps: seconds to wait before each of the writer's lines.
        catch_up: whether the writer waits, before it exits, until the follower has
            delivered every line so far, so the follower is idle when the exit comes.
        settle: seconds the writer waits after its last line (and the catch-up) before
            it exits.
        faults: faults to inject, in the order the scenario declares them.
        follower_seed: seed of the follower's own random source (Go ``select``).
    """

    seed: int
    cycle: int
    gaps: tuple[float, ...]
    catch_up: bool
    settle: float
    faults: tuple[Fault, ...]
    follower_seed: int

    @property
    def mid_stream_line(self) -> int:
        """Return after which writer line the mid-stream point fires, 0 for none."""
        lines = [f.after_line for f in self.faults if f.point is HookPoint.MID_STREAM]
        return min(lines, default=0)


def cycle_random(seed: int, cycle: int) -> random.Random:
    """Return the random source of one cycle; the same pair always gives the same stream."""
    return random.Random(f"stressor:{seed}:{cycle}")


def make_schedule(
    seed: int,
    cycle: int,
    *,
    lines: int,
    max_gap: float,
    catch_up: bool = True,
    settle: float = 0.0,
    points: tuple[HookPoint, ...] = (),
    fault_probability: float = 1.0,
    extra_faults: tuple[FaultSpec, ...] = (),
) -> Schedule:
    """Draw the schedule of cycle ``cycle`` of the run seeded with ``seed``.

    Args:
        lines: how many lines the writer writes before it exits.
        max_gap: the largest pause before a line, in seconds; pauses are uniform in
            [0, max_gap].
        catch_up: whether the writer waits for the follower to catch up before it exits.
        settle: the pause after the last line before the writer exits, in seconds.
        points: the hook points a late write may land at; one is drawn per cycle.
        fault_probability: the chance that the cycle gets that late write.
        extra_faults: further faults, each drawn on its own after the late write.
    """
    rng = cycle_random(seed, cycle)
    gaps = tuple(rng.uniform(0.0, max_gap) if max_gap > 0 else 0.0 for _ in range(lines))
    specs = list(extra_faults)
    if points:
        specs.insert(0, FaultSpec("late-write", points, fault_probability))
    drawn = (draw_fault(spec, rng, lines) for spec in specs)
    faults = tuple(fault for fault in drawn if fault is not None)
    follower_seed = rng.getrandbits(64)
    return Schedule(seed, cycle, gaps, catch_up, settle, faults, follower_seed)
