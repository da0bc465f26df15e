"""Pick, per target, the cycle to replay for each finding and for the slowest latencies."""

from __future__ import annotations

from collections.abc import Iterable

from stressor.results import CycleResult

# Keys of the cycles with the largest exit latency and the largest delivery latency.
SLOWEST_EXIT = "exit_latency"
SLOWEST_DELIVERY = "delivery_latency"


def pick_witnesses(results: Iterable[CycleResult]) -> dict[str, dict[str, CycleResult]]:
    """Return, per target, one cycle that shows each finding and the slowest cycles.

    Under each finding (such as ``hang``) is the cycle with the lowest index that
    showed it, so the pick does not depend on which cycle happened to end first.
    Under ``SLOWEST_EXIT`` and ``SLOWEST_DELIVERY`` are the cycles with the largest
    exit latency and the largest delivery latency.
    """
    picked: dict[str, dict[str, CycleResult]] = {}
    for result in results:
        chosen = picked.setdefault(result.target, {})
        for finding in result.findings:
            if finding not in chosen or result.cycle < chosen[finding].cycle:
                chosen[finding] = result
        if result.exit_latency is not None:
            slowest = chosen.get(SLOWEST_EXIT)
            if slowest is None or result.exit_latency > (slowest.exit_latency or 0.0):
                chosen[SLOWEST_EXIT] = result
        if result.delivery_latencies:
            slowest = chosen.get(SLOWEST_DELIVERY)
            largest = max(result.delivery_latencies)
            if slowest is None or largest > max(slowest.delivery_latencies):
                chosen[SLOWEST_DELIVERY] = result
    return picked
