"""What every `vigil` subcommand shares: one-line usage errors, finite-number option types,
and standard streams that may be closed.

A subcommand builds its parser with `OneLineParser(prog=...)`: a bad option prints
`vigil X: argument --y: ...` as ONE line on stderr and exits 2 (argparse prints the whole
usage block first, which buries the reason).
"""
import argparse
import math
import sys


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, "%s: %s\n" % (self.prog, message.replace("\n", " ")))


def finite(low=None, high=None, above=None):
    """An argparse type: a finite float within bounds (`above` = strictly greater than)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a number" % text) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError("%r: must be a finite number" % text)
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError("%r: must be > %g" % (text, above))
        if low is not None and value < low:
            raise argparse.ArgumentTypeError("%r: must be >= %g" % (text, low))
        if high is not None and value > high:
            raise argparse.ArgumentTypeError("%r: must be <= %g" % (text, high))
        return value
    return parse


def whole(low=None, high=None):
    """An argparse type: an integer within bounds."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a whole number" % text) from None
        if low is not None and value < low:
            raise argparse.ArgumentTypeError("%r: must be >= %d" % (text, low))
        if high is not None and value > high:
            raise argparse.ArgumentTypeError("%r: must be <= %d" % (text, high))
        return value
    return parse


class ClosedStream(OSError):
    """A standard stream the process was started without (`<&-`, `>&-`)."""


class _Closed:
    """Stands in for a closed sys.stdin/stdout: any use is a one-line ClosedStream error
    rather than "AttributeError: 'NoneType' object has no attribute 'buffer'"."""

    def __init__(self, name):
        self._name = name

    def flush(self):  # called by the interpreter at exit: nothing to flush
        pass

    def close(self):
        pass

    def __getattr__(self, attr):
        raise ClosedStream("standard %s is closed" % self._name)

    def __bool__(self):
        return False


def guard_std_streams():
    """Replace missing standard streams: stderr by /dev/null (nowhere to complain), stdin
    and stdout by stand-ins that raise ClosedStream when used. Returns True if stdout was
    closed: every command prints its result there, so none can run."""
    closed_stdout = sys.stdout is None
    if sys.stderr is None:
        import os
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    if sys.stdin is None:
        sys.stdin = _Closed("input")  # type: ignore[assignment]
    if sys.stdout is None:
        sys.stdout = _Closed("output")  # type: ignore[assignment]
    return closed_stdout
