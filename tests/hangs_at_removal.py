"""A follower program that deadlocks when asked to stop, like Docker 1.12.1 at watch removal.

Usage: python hangs_at_removal.py PATH [--ignore-sigterm]

It watches PATH with inotify and prints each line the file gains. When its stdin
closes (the writer is done) it "removes its watch" by waiting for an event that
never comes, holding the watch forever. With ``--ignore-sigterm`` it also ignores
SIGTERM, so only SIGKILL ends it.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys

IN_MODIFY = 0x2


def main() -> None:
    path = sys.argv[1]
    if "--ignore-sigterm" in sys.argv[2:]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    libc = ctypes.CDLL(None, use_errno=True)
    inotify = libc.inotify_init1(os.O_CLOEXEC)
    if inotify < 0 or libc.inotify_add_watch(inotify, path.encode(), IN_MODIFY) < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), path)
    log = os.open(path, os.O_RDONLY)
    pending = b""
    while True:
        ready, _, _ = select.select([inotify, 0], [], [])
        if inotify in ready:
            os.read(inotify, 4096)
            pending += os.read(log, 1 << 20)
            end = pending.rfind(b"\n") + 1
            os.write(1, pending[:end])
            pending = pending[end:]
        if 0 in ready and not os.read(0, 4096):
            # The deadlock: wait on a pipe that no process writes, keeping the watch.
            quiet, _ = os.pipe()
            os.read(quiet, 1)


if __name__ == "__main__":
    main()
