"""What the firmware's Python sees on the emulated board: imports from the flash image, the
built-in modules (the emulated `machine`, `esp32`, `time`, `micropython`, `cryptolib`, and
`sys`, `gc`, `select`, `random`, `os` of the board), stdout on the REPL UART, stdin from it.

`FirmwareRuntime` is a mixin of `EmulatedDevice`.
"""
import builtins
import importlib
import traceback
import types
from pathlib import Path

from . import cryptolib as _cryptolib
from .heap import mpy_size

MPY_DIR = Path(__file__).resolve().parent / "mpy"
HW_MODULES = ("machine", "esp32", "time", "micropython", "bluetooth")
_ALIASES = {"utime": "time", "uos": "os", "usys": "sys", "ucryptolib": "cryptolib",
            "urandom": "random", "ustruct": "struct", "ubinascii": "binascii",
            "uhashlib": "hashlib", "ujson": "json", "uerrno": "errno",
            "ucollections": "collections", "uio": "io", "ure": "re", "uarray": "array",
            "uheapq": "heapq", "uselect": "select"}
# Stateless CPython modules whose MicroPython namesakes the firmware may use.
_HOST_MODULES = frozenset(("struct", "binascii", "hashlib", "json", "math", "cmath", "errno",
                           "collections", "io", "re", "array", "heapq"))
# Time to load a .mpy from littlefs and build its objects, per byte (docs/HARDWARE.md: an
# estimate, the worse end of what flash reads and unmarshalling at 160 MHz allow).
IMPORT_US_PER_MPY_BYTE = 2.5
POLLIN = 1

_code_cache: dict = {}  # (filename, source) -> code object, shared by all devices and boots
_hw_sources: dict = {}


def _compile(filename, source):
    key = (filename, source)
    code = _code_cache.get(key)
    if code is None:
        code = compile(source, filename, "exec", dont_inherit=True)
        _code_cache[key] = code
    return code


def hw_source(name):
    path = str(MPY_DIR / (name + ".py"))
    source = _hw_sources.get(path)
    if source is None:
        source = _hw_sources[path] = Path(path).read_bytes()
    return source


class _StdoutFacade:
    def __init__(self, write):
        self.write = write

    def flush(self):
        pass


class _Stdin:
    """sys.stdin on the board: the REPL UART's input buffer."""

    def __init__(self, dev):
        self._dev = dev
        self.buffer = self

    def read(self, n=-1):
        return self._dev.repl_read(n)

    def readinto(self, buf):
        data = self._dev.repl_read(len(buf))
        buf[:len(data)] = data
        return len(data)


class _Poll:
    """select.poll() for sys.stdin and UARTs (what the ESP32 port can poll): waits awake,
    returning as soon as a registered stream has bytes, an IRQ ran, or the timeout passed."""

    def __init__(self, dev):
        self._dev = dev
        self._objs = []

    def register(self, obj, mask=POLLIN):
        if not isinstance(obj, _Stdin) and not hasattr(obj, "_id"):
            raise OSError("emulator: select.poll supports sys.stdin and machine.UART only")
        if obj not in self._objs:
            self._objs.append(obj)

    def unregister(self, obj):
        if obj in self._objs:
            self._objs.remove(obj)

    def modify(self, obj, mask):
        self.register(obj, mask)

    def _ready(self):
        out = []
        for obj in self._objs:
            if isinstance(obj, _Stdin):
                if self._dev.uarts[0].rx:
                    out.append((obj, POLLIN))
            elif obj.any():
                out.append((obj, POLLIN))
        return out

    def poll(self, timeout_ms=-1):
        dev = self._dev
        until = None if timeout_ms is None or timeout_ms < 0 else \
            dev.world.now_us + int(timeout_ms) * 1000
        while True:
            ready = self._ready()
            if ready or (until is not None and dev.world.now_us >= until):
                return ready
            if dev._wait(until, "idle") == 0:    # an IRQ handler ran: let the caller look
                return self._ready()

    def ipoll(self, timeout_ms=-1, flags=0):
        return iter(self.poll(timeout_ms))


