"""The emulated board's flash: a littlefs image, an `os` facade and an `open` builtin over it."""
import errno
import types

import littlefs
from littlefs import LittleFS, LittleFSError, lfs
from littlefs.context import UserContext


def _close_once(self):
    """littlefs-python 0.19's FileHandle.close: when lfs_file_close fails (a power cut during
    the final write), the C side has already dropped the file but the handle stays open, and
    its second close (a `with` exit, or the garbage collector) trips a C assert that aborts
    the whole process. Mark the handle closed either way."""
    if not self.closed:
        try:
            lfs.file_close(self.fs, self.fh)
        finally:
            setattr(self, "__IOBase_closed", True)


littlefs.FileHandle.close = _close_once  # type: ignore[method-assign]  # the workaround above

# The littlefs an ESP32_GENERIC 4 MiB build mounts at "/" (docs/HARDWARE.md, flash geometry):
# - the "vfs" partition: offset 0x200000, size 0x200000 (ports/esp32/partitions-4MiB.csv up to
#   v1.25; from v1.26 partitions-4MiBplus.csv has none and main.c registers one from the end
#   of the factory app, 0x200000, to the end of the 4 MiB flash: the same span);
# - 4096-byte blocks (esp32_partition.c, the flash sector);
# - the config extmod/vfs_lfsx.c gives littlefs when inisetup.py runs VfsLfs2.mkfs(bdev) and
#   _boot.py mounts it with the defaults of extmod/vfs_lfs.c: readsize=32, progsize=32,
#   lookahead=32; cache_size = min(block_size, 4 * max(read, prog)) = 128; block_cycles=100;
#   name_max 255 (LFS_NAME_MAX); on-disk version 2.1 (lib/littlefs LFS2_DISK_VERSION).
VFS_OFFSET = 0x200000
VFS_SIZE = 0x200000
BLOCK_SIZE = 4096
BLOCK_COUNT = VFS_SIZE // BLOCK_SIZE
LFS_CONFIG = {
    "read_size": 32,
    "prog_size": 32,
    "cache_size": 128,
    "lookahead_size": 32,
    "block_cycles": 100,
    "name_max": 255,
    "disk_version": 0x00020001,
}


def board_littlefs(context=None, block_count=BLOCK_COUNT, block_size=BLOCK_SIZE, mount=True):
    """A littlefs-python LittleFS configured as MicroPython configures the board's."""
    config = dict(LFS_CONFIG)
    config["cache_size"] = min(block_size, config["cache_size"])
    return LittleFS(context=context, block_size=block_size, block_count=block_count,
                    mount=mount, **config)


_S_IFDIR = 0x4000
_S_IFREG = 0x8000
_WRITE_MODE_CHARS = frozenset("wax+")
_LFS_ERR_IO = -5


class _FlashContext(UserContext):
    """Block device over a bytearray (no per-call logging), with a fault: after
    `progs_left` more program/erase operations every further one fails and changes nothing,
    as if power had been cut at that point (the device then resets at its next bus call)."""

    def __init__(self, buffer):
        self.buffer = buffer
        self.in_size = len(buffer)
        self.progs_left = None
        self.cut = False
        self.progs = 0          # program/erase operations asked for (the BLE IRQ rule reads it)

    def read(self, cfg, block, off, size):
        start = block * cfg.block_size + off
        return self.buffer[start:start + size]

    def _allowed(self):
        self.progs += 1
        if self.progs_left is None:
            return True
        if self.progs_left <= 0:
            self.cut = True
            return False
        self.progs_left -= 1
        return True

    def prog(self, cfg, block, off, data):
        if not self._allowed():
            return _LFS_ERR_IO  # littlefs unwinds cleanly; silently dropping trips its asserts
        start = block * cfg.block_size + off
        self.buffer[start:start + len(data)] = data
        return 0

    def erase(self, cfg, block):
        if not self._allowed():
            return _LFS_ERR_IO
        start = block * cfg.block_size
        self.buffer[start:start + cfg.block_size] = b"\xff" * cfg.block_size
        return 0

    def sync(self, cfg):
        return 0


