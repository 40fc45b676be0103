"""A MicroPython "board" on a pty for deploy and provision tests: the unix port's REPL
behind a small proxy (NOTES.md). The unix port exits on a soft reset (Ctrl-D at an empty
raw REPL), so the proxy respawns it, prints "MPY: soft reboot" and re-enters the raw REPL
if it was in it, as a board would. Its filesystem is the host folder `root` (the unix port's
own), so tests use --device-root with it.

`command` replaces the VM, e.g. a crash loop: a program that prints a panic and exits.
"""
import os
import select
import subprocess
import sys
import threading
import tty
from pathlib import Path

import pytest

MICROPYTHON = str(Path(sys.executable).with_name("micropython"))


class MpyBoard:
    def __init__(self, root, command=None):
        self.root = str(root)
        self.command = command or [MICROPYTHON, "-i"]
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.spawns = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _spawn(self):
        self.spawns += 1
        return subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=self.root, bufsize=0)

    def _serve(self):
        raw = False
        child = self._spawn()
        while not self._stop.is_set():
            readable, _, _ = select.select([self.master, child.stdout], [], [], 0.05)
            if self.master in readable:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    return
                if b"\x01" in data:
                    raw = True
                if b"\x02" in data:
                    raw = False
                try:
                    child.stdin.write(data)
                except (BrokenPipeError, ValueError):
                    pass
            if child.stdout in readable:
                data = child.stdout.read1(4096) if hasattr(child.stdout, "read1") else \
                    os.read(child.stdout.fileno(), 4096)
                if data:
                    os.write(self.master, data)
                    continue
                child.wait()
                if self._stop.is_set():
                    return
                os.write(self.master, b"MPY: soft reboot\r\n")
                child = self._spawn()
                if raw:
                    child.stdin.write(b"\x01")
        child.kill()
        child.wait()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def board(tmp_path):
    """A respawning MicroPython unix-port REPL on a pty, its flash in tmp_path/flash."""
    root = tmp_path / "flash"
    root.mkdir()
    b = MpyBoard(root)
    yield b
    b.close()


def run_vigil(capsys, *argv):
    """`vigil ARGV` in this process: (exit code, stdout, stderr)."""
    from host import cli

    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
