"""Follow a log file with the ``watchdog`` library, as an external program for stressor.

Usage: python examples/watchdog_follower.py PATH

It prints every line the file gains on stdout, follows the name across
rename and delete rotations (reading the old file to its end first), and when its
stdin closes (the writer is done) reads once more and exits. Run it under
stressor as a command target with ``done = "stdin"``::

    [[commands]]
    name = "watchdog"
    argv = ["python3", "examples/watchdog_follower.py", "{path}"]
    done = "stdin"

``watchdog`` is not a dependency of stressor: ``pip install watchdog`` first.
"""

from __future__ import annotations

import os
import sys
import threading

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer


class Follower(FileSystemEventHandler):
    """Read the followed file on every event in its directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.fd = os.open(path, os.O_RDONLY)
        self.pending = b""

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.read()

    def read(self) -> None:
        with self.lock:
            self._drain()
            try:
                replaced = os.stat(self.path).st_ino != os.fstat(self.fd).st_ino
            except FileNotFoundError:
                return
            if replaced:
                os.close(self.fd)
                self.fd = os.open(self.path, os.O_RDONLY)
                self.pending = b""
                self._drain()

    def _drain(self) -> None:
        data = self.pending
        while chunk := os.read(self.fd, 65536):
            data += chunk
        end = data.rfind(b"\n") + 1
        self.pending = data[end:]
        if end:
            sys.stdout.buffer.write(data[:end])
            sys.stdout.buffer.flush()


def main() -> None:
    path = sys.argv[1]
    follower = Follower(path)
    observer = Observer()
    observer.schedule(follower, os.path.dirname(os.path.abspath(path)))
    observer.start()
    follower.read()  # what was written before the watch existed
    try:
        sys.stdin.buffer.read()  # returns once stdin closes: the writer is done
        follower.read()
    finally:
        observer.stop()
        observer.join()


if __name__ == "__main__":
    main()
