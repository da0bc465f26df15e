"""The record of a run: its scenario, its times and the results of its cycles."""

from __future__ import annotations

import dataclasses
import datetime

from stressor.results import CycleResult
from stressor.scenario import Scenario


@dataclasses.dataclass
class RunRecord:
    """The results of a run so far; valid also when the run is cancelled midway.

    A soak sets ``keep_results`` to False, so memory does not grow with the cycle
    count; its observers keep what they need.
    """

    scenario: Scenario
    started_at: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )
    finished_at: datetime.datetime | None = None
    results: list[CycleResult] = dataclasses.field(default_factory=list)
    keep_results: bool = True
    finished_cycles: int = 0
    interrupted: bool = False
