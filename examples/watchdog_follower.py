"""Follow log files with the ``watchdog`` library, as an external program for stressor.

Usage:
    python examples/watchdog_follower.py PATH
    python examples/watchdog_follower.py --dir DIR [--port PORT]

With PATH it prints every line the file gains on stdout, follows the name across
rename and delete rotations (reading the old file to its end first), and when its
stdin closes (the writer is done) reads once more and exits. Run it under
stressor as a command target with ``done = "stdin"``::

    [[commands]]
    name = "watchdog"
    argv = ["python3", "examples/watchdog_follower.py", "{path}"]
    done = "stdin"

With ``--dir`` it plays a log shipper: it runs until it is stopped and follows
every ``*.log`` file that appears in DIR, the same way, sending the lines to
stdout or, with ``--port``, over one TCP connection to 127.0.0.1:PORT. A file
whose name is gone is read to its end and closed. ``examples/shipper.toml`` runs
it as a long-lived target (``lifetime = "run"``).

``watchdog`` is not a dependency of stressor: ``pip install watchdog`` first.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from collections.abc import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

Send = Callable[[bytes], None]


def send_to_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


class FollowedFile:
    """One followed name: its open file and the end of a line not yet complete."""

    def __init__(self, path: str, send: Send) -> None:
        self.path = path
        self.send = send
        self.fd = os.open(path, os.O_RDONLY)
        self.pending = b""

    def read(self) -> bool:
        """Read what the file gained, across a rotation; return False once the name is gone."""
        self._drain()
        try:
            replaced = os.stat(self.path).st_ino != os.fstat(self.fd).st_ino
        except FileNotFoundError:
            # The writer may have added lines between the drain and the removal.
            self._drain()
            return False
        if replaced:
            # The writer may have added lines between the first drain and the stat.
            self._drain()
            os.close(self.fd)
            self.fd = os.open(self.path, os.O_RDONLY)
            self.pending = b""
            self._drain()
        return True

    def close(self) -> None:
        os.close(self.fd)

    def _drain(self) -> None:
        data = self.pending
        while chunk := os.read(self.fd, 65536):
            data += chunk
        end = data.rfind(b"\n") + 1
        self.pending = data[end:]
        if end:
            self.send(data[:end])


class FileFollower(FileSystemEventHandler):
    """Read one followed file on every event in its directory."""

    def __init__(self, path: str) -> None:
        self.lock = threading.Lock()
        self.file = FollowedFile(path, send_to_stdout)

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.read()

    def read(self) -> None:
        with self.lock:
            self.file.read()


class DirectoryFollower(FileSystemEventHandler):
    """Read every ``*.log`` file of a directory on every event below it."""

    def __init__(self, directory: str, send: Send) -> None:
        self.directory = directory
        self.send = send
        self.lock = threading.Lock()
        self.files: dict[str, FollowedFile] = {}

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.read()

    def read(self) -> None:
        with self.lock:
            for name in sorted(os.listdir(self.directory)):
                path = os.path.join(self.directory, name)
                if name.endswith(".log") and path not in self.files:
                    try:
                        self.files[path] = FollowedFile(path, self.send)
                    except FileNotFoundError:
                        continue  # gone between the listing and the open
            for path, followed in list(self.files.items()):
                if not followed.read():
                    followed.close()
                    del self.files[path]


def follow_file(path: str) -> None:
    follower = FileFollower(path)
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


def follow_directory(directory: str, port: int | None) -> None:
    send: Send = send_to_stdout
    if port is not None:
        connection = socket.create_connection(("127.0.0.1", port))
        send = connection.sendall
    follower = DirectoryFollower(directory, send)
    observer = Observer()
    # Recursive, so that files behind symlinks in subdirectories are seen too.
    observer.schedule(follower, directory, recursive=True)
    observer.start()
    follower.read()
    observer.join()  # until the process is stopped


def main() -> None:
    parser = argparse.ArgumentParser(description="Follow log files with watchdog.")
    parser.add_argument("path", nargs="?", help="the file to follow until stdin closes")
    parser.add_argument("--dir", help="follow every *.log file in this directory")
    parser.add_argument("--port", type=int, help="with --dir: send lines to 127.0.0.1:PORT")
    args = parser.parse_args()
    if (args.path is None) == (args.dir is None):
        parser.error("give either PATH or --dir DIR")
    if args.dir is None:
        follow_file(args.path)
    else:
        follow_directory(args.dir, args.port)


if __name__ == "__main__":
    main()
