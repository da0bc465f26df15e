"""Per-cycle schedules: every random choice of a cycle, derived from (run seed, cycle index)."""

from __future__ import annotations

import dataclasses
import random

from stressor.hooks import HookPoint


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: ``kind`` acting at ``point``, writing ``lines`` lines."""

    kind: str
    point: HookPoint
    lines: int = 1

    def describe(self) -> str:
        """Return a short label such as ``late-write@before-remove``."""
        return f"{self.kind}@{self.point.value}"


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
        faults: faults to inject, in the order their points fire.
        follower_seed: seed of the follower's own random source (Go ``select``).
    """

    seed: int
    cycle: int
    gaps: tuple[float, ...]
    catch_up: bool
    settle: float
    faults: tuple[Fault, ...]
    follower_seed: int


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
    points: tuple[HookPoint, ...],
    fault_probability: float = 1.0,
) -> Schedule:
    """Draw the schedule of cycle ``cycle`` of the run seeded with ``seed``.

    Args:
        lines: how many lines the writer writes before it exits.
        max_gap: the largest pause before a line, in seconds; pauses are uniform in
            [0, max_gap].
        catch_up: whether the writer waits for the follower to catch up before it exits.
        settle: the pause after the last line before the writer exits, in seconds.
        points: the hook points a late write may land at; one is drawn per cycle.
        fault_probability: the chance that the cycle gets a fault at all.
    """
    rng = cycle_random(seed, cycle)
    gaps = tuple(rng.uniform(0.0, max_gap) if max_gap > 0 else 0.0 for _ in range(lines))
    faults: tuple[Fault, ...] = ()
    if points and rng.random() < fault_probability:
        faults = (Fault("late-write", rng.choice(points)),)
    follower_seed = rng.getrandbits(64)
    return Schedule(seed, cycle, gaps, catch_up, settle, faults, follower_seed)
