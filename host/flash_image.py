"""`vigil flash-image ls|cat|extract IMAGE`: read a board's littlefs flash image on the host.

Images come from `vigil emulate --save-flash DIR` (one per device, under either runtime) or
from a board (`esptool read_flash` of the vfs partition). The geometry is the ESP32's: 4096-byte
blocks, the block count from the image's size (512 for the 2 MiB vfs partition of a 4 MiB
module). Reading never writes: the image is mounted from a copy.
"""
import argparse
import sys
from pathlib import Path

BLOCK_SIZE = 4096


class ImageError(ValueError):
    """An image that is not a mountable littlefs image of whole blocks."""


def mount(image_bytes, block_size=BLOCK_SIZE):
    from littlefs import LittleFS, LittleFSError

    if not image_bytes or len(image_bytes) % block_size:
        raise ImageError("%d bytes is not a whole number of %d-byte blocks"
                         % (len(image_bytes), block_size))
    fs = LittleFS(block_size=block_size, block_count=len(image_bytes) // block_size,
                  mount=False)
    fs.context.buffer = bytearray(image_bytes)
    try:
        fs.mount()
    except LittleFSError as e:
        raise ImageError("does not mount as littlefs: %s" % e) from None
    return fs


def walk(fs, top="/"):
    """Yield (path, is_dir, size) for everything under top, depth first, sorted by name."""
    for entry in sorted(fs.scandir(top), key=lambda e: e.name):
        path = top.rstrip("/") + "/" + entry.name
        yield path, entry.type == 2, entry.size if entry.type == 1 else 0
        if entry.type == 2:
            yield from walk(fs, path)


def read_file(fs, path):
    from littlefs import LittleFSError

    try:
        if fs.stat(path).type != 1:
            raise ImageError("%s is a directory" % path)
        with fs.open(path, "rb") as f:
            return f.read()
    except LittleFSError:
        raise ImageError("%s: no such file in the image" % path) from None


def _cmd_ls(fs, args, out):
    for path, is_dir, size in walk(fs):
        out.write("%s%s\n" % (path + "/" if is_dir else path,
                              "" if is_dir else "  %d" % size))
    return 0


def _cmd_cat(fs, args, out):
    out.flush()
    sys.stdout.buffer.write(read_file(fs, args.path))
    return 0


def _cmd_extract(fs, args, out):
    dest = Path(args.dir)
    n = 0
    for path, is_dir, _size in walk(fs):
        target = dest / path.lstrip("/")
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(read_file(fs, path))
            n += 1
    out.write("extracted %d files to %s\n" % (n, dest))
    return 0


def main(argv):
    parser = argparse.ArgumentParser(prog="vigil flash-image", description=(
        "Read a board's littlefs flash image (4096-byte blocks) with littlefs-python."))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ls", help="list every file and directory with its size")
    p.add_argument("image")
    p = sub.add_parser("cat", help="write one file's bytes to stdout")
    p.add_argument("image")
    p.add_argument("path", help="path in the image, e.g. /state/config.bin")
    p = sub.add_parser("extract", help="copy every file into a directory")
    p.add_argument("image")
    p.add_argument("dir")
    args = parser.parse_args(argv)
    try:
        data = Path(args.image).read_bytes()
    except OSError as e:
        print("vigil flash-image: %s: %s" % (args.image, e.strerror), file=sys.stderr)
        return 2
    try:
        fs = mount(data)
        handler = {"ls": _cmd_ls, "cat": _cmd_cat, "extract": _cmd_extract}[args.command]
        return handler(fs, args, sys.stdout)
    except ImageError as e:
        print("vigil flash-image: %s: %s" % (args.image, e), file=sys.stderr)
        return 2
    except OSError as e:
        print("vigil flash-image: %s" % e, file=sys.stderr)
        return 2
