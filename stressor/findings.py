"""Write each finding of a run to a directory as it happens, keeping the newest ones."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex

from stressor.results import CycleResult
from stressor.scenario import Scenario

log = logging.getLogger(__name__)


# Scenario fields that shape a cycle's schedule or verdict -> the option that sets them.
_SCHEDULE_OPTIONS = {
    "lines": "--lines",
    "max_gap": "--max-gap",
    "settle": "--settle",
    "fault_probability": "--fault-probability",
    "deadline": "--deadline",
    "max_wait": "--max-wait",
}


def replay_command(scenario: Scenario, result: CycleResult, scenario_path: str | None) -> str:
    """Return the command that runs the finding's cycle again with the same schedule.

    Settings that differ from the defaults are spelled out as options, so the
    command is complete even when the run set them on its command line.
    """
    words = ["stressor", "replay"]
    if scenario_path:
        words.append(scenario_path)
    words += ["--target", result.target, "--seed", str(result.seed), "--cycle", str(result.cycle)]
    defaults = Scenario()
    for field, option in _SCHEDULE_OPTIONS.items():
        value = getattr(scenario, field)
        if value != getattr(defaults, field):
            words += [option, repr(value)]
    if not scenario.catch_up:
        words.append("--no-catch-up")
    if scenario.points != defaults.points:
        for point in scenario.points:
            words += ["--point", point.value]
    return shlex.join(words)


class FindingsDirectory:
    """An observer that writes one JSON file per cycle with a finding.

    Files are named ``finding-<number>-<target>-<outcome>.json`` with a number that
    grows through the run. Once more than ``keep`` files were written, the oldest
    are deleted, so a soak of days cannot fill the disk.
    """

    def __init__(
        self, directory: str, scenario: Scenario, *, keep: int, scenario_path: str | None
    ) -> None:
        os.makedirs(directory, exist_ok=True)
        self._directory = directory
        self._scenario = scenario
        self._keep = keep
        self._scenario_path = scenario_path
        self._written: list[str] = []
        self.count = 0

    def cycle_started(self, target: str) -> None:
        """Do nothing: only findings are written."""

    def cycle_abandoned(self, target: str) -> None:
        """Do nothing: only findings are written."""

    def cycle_finished(self, result: CycleResult) -> None:
        """Write the result if it has a finding, then delete files past the cap."""
        if not result.findings:
            return
        self.count += 1
        name = f"finding-{self.count:08d}-{result.target}-{result.outcome}.json"
        path = os.path.join(self._directory, name)
        entry = dataclasses.asdict(result)
        entry["findings"] = sorted(result.findings)
        entry["outcome"] = result.outcome
        entry["replay"] = replay_command(self._scenario, result, self._scenario_path)
        try:
            with open(path, "w") as file:
                json.dump(entry, file, indent=2)
        except OSError as error:
            log.error("writing finding file %s failed: %s", path, error)
            return
        self._written.append(path)
        while len(self._written) > self._keep:
            oldest = self._written.pop(0)
            try:
                os.unlink(oldest)
            except OSError as error:
                log.warning("deleting old finding file %s failed: %s", oldest, error)
