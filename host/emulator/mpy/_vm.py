# The VM side of vigil's MicroPython runtime (host/emulator/vm.py is the host side).
#
# Run as: micropython -X heapsize=N -c "import _vm" FD_IN FD_OUT; the host's first message
# is [bus names, names whose calls sample the heap, flash blocks, block size, this dir]
# (not argv: this VM dies with "uncaught NLR" when its argv passes ~256 bytes).
# It builds a `_board` whose every name forwards its call over the pipes to the host, where
# the emulated board serves it; imports the emulated machine/time/esp32 from HWDIR; mounts
# littlefs on a block device whose blocks live on the host; then runs /boot.py and /main.py
# from that flash, as the ESP32 port does. Nothing here knows what a bus call means, so the
# host can add calls without touching this file.
#
# Messages are <I length> + body; body[0] is the kind. Values: N none, T/F bool, i <q int,
# f <d float, b/s <I len + bytes/utf-8, l <I count + values, c <I callback id.
import gc
import struct
import sys

from micropython import mem_info

# The heap the bare VM had before this module loaded (the launcher's -c appends it): what
# the unix port itself holds, as a board's runtime does too. Everything allocated from here
# until /boot.py runs is the emulator's (this bridge, the emulated machine/time/esp32): C in
# ROM on a board, so the host adds exactly that to -X heapsize (host/emulator/vm.py).
_BARE_ALLOC = int(sys.argv.pop())

_pack = struct.pack
_unpack_from = struct.unpack_from

# VM -> host
_CALL = 0x43        # C op value(args list) [heap: <q or -1]
_CB_DONE = 0x44     # D: a callback returned
_CB_RAISED = 0x52   # R: a callback raised (kept here, re-raised when the host says so)
_EXITED = 0x58      # X: main.py returned
_CRASHED = 0x45     # E type message traceback: an uncaught exception
_ROM_HEAP = 0x48    # H <q bytes: the emulator's own heap at boot (sent once, before boot.py)
# host -> VM
_REPLY = 0x72       # r value
_ERROR = 0x65       # e type args: the bus call raised
_RUN_CB = 0x63      # c <I id: run a callback now
_RERAISE = 0x78     # x: the bus call ended because a callback raised
_EXEC = 0x70        # p source: a line typed at the REPL

_fin = open("/proc/self/fd/" + sys.argv[1], "rb")
_fout = open("/proc/self/fd/" + sys.argv[2], "wb")
_hdr = bytearray(4)
_callbacks = []  # type: list
_cb_ids = {}  # type: dict
_raised = [None]
_scope = {"__name__": "__main__"}
_MEM_INFO_MARK = "\x00vigil mem_info"  # then micropython.mem_info()'s 4 lines


def _read_exact(buf):
    mv = memoryview(buf)
    got = 0
    while got < len(buf):
        n = _fin.readinto(mv[got:])
        if not n:
            sys.exit(0)  # the host has gone: nothing left to run for
        got += n


# One buffer each way, made before /boot.py runs (so in the emulator's measured share) and
# reused by every message: the bridge, which a board does not have, then allocates nothing
# per bus call in the firmware's heap. A bytearray keeps its capacity when reset by a slice
# assignment; a bigger message grows it once.
_obuf = bytearray(2560)
_ibuf = [bytearray(2560)]


def _recv():
    """The next message's body: a view of the input buffer, valid until the next _recv()."""
    _read_exact(_hdr)
    n = _unpack_from("<I", _hdr)[0]
    buf = _ibuf[0]
    if len(buf) < n:
        buf = _ibuf[0] = bytearray(n)
    body = memoryview(buf)[:n]
    _read_exact(body)
    return body


def _send(body):
    _fout.write(_pack("<I", len(body)))
    _fout.write(body)


