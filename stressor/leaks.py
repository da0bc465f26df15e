"""Count this process's open descriptors and inotify watches, to find what a follower leaks."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Resources:
    """Open file descriptors and inotify watches of this process at one moment."""

    descriptors: int
    inotify_watches: int

    def grown_since(self, before: Resources) -> str:
        """Describe the counts that grew since ``before``; empty when none did."""
        grown = []
        if self.descriptors > before.descriptors:
            grown.append(f"open descriptors {before.descriptors} -> {self.descriptors}")
        if self.inotify_watches > before.inotify_watches:
            grown.append(f"inotify watches {before.inotify_watches} -> {self.inotify_watches}")
        return ", ".join(grown)

    def leaked_since(self, before: Resources) -> str:
        """Describe what grew since ``before`` as a leak; empty when nothing did."""
        grown = self.grown_since(before)
        return f"leaked {grown}" if grown else ""


def count_resources() -> Resources:
    """Read /proc/self: every open descriptor, and the watches of each inotify instance.

    The counts cover the whole process, so they tell a follower's leaks apart only
    while one cycle runs at a time.
    """
    descriptors = 0
    watches = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        descriptors += 1
        if target == "anon_inode:inotify":
            watches += _watches_of(name)
    return Resources(descriptors, watches)


def _watches_of(fd_name: str) -> int:
    try:
        with open(f"/proc/self/fdinfo/{fd_name}") as info:
            return sum(1 for line in info if line.startswith("inotify wd:"))
    except OSError:
        return 0


def count_user_inotify_instances() -> int:
    """Count the inotify instances of every process of this user, from /proc.

    Processes whose descriptors cannot be read (another user's, or gone) are
    skipped, so the count can be low when this user cannot read them all.
    """
    uid = os.getuid()
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                count += os.readlink(f"/proc/{pid}/fd/{name}") == "anon_inode:inotify"
            except OSError:
                continue
    return count
