"""The `vigil` command: a table of subcommands, each imported only when it runs.

Every subcommand module exposes `main(argv) -> int`. Errors that are the user's (bad file,
bad URL, missing port) are printed as one line on stderr with exit code 2; a traceback is a
bug in vigil.
"""
import importlib
import sys

COMMANDS = {
    "decode": ("host.decode", "decode frames from a byte stream, hex lines or a recording"),
    "centre": ("host.centre.cli", "run the monitoring-centre emulator on a transport URL"),
    "emulate": ("host.emulate", "run a scenario on emulated devices against the emulated centre"),
    "scenarios": ("host.emulate", "list the built-in scenarios"),
    "flash-image": ("host.flash_image", "list, print or extract the files of a flash image"),
}


def usage():
    lines = ["usage: vigil COMMAND [ARGS...]", "", "commands:"]
    for name, (_module, summary) in COMMANDS.items():
        lines.append("  %-10s %s" % (name, summary))
    lines.append("")
    lines.append("Run `vigil COMMAND --help` for a command's options.")
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name = argv[0]
    entry = COMMANDS.get(name)
    if entry is None:
        print("vigil: unknown command %r (try `vigil --help`)" % name, file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    runner = getattr(module, "main_" + name.replace("-", "_"), None) or module.main
    try:
        return runner(argv[1:])
    except KeyboardInterrupt:
        print("vigil %s: interrupted" % name, file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