def _enc(out, v):
    if v is None:
        out.append(0x4E)
    elif v is True:
        out.append(0x54)
    elif v is False:
        out.append(0x46)
    elif isinstance(v, int):
        out.append(0x69)
        out.extend(_pack("<q", v))
    elif isinstance(v, float):
        out.append(0x66)
        out.extend(_pack("<d", v))
    elif isinstance(v, (bytes, bytearray, memoryview)):
        out.append(0x62)
        out.extend(_pack("<I", len(v)))
        out.extend(v)
    elif isinstance(v, str):
        b = v.encode()
        out.append(0x73)
        out.extend(_pack("<I", len(b)))
        out.extend(b)
    elif isinstance(v, (list, tuple)):
        out.append(0x6C)
        out.extend(_pack("<I", len(v)))
        for item in v:
            _enc(out, item)
    elif callable(v):
        cb_id = _cb_ids.get(v)
        if cb_id is None:
            cb_id = len(_callbacks)
            _callbacks.append(v)
            _cb_ids[v] = cb_id
        out.append(0x63)
        out.extend(_pack("<I", cb_id))
    else:
        raise TypeError("can't send %s to the board" % type(v).__name__)


def _dec(buf, i):
    t = buf[i]
    i += 1
    if t == 0x4E:
        return None, i
    if t == 0x54:
        return True, i
    if t == 0x46:
        return False, i
    if t == 0x69:
        return _unpack_from("<q", buf, i)[0], i + 8
    if t == 0x66:
        return _unpack_from("<d", buf, i)[0], i + 8
    if t == 0x62 or t == 0x73:
        n = _unpack_from("<I", buf, i)[0]
        i += 4
        b = bytes(buf[i:i + n])
        return (b if t == 0x62 else b.decode()), i + n
    if t == 0x6C:
        n = _unpack_from("<I", buf, i)[0]
        i += 4
        items = []
        for _ in range(n):
            v, i = _dec(buf, i)
            items.append(v)
        return items, i
    raise ValueError("bad value tag %d from the host" % t)


def _exception(name, args):
    import builtins
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = RuntimeError
    return cls(*args)


def _await_reply():
    """Serve the host until it answers: it may run callbacks (IRQ handlers, timers) first."""
    while True:
        msg = _recv()
        kind = msg[0]
        if kind == _REPLY:
            return _dec(msg, 1)[0]
        if kind == _RUN_CB:
            cb = _callbacks[_unpack_from("<I", msg, 1)[0]]
            args = _dec(msg, 5)[0] if len(msg) > 5 else ()
            try:
                result = cb(*args)
            except Exception as e:  # the host unwinds its side, then says _RERAISE
                _raised[0] = e
                _send(bytearray(b"R"))
                continue
            out = bytearray(b"D")
            if args:                   # a BLE IRQ handler's result (a secret, True/False)
                _enc(out, result)
            _send(out)
        elif kind == _EXEC:
            _repl_line(_dec(msg, 1)[0])
            _send(bytearray(b"D"))
        elif kind == _ERROR:
            name, i = _dec(msg, 1)
            args = _dec(msg, i)[0]
            raise _exception(name, args)
        elif kind == _RERAISE:
            saved = _raised[0]
            _raised[0] = None
            raise saved
        else:
            raise ValueError("bad message %d from the host" % kind)


def _repl_line(source):
    try:
        try:
            code = compile(source, "<stdin>", "single")
        except SyntaxError:
            code = compile(source, "<stdin>", "exec")
        exec(code, _scope)
    except Exception as e:  # noqa: BLE001 - the REPL prints it and carries on
        sys.print_exception(e)


def _call(op, args, sample_heap):
    out = _obuf
    out[:] = b"\0\0\0\0C"  # room for the length, then the kind
    out.append(op)
    _enc(out, args)
    out.extend(_pack("<q", gc.mem_alloc() if sample_heap else -1))
    struct.pack_into("<I", out, 0, len(out) - 4)
    _fout.write(out)
    return _await_reply()


class _Board:
    pass


def _plain(v):
    # bluetooth.UUID objects cross the pipe as their value (the host rebuilds them).
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return getattr(v, "value", v)


def _make_ble(board):
    """`_ble` for host/emulator/mpy/bluetooth.py: the board's ble_<name> calls."""
    ble = _Board()
    for name in dir(board):
        if name.startswith("ble_"):
            setattr(ble, name[4:], getattr(board, name))
    register = ble.register
    ble.register = lambda services: register(_plain(services))
    return ble


