"""Every example scenario loads, and passes a short run against its own targets.

The runs have 16 cycles: the weakest positive control (docker-1.13.0 under double
rotation) hangs in about half of its cycles, so it is missed about once in 65,000
runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from stressor import __version__
from stressor.engine import run_stress
from stressor.options import build_parser, scenario_from_args
from stressor.record import RunRecord
from stressor.reports import report_run

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))


def test_examples_cover_every_fault_kind():
    text = "\n".join(path.read_text() for path in EXAMPLES)

    for kind in ("late-write", "partial-line", "burst", "pause", "rotate", "cancel"):
        assert f'kind = "{kind}"' in text
    for method in (
        "rename-create", "rename-over", "chain", "copytruncate", "truncate",
        "delete-recreate", "symlink-swap",
    ):  # fmt: skip
        assert f'method = "{method}"' in text or f'rotate_method = "{method}"' in text


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
async def test_example_passes_short_run(path, monkeypatch):
    # Examples with programs run them as a user would: from the repository's top
    # directory, with this interpreter (which has watchdog) first on PATH as python3.
    monkeypatch.chdir(path.parent.parent)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    args = build_parser().parse_args(
        ["run", str(path), "--cycles", "16", "--metrics-port", "0", "--seed", "1"]
    )
    scenario = scenario_from_args(args)
    record = RunRecord(scenario)
    with trio.fail_after(60):
        await run_stress(scenario, record)

    report = report_run(record, version=__version__, scenario_path=str(path))
    assert report.passed, report.problems
