"""A small long-lived follower for the tests: it follows every ``*.log`` file in a directory.

Usage: dir_follower.py DIR [--port PORT] [--leak] [--exit-after N] [--stall-after N]
                        [--hold-per-file] [--hold-once] [--watch-files] [--echo-late S]

Every 5 ms it looks for new ``*.log`` files, reads each open file to its end and
prints the complete lines, on stdout or, with ``--port``, over one TCP connection
to 127.0.0.1. A file whose name now points to another file (a rotation) is read
to its end and replaced. A file whose name is removed is read to its end and closed,
unless ``--leak`` keeps it open for good. ``--exit-after N`` exits with status 7 after N
files were opened, to play a program that dies mid-run. ``--stall-after N`` stops
reading instead, for good, as a deadlocked program does. ``--hold-per-file`` opens
``/dev/null`` for each new file and never closes it, a leak unrelated to the
files. ``--hold-once`` does that for the first file only, as a lazy start-up does.
``--watch-files`` adds an inotify watch on each file it opens (it reads no events;
the watch lives as long as the file). ``--echo-late S`` prints every line a second
time S seconds later, as a program that resends does.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import sys
import time

IN_MODIFY = 0x2


class Followed:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.inode = os.fstat(self.fd).st_ino
        self.pending = b""

    def read(self) -> list[bytes]:
        lines = []
        while chunk := os.read(self.fd, 65536):
            data = self.pending + chunk
            end = data.rfind(b"\n") + 1
            lines.extend(data[:end].splitlines(keepends=True))
            self.pending = data[end:]
        return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--port", type=int)
    parser.add_argument("--leak", action="store_true")
    parser.add_argument("--exit-after", type=int, default=0)
    parser.add_argument("--stall-after", type=int, default=0)
    parser.add_argument("--hold-per-file", action="store_true")
    parser.add_argument("--hold-once", action="store_true")
    parser.add_argument("--watch-files", action="store_true")
    parser.add_argument("--echo-late", type=float, default=0.0)
    args = parser.parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    inotify_fd = libc.inotify_init1(os.O_CLOEXEC) if args.watch_files else -1
    echoes: list[tuple[float, bytes]] = []
    if args.port:
        connection = socket.create_connection(("127.0.0.1", args.port))
        send = connection.sendall
    else:

        def send(data: bytes) -> None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

    followed: dict[str, Followed] = {}
    leaked: list[Followed] = []
    devnull_fds: list[int] = []
    opened = 0
    while True:
        for name in sorted(os.listdir(args.directory)):
            path = os.path.join(args.directory, name)
            if name.endswith(".log") and path not in followed:
                try:
                    followed[path] = Followed(path)
                except FileNotFoundError:
                    continue
                opened += 1
                if inotify_fd >= 0:
                    libc.inotify_add_watch(inotify_fd, path.encode(), IN_MODIFY)
                if args.hold_per_file or (args.hold_once and opened == 1):
                    devnull_fds.append(os.open(os.devnull, os.O_RDONLY))
                if opened == args.exit_after:
                    return 7
                if opened == args.stall_after:
                    while True:
                        time.sleep(60)
        for path, current in list(followed.items()):
            lines = current.read()
            try:
                replaced = os.stat(path).st_ino != current.inode
                removed = False
            except FileNotFoundError:
                replaced, removed = False, True
                lines += current.read()  # what came between the read and the removal
            if replaced:
                # The writer may have added lines between the read and the stat.
                lines += current.read()
                followed[path] = Followed(path)
                lines += followed[path].read()
            if replaced or removed:
                if args.leak:
                    leaked.append(current)
                else:
                    os.close(current.fd)
            if removed:
                del followed[path]
            if lines:
                send(b"".join(lines))
                if args.echo_late:
                    echoes.append((time.monotonic() + args.echo_late, b"".join(lines)))
        while echoes and echoes[0][0] <= time.monotonic():
            send(echoes.pop(0)[1])
        time.sleep(0.005)


if __name__ == "__main__":
    sys.exit(main())