def _bind(op, sample_heap):
    def call(*args):
        return _call(op, args, sample_heap)
    return call


def _make_board(names, sampled):
    board = _Board()
    for op, name in enumerate(names):
        setattr(board, name, _bind(op, name in sampled))
    return board


class _FlashBlocks:
    """The board's flash as littlefs sees it: the blocks live on the host, which counts
    every write (for power cuts). Reads come straight from the host's mapping of the image
    when the launcher passed its address, from the image's file when the host passed its fd
    ("@N": a plain binary, VIGIL_MICROPYTHON), else over the pipe."""

    def __init__(self, board, blocks, block_size, address):
        self._board = board
        self._blocks = blocks
        self._block_size = block_size
        self._image = None
        self._file = None
        if address and address[0] == "@":
            self._file = open("/proc/self/fd/" + address[1:], "rb")
        elif address:
            import uctypes
            self._image = memoryview(uctypes.bytearray_at(int(address), blocks * block_size))

    def readblocks(self, block, buf, off=0):
        if self._file is not None:
            self._file.seek(block * self._block_size + off)
            self._file.readinto(buf)
        elif self._image is None:
            buf[:] = self._board.flash_read(block, off, len(buf))
        else:
            start = block * self._block_size + off
            buf[:] = self._image[start:start + len(buf)]

    def writeblocks(self, block, buf, off=None):
        self._board.flash_write(block, 0 if off is None else off, buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self._blocks
        if op == 5:
            return self._block_size
        if op == 6:
            self._board.flash_erase(arg)
        return 0


class _ReplIn:
    """sys.stdin as the board has it: what is typed on the REPL UART (the host's UART 0),
    read over the bus, so that main.py's "a key within 2 s" reaches the firmware here too."""

    def __init__(self, board, text):
        self._board = board
        self._text = text
        if text:
            self.buffer = _ReplIn(board, False)

    def read(self, n=-1):
        data = self._board.repl_read(n)
        return data.decode() if self._text else data

    def readinto(self, buf):
        data = self._board.repl_read(len(buf))
        buf[:len(data)] = data
        return len(data)


def _sys_with_stdin(board):
    """A `sys` for the firmware whose stdin is the REPL UART: the unix port's own sys.stdin
    is the VM process's stdin, and its attributes cannot be replaced."""
    proxy = _Board()
    for name in dir(sys):
        try:
            setattr(proxy, name, getattr(sys, name))
        except (AttributeError, TypeError):
            pass
    proxy.stdin = _ReplIn(board, True)
    return proxy


class _Poll:
    """select.poll() as the board has it (sys.stdin and UARTs): the host waits in virtual
    time, as under CPython (host/emulator/runtime.py _Poll)."""

    def __init__(self, board):
        self._board = board
        self._objs = []

    def register(self, obj, mask=1):
        if not isinstance(obj, _ReplIn) and not hasattr(obj, "_id"):
            raise OSError("emulator: select.poll supports sys.stdin and machine.UART only")
        if obj not in self._objs:
            self._objs.append(obj)

    def unregister(self, obj):
        if obj in self._objs:
            self._objs.remove(obj)

    def modify(self, obj, mask):
        self.register(obj, mask)

    def poll(self, timeout_ms=-1):
        keys = [-1 if isinstance(o, _ReplIn) else o._id for o in self._objs]
        return [(self._objs[i], 1) for i in self._board.vm_poll(keys, timeout_ms)]

    def ipoll(self, timeout_ms=-1, flags=0):
        return iter(self.poll(timeout_ms))


class _Select:
    POLLIN = 1
    POLLOUT = 4
    POLLERR = 8
    POLLHUP = 16

    def __init__(self, board):
        self._board = board

    def poll(self):
        return _Poll(self._board)


class _Gc:
    """The VM's own gc, but a collection also takes virtual time on the host (a full
    collection of the ESP32's heap takes ~2 ms), as under the CPython runtime."""

    def __init__(self, board):
        self._board = board
        self.enable = gc.enable
        self.disable = gc.disable
        self.isenabled = gc.isenabled
        self.mem_alloc = gc.mem_alloc
        self.mem_free = gc.mem_free
        self.threshold = gc.threshold

    def collect(self):
        gc.collect()
        # What is live now, and the VM's own account of its heap (the host takes these lines
        # out of the board's log): the firmware collects once per superloop pass.
        print(_MEM_INFO_MARK)
        mem_info()
        self._board.vm_gc_collect(gc.mem_alloc())


def _hook_imports(board):
    """Tell the host which modules an import is about to load, before they load: loading a
    .mpy costs the board CPU time, which the host charges in virtual time exactly as the
    CPython runtime does (host/emulator/runtime.py _exec_module)."""
    import builtins
    real_import = builtins.__import__
    modules = sys.modules

    def vm_import(name, globals=None, locals=None, fromlist=None, level=0):
        if not level:
            wanted = []
            parts = name.split(".")
            for i in range(len(parts)):
                prefix = ".".join(parts[:i + 1])
                if prefix not in modules:
                    wanted.append(prefix)
            # `from pkg import sub` loads sub through this hook again (mp_import_from calls
            # the __import__ override with "pkg.sub"), which reports it then.
            if wanted:
                board.vm_import(wanted)
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = vm_import


def _traceback_text(e):
    import io
    s = io.StringIO()
    sys.print_exception(e, s)
    return s.getvalue()


def _main():
    import os
    # Collect as it goes (as main.py does for the firmware): the emulator's modules then sit
    # packed at the bottom of the heap instead of leaving holes between them.
    gc.threshold(4096)
    names, sampled, blocks, block_size, here = _dec(_recv(), 0)[0]
    board = _make_board(names, sampled)
    names = sampled = None
    sys.modules["_board"] = board
    if hasattr(board, "ble_active"):
        sys.modules["_ble"] = _make_ble(board)
    sys.modules["select"] = _Select(board)
    sys.modules["sys"] = _sys_with_stdin(board)
    _hook_imports(board)
    sys.modules["gc"] = _Gc(board)
    sys.path.insert(0, here)
    # The board's own modules are in ROM on an ESP32: load them before the host filesystem
    # is replaced by the flash.
    import time  # noqa: F401

    import esp32  # noqa: F401
    import machine  # noqa: F401
    if "_ble" in sys.modules:
        import bluetooth  # noqa: F401
    del sys.path[0]
    gc.threshold(-1)
    gc.collect()
    # Measured before the flash is mounted: the filesystem (littlefs's buffers) is the
    # firmware's cost on a board too.
    # Then the word size: 4 on a 32-bit build (the ESP32's), 8 on the 64-bit one.
    _send(b"H" + _pack("<qB", gc.mem_alloc() - _BARE_ALLOC, 8 if sys.maxsize > 0x7FFFFFFF else 4))
    # mtime=False: the ESP32's default stamps files with the RTC, but this VM's clock is the
    # host's wall clock, which would make images differ from run to run.
    address = sys.argv[3] if len(sys.argv) > 3 else 0
    fs = os.VfsLfs2(_FlashBlocks(board, blocks, block_size, address), mtime=False)
    os.umount("/")
    os.mount(fs, "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
    sys.argv[:] = []
    gc.collect()
    scope = _scope
    try:
        for path in ("/boot.py", "/main.py"):
            try:
                os.stat(path)
            except OSError:
                continue
            with open(path) as f:
                source = f.read()
            scope["__file__"] = path
            code = compile(source, path, "exec")
            source = None
            exec(code, scope)
            code = None
    except SystemExit:
        out = bytearray(b"X")
        _enc(out, "SystemExit")
        _send(out)
        _await_reply()
        return
    except Exception as e:  # noqa: BLE001 - the board's REPL would print it; the host decides
        out = bytearray(b"E")
        _enc(out, type(e).__name__)
        _enc(out, str(e))
        gc.collect()
        try:
            text = _traceback_text(e)
        except MemoryError:
            text = ""
        _enc(out, text)
        _send(out)
        _await_reply()
        return
    out = bytearray(b"X")
    _enc(out, "")
    _send(out)
    _await_reply()  # at the REPL: the host still runs IRQ handlers and timers


_main()
