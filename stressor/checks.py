"""The checker: compare what the writer wrote with what the follower delivered."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Set

from stressor.formats import parse_line
from stressor.writers import Key, WrittenLine


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One line the follower delivered and when, on the run's clock."""

    raw: bytes
    read_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class LineCheck:
    """Line-level findings of one cycle."""

    read: int
    lost: int
    duplicated: int
    reordered: int
    torn: int
    latencies: tuple[float, ...]
    indeterminate: int = 0


def check_lines(
    ledger: list[WrittenLine],
    deliveries: list[Delivery],
    *,
    required_before: float | None,
    at_risk: Set[Key] = frozenset(),
    incomplete: Mapping[Key, bytes] | None = None,
    generation_of: Mapping[Key, int] | None = None,
) -> LineCheck:
    """Count lost, duplicated, reordered, torn and indeterminate lines; measure latency.

    Args:
        ledger: every completed line written in the cycle, in write order.
        deliveries: every line the follower delivered, in delivery order.
        required_before: lines written before this time must have been delivered,
            and later ones missing are indeterminate; None means the follower did
            not finish, so no line counts as lost.
        at_risk: lines a truncation removed, perhaps before any follower could read
            them; if never delivered they are indeterminate, not lost.
        incomplete: partial lines never completed, with the fragment written; a
            delivery of the fragment is not torn, and no delivery is not lost.
        generation_of: the file generation of each line. A line in a generation that
            was rotated away (neither the first file, which the follower opened, nor
            the last) of which no line was delivered is indeterminate: that file may
            have come and gone before any follower could open it.
    """
    incomplete = incomplete or {}
    fragments = {fragment.rstrip(b"\n") for fragment in incomplete.values()}
    written = {(line.writer, line.seq): line for line in ledger}
    seen: set[tuple[int, int]] = set()
    highest: dict[int, int] = {}
    latencies = []
    read = duplicated = reordered = torn = 0

    for delivery in deliveries:
        parsed = parse_line(delivery.raw)
        key = (parsed.writer, parsed.seq) if parsed else None
        if parsed is None or key not in written:
            if delivery.raw.rstrip(b"\n") not in fragments:
                torn += 1
            continue

        read += 1
        if key in seen:
            duplicated += 1
            continue
        seen.add(key)
        latencies.append(delivery.read_at - written[key].written_at)
        if parsed.seq < highest.get(parsed.writer, 0):
            reordered += 1
        highest[parsed.writer] = max(highest.get(parsed.writer, 0), parsed.seq)

    missing = [key for key in written if key not in seen]
    unseen = _unseen_generations(generation_of or {}, seen)
    indeterminate = len(incomplete)
    lost = 0
    for key in missing:
        if key in at_risk or (generation_of or {}).get(key) in unseen:
            indeterminate += 1
        elif required_before is None:
            continue
        elif written[key].written_at <= required_before:
            lost += 1
        else:
            indeterminate += 1
    return LineCheck(read, lost, duplicated, reordered, torn, tuple(latencies), indeterminate)


def _unseen_generations(generation_of: Mapping[Key, int], seen: Set[Key]) -> set[int]:
    """Return the rotated-away generations, first and last excluded, with no line delivered."""
    if not generation_of:
        return set()
    last = max(generation_of.values())
    delivered = {generation_of[key] for key in seen if key in generation_of}
    return {g for g in set(generation_of.values()) if 0 < g < last and g not in delivered}
