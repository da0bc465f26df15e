"""Faults: what the injector does at a hook point, as declared and as drawn for one cycle."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Awaitable, Callable

import trio

from stressor.hooks import HookPoint
from stressor.rotations import ROTATION_METHODS, rotate
from stressor.writers import Writer

FAULT_KINDS = ("late-write", "partial-line", "burst", "pause", "rotate", "cancel")

# The points inside the window, where the late writes of the default scenario land.
WINDOW_POINTS = (HookPoint.AFTER_EXIT, HookPoint.BEFORE_REMOVE, HookPoint.AFTER_REMOVE)

DEFAULT_BURST_LINES = 100


@dataclasses.dataclass(frozen=True)
class FaultSpec:
    """A fault as a scenario declares it; each cycle draws whether and where it happens.

    Attributes:
        kind: one of ``FAULT_KINDS``.
        points: hook points to draw from, one per cycle.
        probability: chance that a cycle gets this fault.
        lines: lines written by ``late-write`` (default 1) and ``burst`` (default 100).
        method: rotation method of ``rotate``, one of ``ROTATION_METHODS``.
        count: rotations in a row for ``rotate``.
        gap: seconds between those rotations.
        delay: (low, high) seconds, drawn log-uniformly per cycle: the length of a
            ``pause``, the wait before a ``late-write``, the time until a
            ``partial-line`` is completed, or until ``cancel`` cancels the follower
            (a client that stops following).
        complete: whether a ``partial-line`` is ever completed.
    """

    kind: str = "late-write"
    points: tuple[HookPoint, ...] = WINDOW_POINTS
    probability: float = 1.0
    lines: int | None = None
    method: str = "rename-create"
    count: int = 1
    gap: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)
    complete: bool = True

    def problems(self) -> list[tuple[str, object, str]]:
        """Return (key, value, fix) for every invalid setting; empty when valid."""
        found: list[tuple[str, object, str]] = []
        if self.kind not in FAULT_KINDS:
            found.append(("kind", self.kind, "choose one of " + ", ".join(FAULT_KINDS)))
        if not self.points:
            found.append(("points", list(self.points), "name at least one hook point"))
        if not 0.0 <= self.probability <= 1.0:
            found.append(("probability", self.probability, "must be between 0 and 1"))
        if self.lines is not None and not 1 <= self.lines <= 100_000:
            found.append(("lines", self.lines, "must be an integer from 1 to 100000"))
        if self.method not in ROTATION_METHODS:
            choices = ", ".join(ROTATION_METHODS)
            found.append(("method", self.method, f"choose one of {choices}"))
        if not 1 <= self.count <= 100:
            found.append(("count", self.count, "must be an integer from 1 to 100"))
        if not 0.0 <= self.gap <= 60.0:
            found.append(("gap", self.gap, "must be between 0 and 60 seconds"))
        low, high = self.delay
        if not 0.0 <= low <= high <= 60.0:
            fix = "write [low, high] with 0 <= low <= high <= 60"
            found.append(("delay", list(self.delay), fix))
        return found


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One fault of one cycle, with every random choice already made."""

    kind: str
    point: HookPoint
    lines: int = 1
    method: str = "rename-create"
    count: int = 1
    gap: float = 0.0
    delay: float = 0.0
    complete: bool = True
    after_line: int = 0

    @property
    def name(self) -> str:
        """Return the fault kind, with the rotation method for rotations."""
        return f"rotate-{self.method}" if self.kind == "rotate" else self.kind

    def describe(self) -> str:
        """Return a short label such as ``late-write@before-remove``."""
        return f"{self.name}@{self.point.value}"

    def describe_fully(self) -> str:
        """Return the label with every setting that differs from the default, to replay it."""
        settings = [
            f"lines={self.lines}" if self.lines != 1 else "",
            f"count={self.count}" if self.count != 1 else "",
            f"gap={self.gap:g}" if self.gap else "",
            f"delay={self.delay:.6g}" if self.delay else "",
            "complete=false" if not self.complete else "",
            f"after_line={self.after_line}" if self.after_line else "",
        ]
        return " ".join([self.describe(), *(setting for setting in settings if setting)])


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    """Draw from [low, high] so that each decade is equally likely; 0 counts as 1 µs."""
    if high <= 0:
        return 0.0
    if low >= high:
        return low
    floor = max(low, 1e-6)
    return math.exp(rng.uniform(math.log(floor), math.log(high)))


def draw_fault(spec: FaultSpec, rng: random.Random, writer_lines: int) -> Fault | None:
    """Draw whether, where and how ``spec`` happens in one cycle."""
    if rng.random() >= spec.probability:
        return None
    point = rng.choice(spec.points)
    after_line = rng.randint(1, max(1, writer_lines - 1)) if point is HookPoint.MID_STREAM else 0
    lines = spec.lines
    if lines is None:
        lines = DEFAULT_BURST_LINES if spec.kind == "burst" else 1
    return Fault(
        kind=spec.kind,
        point=point,
        lines=lines,
        method=spec.method,
        count=spec.count,
        gap=spec.gap,
        delay=_log_uniform(rng, *spec.delay),
        complete=spec.complete,
        after_line=after_line,
    )


@dataclasses.dataclass
class FaultEnvironment:
    """What fault actions act on in a cycle.

    Attributes:
        writer: the cycle's writer.
        notify_rotation: sends the follower a rotation notice, like Docker's logger.
        spawn: starts a background task in the cycle, such as a line's completion.
        cancel_follower: cancels the follower, as a client that stops following does.
        landed: the times at which faults acted, for the window check.
    """

    writer: Writer
    notify_rotation: Callable[[], Awaitable[None]]
    spawn: Callable[[Callable[[], Awaitable[None]]], None]
    cancel_follower: Callable[[], None]
    landed: list[float] = dataclasses.field(default_factory=list)


async def inject(fault: Fault, env: FaultEnvironment) -> None:
    """Carry out ``fault`` now, in the task that reached its hook point."""
    writer = env.writer
    source = fault.describe()
    if fault.kind in ("late-write", "burst"):
        if fault.delay > 0:
            await trio.sleep(fault.delay)
        env.landed.append(trio.current_time())
        for _ in range(fault.lines):
            writer.write_line(source)
    elif fault.kind == "partial-line":
        env.landed.append(trio.current_time())
        writer.write_partial(source)
        if fault.complete:

            async def complete_later() -> None:
                await trio.sleep(fault.delay)
                writer.complete_partial()

            env.spawn(complete_later)
    elif fault.kind == "pause":
        env.landed.append(trio.current_time())
        await trio.sleep(fault.delay)
    elif fault.kind == "rotate":
        for number in range(1, fault.count + 1):
            if number > 1 and fault.gap > 0:
                await trio.sleep(fault.gap)
            env.landed.append(trio.current_time())
            rotate(writer, fault.method, number)
            await env.notify_rotation()
    elif fault.kind == "cancel":

        async def cancel_later() -> None:
            await trio.sleep(fault.delay)
            env.landed.append(trio.current_time())
            env.cancel_follower()

        env.spawn(cancel_later)
    else:
        raise ValueError(f"unknown fault kind {fault.kind!r}")
