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


def device_files(repo_root):
    """Map device paths to contents: /boot.py, /main.py, /lib/firmware/*, /lib/protocol/*.

    Host-only protocol files (`protocol/host_*.py`) are never deployed. A missing boot.py or
    main.py is simply absent, as on a board that has none.
    """
    root = Path(repo_root)
    if not (root / "firmware").is_dir():
        raise DeployError("%s: no firmware/ directory here" % root)
    files = {}
    for src in sorted((root / "firmware").glob("*.py")):
        if src.name in ("boot.py", "main.py"):
            files["/" + src.name] = src.read_bytes()
        else:
            files["/lib/firmware/" + src.name] = src.read_bytes()
    for src in sorted((root / "protocol").glob("*.py")):
        if not src.name.startswith("host_"):
            files["/lib/protocol/" + src.name] = src.read_bytes()
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
