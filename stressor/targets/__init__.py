"""Built-in followers under test, by name."""

from __future__ import annotations

from stressor.targets.base import FollowContext, Target
from stressor.targets.docker import Docker1121, Docker1130, Docker17120
from stressor.targets.polling import PollingFollower
from stressor.targets.reference import ReferenceFollower

BUILTIN_TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        ReferenceFollower(),
        PollingFollower(),
        Docker1121(),
        Docker1130(),
        Docker17120(),
    )
}


def get_target(name: str) -> Target:
    """Return the built-in target called ``name``; raise ``KeyError`` naming the choices."""
    try:
        return BUILTIN_TARGETS[name]
    except KeyError:
        choices = ", ".join(BUILTIN_TARGETS)
        raise KeyError(f"unknown target {name!r}: choose one of {choices}") from None


__all__ = ["BUILTIN_TARGETS", "FollowContext", "Target", "get_target"]
