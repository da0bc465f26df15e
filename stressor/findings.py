"""Write each finding of a run to a directory as it happens, keeping the newest ones."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from stressor.replay import replay_command
from stressor.results import CycleResult
from stressor.scenario import Scenario

log = logging.getLogger(__name__)


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
        entry["replay"] = replay_command(
            self._scenario, result.target, result.seed, result.cycle, self._scenario_path
        )
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
