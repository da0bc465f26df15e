"""Stress tests of the follower in my_follower.py with stressor's pytest plugin.

Run them with ``pytest examples/test_my_follower.py``. pytest-trio runs the
async tests; the ``stress`` fixture comes from stressor's plugin, which installing
stressor registers.
"""

from __future__ import annotations

import pytest
from my_follower import follow, follow_without_drain

from stressor import HookPoint


@pytest.mark.trio
async def test_follower_passes_stress(stress) -> None:
    result = await stress(follow, cycles=200, deadline=0.5, max_wait=2.0)
    result.assert_ok()
    assert result.targets["follow"].cycles == 200


@pytest.mark.trio
async def test_follower_window_is_reached(stress) -> None:
    # Faults only just before the watch removal: every cycle lands in the window.
    result = await stress(follow, cycles=50, points=(HookPoint.BEFORE_REMOVE,))
    result.assert_ok()
    assert result.targets["follow"].window_hits == 50


@pytest.mark.trio
async def test_missing_drain_is_caught(stress) -> None:
    # A positive control: the buggy follower must lose lines, or the stress
    # could not have found this bug in the follower above either.
    result = await stress(follow_without_drain, cycles=50, expect={"lost"})
    result.assert_ok()
