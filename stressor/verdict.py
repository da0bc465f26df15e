"""The verdict of a cycle: findings and measurements from what the cycle observed."""

from __future__ import annotations

import dataclasses

from stressor import results
from stressor.checks import Delivery, check_lines
from stressor.faults import Fault
from stressor.hooks import HookPoint, Hooks
from stressor.results import CycleResult
from stressor.schedule import Schedule
from stressor.watchdog import FollowerState
from stressor.writers import Writer


@dataclasses.dataclass(frozen=True)
class Observations:
    """What a cycle saw, in the run's clock.

    Attributes:
        deliveries: lines the follower delivered.
        landed: times at which faults acted.
        fired: the scheduled faults whose hook point fired. A follower that never
            reaches a point (one that never removes its watch, say) never gets its fault.
        exited_at: when the writer exited.
        told_at: when the follower was told that the writer is done.
        hang_detail: why the follower counts as hung; empty when it is not.
        leak_detail: which resources the follower left open; empty when none.
        evidence: notes the follower left on what it saw of an external program
            (``FollowContext.evidence``); they join the detail of any finding.
    """

    deliveries: list[Delivery]
    landed: list[float]
    exited_at: float
    told_at: float
    fired: tuple[Fault, ...] = ()
    hang_detail: str = ""
    leak_detail: str = ""
    evidence: tuple[str, ...] = ()


def _window_hit(landed: list[float], exited_at: float, hooks: Hooks, state: FollowerState) -> bool:
    """Tell whether a fault landed between the writer's exit and the watch removal or return."""
    ends = [hooks.fired_at.get(HookPoint.AFTER_REMOVE), state.finished_at]
    known = [end for end in ends if end is not None]
    window_end = min(known) if known else float("inf")
    return any(exited_at <= when < window_end for when in landed)


def judge_cycle(
    target_name: str,
    schedule: Schedule,
    writer: Writer,
    state: FollowerState,
    hooks: Hooks,
    seen: Observations,
) -> CycleResult:
    """Compare the writer's ledger with the deliveries and return the cycle's result."""
    hung = bool(seen.hang_detail)
    finished = not hung and state.error is None and not state.cancelled
    told_at = seen.told_at
    required_before = None
    if finished and state.finished_at is not None:
        # Lines written after the follower's last step, while it was only cleaning
        # up, could not have been read by any follower: those are indeterminate.
        required_before = min(state.finished_at, max(told_at, hooks.last_step_at))
    lines = check_lines(
        writer.ledger,
        seen.deliveries,
        required_before=required_before,
        at_risk=writer.at_risk,
        incomplete=writer.incomplete,
        generation_of=writer.generation_of,
    )

    findings = set()
    detail = ""
    if hung:
        findings.add(results.HANG)
        detail = seen.hang_detail
    elif state.error is not None:
        findings.add(results.CRASH)
        detail = f"follower raised {type(state.error).__name__}: {state.error}"
    if lines.lost:
        findings.add(results.LOST)
    if lines.duplicated:
        findings.add(results.DUPLICATE)
    if lines.reordered:
        findings.add(results.REORDER)
    if lines.torn:
        findings.add(results.TORN)
    if seen.leak_detail:
        findings.add(results.LEAK)
        detail = "; ".join(part for part in (detail, seen.leak_detail) if part)
    if findings and seen.evidence:
        detail = "; ".join(part for part in (detail, *seen.evidence) if part)

    exit_latency = state.finished_at - told_at if finished and state.finished_at else None
    return CycleResult(
        target=target_name,
        seed=schedule.seed,
        cycle=schedule.cycle,
        findings=frozenset(findings),
        faults=tuple(fault.describe() for fault in seen.fired),
        fault_kinds=tuple(fault.kind for fault in seen.fired),
        window_hit=_window_hit(seen.landed, seen.exited_at, hooks, state),
        lines_written=len(writer.ledger),
        lines_read=lines.read,
        lines_lost=lines.lost,
        lines_duplicated=lines.duplicated,
        lines_reordered=lines.reordered,
        lines_torn=lines.torn,
        lines_indeterminate=lines.indeterminate,
        delivery_latencies=lines.latencies,
        exit_latency=exit_latency,
        detail=detail,
    )
