"""The checker: compare what the writer wrote with what the follower delivered."""

from __future__ import annotations

import dataclasses

from stressor.writers import WrittenLine, parse_line


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


def check_lines(
    ledger: list[WrittenLine], deliveries: list[Delivery], *, required_before: float | None
) -> LineCheck:
    """Count lost, duplicated, reordered and torn lines and measure delivery latency.

    Args:
        ledger: every line written in the cycle, in write order.
        deliveries: every line the follower delivered, in delivery order.
        required_before: lines written before this time must have been delivered;
            None means the follower did not finish, so no line counts as lost.
    """
    written = {(line.writer, line.seq): line for line in ledger}
    seen: set[tuple[int, int]] = set()
    highest: dict[int, int] = {}
    latencies = []
    read = duplicated = reordered = torn = 0

    for delivery in deliveries:
        parsed = parse_line(delivery.raw)
        key = (parsed.writer, parsed.seq) if parsed else None
        if parsed is None or key not in written:
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

    lost = 0
    if required_before is not None:
        lost = sum(
            1
            for key, line in written.items()
            if key not in seen and line.written_at <= required_before
        )
    return LineCheck(read, lost, duplicated, reordered, torn, tuple(latencies))
