"""Lay the portable parts of the repository out as the device's flash (CONTRACTS.md).

`device_files` says which file goes where; `build_image` turns that into a littlefs image
with the ESP32's 4096-byte blocks. The emulator boots from exactly this image, so what runs
in the emulator is what `vigil deploy` would put on the board.
"""
from pathlib import Path

from host.emulator.flash import BLOCK_COUNT, BLOCK_SIZE, VFS_OFFSET, board_littlefs

# The board's vfs partition (host/emulator/flash.py, docs/HARDWARE.md "flash geometry"):
# 512 blocks of 4096 bytes at VFS_OFFSET of a 4 MiB ESP32-WROOM-32E, with MicroPython's
# littlefs config, so an image written at VFS_OFFSET mounts on the board as it does here.
DEFAULT_BLOCK_SIZE = BLOCK_SIZE
DEFAULT_BLOCK_COUNT = BLOCK_COUNT
IMAGE_OFFSET = VFS_OFFSET


class DeployError(ValueError):
    """A file set or image size that cannot be laid out on the device."""


# Test builds (TEST_INJECT, SPEC 4.6): the module only they carry, and the switch in app.py.
TEST_ONLY = ("inject.py",)
TEST_SWITCH = (b"_TEST = const(False)", b"_TEST = const(True)")


def device_files(repo_root, test_build=False):
    """Map device paths to contents: /boot.py, /main.py, /lib/firmware/*, /lib/protocol/*.

    Host-only protocol files (`protocol/host_*.py`) are never deployed. A missing boot.py or
    main.py is simply absent, as on a board that has none. A production build leaves out
    firmware/inject.py; `test_build=True` adds it and turns app.py's `_TEST` on, so the
    board accepts TEST_INJECT under the test key (/keys/test.key, written by provisioning).
    """
    root = Path(repo_root)
    if not (root / "firmware").is_dir():
        raise DeployError("%s: no firmware/ directory here" % root)
    files = {}
    for src in sorted((root / "firmware").glob("*.py")):
        if src.name in ("boot.py", "main.py"):
            files["/" + src.name] = src.read_bytes()
        elif src.name in TEST_ONLY and not test_build:
            continue
        else:
            files["/lib/firmware/" + src.name] = src.read_bytes()
    for src in sorted((root / "protocol").glob("*.py")):
        if not src.name.startswith("host_"):
            files["/lib/protocol/" + src.name] = src.read_bytes()
    if test_build:
        app = files.get("/lib/firmware/app.py", b"")
        if app.count(TEST_SWITCH[0]) != 1:
            raise DeployError("firmware/app.py: no single %r line to switch for a test build"
                              % TEST_SWITCH[0].decode())
        files["/lib/firmware/app.py"] = app.replace(*TEST_SWITCH)
    return files


def build_image(files, block_count=DEFAULT_BLOCK_COUNT, block_size=DEFAULT_BLOCK_SIZE):
    """Return a littlefs v2 image (bytes) holding `files` ({device path: bytes})."""
    from littlefs import LittleFSError

    if block_count < 2 or block_size < 128:
        raise DeployError("image of %d blocks of %d bytes is too small" % (block_count, block_size))
    fs = board_littlefs(block_count=block_count, block_size=block_size, mount=False)
    fs.format()
    fs.mount()
    try:
        for path in sorted(files):
            if not path.startswith("/"):
                raise DeployError("%s: device paths must be absolute" % path)
            parent = path.rsplit("/", 1)[0]
            if parent:
                fs.makedirs(parent, exist_ok=True)
            with fs.open(path, "wb") as f:
                f.write(bytes(files[path]))
    except LittleFSError as e:
        raise DeployError("files do not fit in %d blocks of %d bytes: %s"
                          % (block_count, block_size, e)) from None
    return bytes(fs.context.buffer)