class FirmwareRuntime:
    """Imports, built-in modules and stdio of the emulated board (mixin of EmulatedDevice)."""

    def _init_runtime(self):
        self._modules = {}
        self._hw_modules = {}
        self._loaded_files = set()
        self._stdout_buf = ""
        self._builtins = dict(builtins.__dict__)
        self._builtins.update({"__import__": self._import, "open": self.flash.open,
                               "print": self._print, "input": self._input})
        self._stdin = _Stdin(self)

    # --- imports ----------------------------------------------------------------------
    def _new_module(self, name, path, package=None):
        module = types.ModuleType(name)
        module.__dict__["__builtins__"] = self._builtins
        module.__file__ = path
        module.__package__ = package if package is not None else name.rpartition(".")[0]
        self._modules[name] = module
        return module

    def _exec_module(self, name, path, source, package=None, pkg_dir=None, charge=True):
        if source is not None and charge:
            # Loading a .mpy costs heap and CPU time on the board (docs/HARDWARE.md).
            size = mpy_size(source, path)
            self.heap.charge_import(name, size)
            self._spin(int(size * IMPORT_US_PER_MPY_BYTE))
        module = self._new_module(name, path, package)
        if pkg_dir is not None:
            module.__path__ = [pkg_dir]
        if source is not None:
            self._loaded_files.add(path)
            try:
                exec(_compile(path, source), module.__dict__)
            except BaseException:
                self._modules.pop(name, None)
                raise
        return module

    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level:
            package = (globals or {}).get("__package__") or ""
            for _ in range(level - 1):
                package = package.rpartition(".")[0]
            name = package + "." + name if name else package
        module = self._load(name)
        if not fromlist:
            return self._modules[name.partition(".")[0]]
        if hasattr(module, "__path__"):
            for item in fromlist:
                if item != "*" and not hasattr(module, item):
                    try:
                        self._load(name + "." + item)
                    except ImportError as e:
                        # Only a missing submodule means "not a submodule"; an ImportError
                        # raised while importing one is the firmware's own and propagates.
                        if str(e) != "no module named '%s.%s'" % (name, item):
                            raise
        return module

    def _load(self, name):
        module = self._modules.get(name)
        if module is not None:
            return module
        parent_name, _, leaf = name.rpartition(".")
        if parent_name:
            parent = self._load(parent_name)
            for directory in getattr(parent, "__path__", ()):
                module = self._load_from_flash(name, directory + "/" + leaf)
                if module is not None:
                    setattr(parent, leaf, module)
                    return module
            raise ImportError("no module named '%s'" % name)
        module = self._load_builtin(_ALIASES.get(name, name))
        if module is None:
            for root in ("", "/lib"):
                module = self._load_from_flash(name, root + "/" + name)
                if module is not None:
                    break
        if module is None:
            raise ImportError("no module named '%s'" % name)
        self._modules[name] = module
        return module

    def _load_from_flash(self, name, base):
        source = self.flash.read_file(base + ".py")
        if source is not None:
            return self._exec_module(name, base + ".py", source)
        if self.flash.is_dir(base):
            init = base + "/__init__.py"
            return self._exec_module(name, init, self.flash.read_file(init), package=name,
                                     pkg_dir=base)
        return None

    def _load_builtin(self, name):
        if name in self._modules:
            return self._modules[name]
        if name in self._hw_modules:
            # The built-in modules hold no state of their own (it lives on this board), so
            # one copy per device serves every boot. They are frozen in the real firmware:
            # no heap charge.
            module = self._hw_modules[name]
        elif name == "_board":
            module = self._hw_modules[name] = self._board_module()
        elif name == "_ble":
            module = self._hw_modules[name] = self._ble_module()
        elif name in HW_MODULES:
            module = self._exec_module(name, name + ".py", hw_source(name), charge=False)
            self._hw_modules[name] = module
            return module
        elif name == "os":
            module = self.flash.os_module(self._urandom)
        elif name == "sys":
            module = self._sys_module()
        elif name == "gc":
            module = self._gc_module()
        elif name == "random":
            module = self._random_module()
        elif name == "select":
            module = self._select_module()
        elif name == "cryptolib":
            module = _cryptolib
        elif name in _HOST_MODULES:
            module = importlib.import_module(name)
        else:
            return None
        self._modules[name] = module
        return module

    def _urandom(self, n):
        return bytes(self.rng.getrandbits(8) for _ in range(n))

    def _board_module(self):
        from .machine_bus import BoardBus
        module = types.ModuleType("_board")
        for attr in dir(BoardBus):
            if not attr.startswith("_"):
                setattr(module, attr, getattr(self, "bus_" + attr))
        return module

    def _sys_module(self):
        module = types.ModuleType("sys")
        stdout = _StdoutFacade(self._stdout_write)

        def print_exception(exc, file=None):
            (file or stdout).write(self._format_traceback(exc))

        def exit(code=0):
            raise SystemExit(code)

        module.__dict__.update({
            "path": ["", ".frozen", "/lib"], "modules": self._modules, "argv": [],
            "platform": "esp32", "byteorder": "little", "maxsize": (1 << 31) - 1,
            "version": "3.4.0; MicroPython v1.29.0 (vigil emulator)",
            "implementation": types.SimpleNamespace(name="micropython", version=(1, 29, 0, ""),
                                                    _machine="ESP32 module with ESP32", _mpy=0),
            "stdout": stdout, "stderr": stdout, "stdin": self._stdin,
            "print_exception": print_exception, "exit": exit,
        })
        return module

    def _gc_module(self):
        heap = self.heap
        module = types.ModuleType("gc")
        module.__dict__.update({
            "collect": lambda: self._spin(2000),    # a full collection: ~2 ms at 160 MHz
            "enable": lambda: None, "disable": lambda: None,
            "isenabled": lambda: True, "mem_free": heap.free_bytes,
            "mem_alloc": heap.alloc_bytes, "threshold": lambda amount=None: -1,
        })
        return module

    def _random_module(self):
        rng = self.world.rng(self.device_id, "firmware-random", self.boot_count)
        module = types.ModuleType("random")
        for attr in ("getrandbits", "randint", "randrange", "random", "uniform", "choice", "seed"):
            setattr(module, attr, getattr(rng, attr))
        return module

    def _select_module(self):
        module = types.ModuleType("select")
        module.POLLIN, module.POLLOUT, module.POLLERR, module.POLLHUP = POLLIN, 4, 8, 16
        module.poll = lambda: _Poll(self)
        return module

    def _format_traceback(self, exc):
        vm_text = getattr(exc, "vm_traceback", None)
        if vm_text:  # raised in the MicroPython VM, which printed its own frames
            return vm_text
        lines = ["Traceback (most recent call last):"]
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename in self._loaded_files:
                lines.append('  File "%s", line %d, in %s' % (frame.filename, frame.lineno,
                                                              frame.name))
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        lines.append(text)
        return "\n".join(lines) + "\n"

    # --- stdio ------------------------------------------------------------------------
    def _print(self, *args, sep=" ", end="\n", file=None, flush=False):
        text = sep.join(str(a) for a in args) + end
        if file is not None and getattr(file, "write", None) is not self._stdout_write:
            file.write(text)
        else:
            self._stdout_write(text)

    def _input(self, prompt=""):
        self._stdout_write(prompt)
        line = b""
        while not line.endswith(b"\r") and not line.endswith(b"\n"):
            line += self.repl_read(1)
        return line.decode(errors="replace").rstrip("\r\n")

    def _stdout_write(self, text):
        # The REPL UART sends at its baud rate and print() waits for it (the ESP32 REPL
        # writes through a small FIFO): the CPU stays awake for the bytes' time.
        u = self.uarts[0]
        self._spin(int(len(text) * u.byte_us()))
        self.console_out(text.encode("utf-8", "replace"))
        buf = self._stdout_buf + text
        while "\n" in buf:
            line, buf = buf.split("\n", 1)
            self._log_line(line.rstrip("\r"))
        self._stdout_buf = buf
        return len(text)

    def _flush_stdout(self):
        if self._stdout_buf:
            self._log_line(self._stdout_buf)
            self._stdout_buf = ""

    def _log_line(self, line):
        t_ms = self.world.now_ms
        self.log.append((t_ms, line))
        self.world.log.append((t_ms, self.device_id, line))
        self.world.record(self.device_id, "device_log", line)