def _os_error(exc):
    """The MicroPython-style OSError(errno) for a littlefs-python or host error."""
    if isinstance(exc, LittleFSError):
        code = -exc.code
    elif isinstance(exc, FileExistsError):
        code = errno.EEXIST
    elif isinstance(exc, FileNotFoundError):
        code = errno.ENOENT
    elif isinstance(exc, IsADirectoryError):
        code = errno.EISDIR
    elif isinstance(exc, NotADirectoryError):
        code = errno.ENOTDIR
    elif isinstance(exc, OSError) and exc.errno:
        code = exc.errno
    else:
        code = errno.EIO
    return OSError(code, errno.errorcode.get(code, "EIO"))


class _File:
    """A file on the emulated flash: littlefs-python's handle, with its errors turned into
    MicroPython's OSError(errno) (a full flash is OSError 28, ENOSPC, as on the board)."""

    __slots__ = ("_f", "_flash")

    def __init__(self, handle, flash):
        self._f = handle
        self._flash = flash

    def __getattr__(self, name):
        attr = getattr(self._f, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self._flash.check_power()
            try:
                return attr(*args, **kwargs)
            except (LittleFSError, OSError) as e:
                self._flash.check_power()  # the write that met the cut: the CPU is already off
                raise _os_error(e) from None
        return call

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        return iter(self._f)


class Flash:
    """One device's flash. The bytearray survives resets; the mounted filesystem does not."""

    def __init__(self, image, block_size=BLOCK_SIZE):
        if len(image) % block_size or not image:
            raise ValueError("flash image of %d bytes is not a whole number of %d-byte blocks"
                             % (len(image), block_size))
        self.block_size = block_size
        self.block_count = len(image) // block_size
        self.context = _FlashContext(bytearray(image))
        self._fs = None
        self._files = {}  # path -> bytes, for imports; dropped on any write to that path
        self.cwd = "/"

    @property
    def image(self):
        return bytes(self.context.buffer)

    def mount(self):
        """(Re)mount from the raw blocks, as the board does at boot: open files are lost."""
        fs = board_littlefs(self.context, self.block_count, self.block_size, mount=False)
        try:
            fs.mount()
        except LittleFSError as e:
            raise OSError(errno.ENODEV, "flash does not mount: %s" % e) from None
        self._fs = fs
        self.cwd = "/"

    def forget(self):
        """Blocks changed under the mounted filesystem (the MicroPython VM writes them
        directly): drop the cache and remount before the host reads files again."""
        self._files.clear()
        self._stale = True

    def _fresh(self):
        if getattr(self, "_stale", False):
            self._stale = False
            cwd = self.cwd
            self.mount()
            self.cwd = cwd

    on_power_lost = None          # set by the device: raises its power-cut reset

    def cut_after_writes(self, n):
        """Drop every flash program/erase after the next `n` (a power cut mid-write)."""
        self.context.progs_left = n
        self.context.cut = False

    def clear_fault(self):
        self.context.progs_left = None
        self.context.cut = False

    def path(self, p):
        p = str(p)
        if not p.startswith("/"):
            p = self.cwd.rstrip("/") + "/" + p
        parts = []
        for part in p.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if parts:
                    parts.pop()
            else:
                parts.append(part)
        return "/" + "/".join(parts)

    def read_file(self, path):
        """Contents of a file, or None if there is none (cached for the import system)."""
        self._fresh()
        if path in self._files:
            return self._files[path]
        self.check_power()
        try:
            st = self._fs.stat(path)
            if st.type != 1:
                data = None
            else:
                with self._fs.open(path, "rb") as f:
                    data = f.read()
        except (LittleFSError, OSError):
            data = None
        self._files[path] = data
        return data

    def _exists(self, path):
        try:
            self._fs.stat(path)
            return True
        except (LittleFSError, OSError):
            return False

    def is_dir(self, path):
        self._fresh()
        try:
            return self._fs.stat(path).type == 2
        except (LittleFSError, OSError):
            return False

    def _invalidate(self, path):
        self._files.pop(path, None)

    # --- the firmware-facing API -------------------------------------------------------

    def open(self, file, mode="r", buffering=-1, encoding=None, *args, **kwargs):
        path = self.path(file)
        if _WRITE_MODE_CHARS.intersection(mode):
            self._invalidate(path)
        try:
            if "a" in mode and not self._exists(path):
                # MicroPython's append mode creates the file; littlefs-python 0.19's does not.
                self._fs.open(path, "wb").close()
            self.check_power()
            return _File(self._fs.open(path, mode), self)
        except (LittleFSError, OSError) as e:
            self.check_power()
            raise _os_error(e) from None

    def check_power(self):
        """After the power was cut mid-write the CPU has stopped: nothing more reaches the
        filesystem (littlefs would also assert on its half-programmed cache). Also called when
        a call fails: if the cut made it fail, the board browned out inside that write, so
        the firmware never sees the error (an OSError(EIO) it could catch, log as a crash or
        act on would be a reaction no real board can have)."""
        if self.context.cut and self.on_power_lost is not None:
            self.on_power_lost()

    def _call(self, fn, *args):
        self.check_power()
        try:
            return fn(*args)
        except (LittleFSError, OSError) as e:
            self.check_power()
            raise _os_error(e) from None

    def os_module(self, urandom):
        """A fresh `os` module for one boot of the firmware."""
        fs = self._fs
        flash = self

        def listdir(path=None):
            return self._call(fs.listdir, self.path(path or self.cwd))

        def ilistdir(path=None):
            for st in self._call(fs.scandir, self.path(path or self.cwd)):
                kind = _S_IFDIR if st.type == 2 else _S_IFREG
                yield (st.name, kind, 0, st.size if st.type == 1 else 0)

        def stat(path):
            st = self._call(fs.stat, self.path(path))
            mode = _S_IFDIR if st.type == 2 else _S_IFREG
            return (mode, 0, 0, 0, 0, 0, st.size if st.type == 1 else 0, 0, 0, 0)

        def remove(path):
            p = self.path(path)
            self._invalidate(p)
            self._call(fs.remove, p)

        def rename(old, new):
            a, b = self.path(old), self.path(new)
            self._invalidate(a)
            self._invalidate(b)
            self._call(fs.rename, a, b)

        def mkdir(path):
            self._call(fs.mkdir, self.path(path))

        def rmdir(path):
            self._call(fs.rmdir, self.path(path))

        def statvfs(path="/"):
            used = self._call(lambda: fs.used_block_count)
            free = flash.block_count - used
            return (flash.block_size, flash.block_size, flash.block_count, free, free,
                    0, 0, 0, 0, 255)

        def getcwd():
            return flash.cwd

        def chdir(path):
            p = self.path(path)
            if not self.is_dir(p):
                raise OSError(errno.ENOENT, "ENOENT")
            flash.cwd = p

        def uname():
            return ("esp32", "esp32", "1.29.0", "v1.29.0 on 2026-01-01",
                    "ESP32 module with ESP32 (vigil emulator)")

        def sync():
            pass

        def dupterm(stream=None, index=0):
            return None

        module = types.ModuleType("os")
        module.__dict__.update({
            "listdir": listdir, "ilistdir": ilistdir, "stat": stat, "remove": remove,
            "unlink": remove, "rename": rename, "mkdir": mkdir, "rmdir": rmdir,
            "statvfs": statvfs, "getcwd": getcwd, "chdir": chdir, "uname": uname,
            "sync": sync, "urandom": urandom, "dupterm": dupterm, "sep": "/",
        })
        return module
