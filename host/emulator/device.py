"""One emulated ESP32 board: the board bus behind the MicroPython modules, the firmware's
thread, per-device imports from flash, and real-reset semantics.

The firmware runs in its own thread, but only one thread ever runs at a time: the scheduler
hands a baton (a pair of locks) to the device when one of its events is due, and the device
hands it back when the firmware waits (sleep, idle, light sleep, deep sleep). Virtual time
therefore moves only while the firmware waits, and a run is the same for the same seed.
"""
import builtins
import collections
import ctypes
import hashlib
import importlib
import threading
import traceback
import types
from pathlib import Path

from . import cryptolib as _cryptolib
from .energy import Energy, load_profile
from .flash import Flash
from .world import EmulatorError

MPY_DIR = Path(__file__).resolve().parent / "mpy"
_HW_MODULES = ("machine", "esp32", "time", "micropython")
_ALIASES = {"utime": "time", "uos": "os", "usys": "sys", "ucryptolib": "cryptolib",
            "urandom": "random", "ustruct": "struct", "ubinascii": "binascii",
            "uhashlib": "hashlib", "ujson": "json", "uerrno": "errno",
            "ucollections": "collections", "uio": "io", "ure": "re", "uarray": "array",
            "uheapq": "heapq", "uselect": "select"}
# Stateless CPython modules whose MicroPython namesakes the firmware may use.
_HOST_MODULES = frozenset(("struct", "binascii", "hashlib", "json", "math", "cmath", "errno",
                           "collections", "io", "re", "array", "heapq", "select"))

# machine.reset_cause() / wake_reason() values (the ESP32 port's, as in mpy/machine.py)
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
RESET_NAMES = {PWRON_RESET: "PWRON_RESET", HARD_RESET: "HARD_RESET", WDT_RESET: "WDT_RESET",
               DEEPSLEEP_RESET: "DEEPSLEEP_RESET", SOFT_RESET: "SOFT_RESET"}
EXT0_WAKE, EXT1_WAKE, TIMER_WAKE = 2, 3, 4
_DATA_WAKE = -1  # idle() ended by UART data, not a machine.wake_reason()
_SLEEP, _DEEPSLEEP = 2, 4
_PIN_OUT_MODES = (3, 7)
_PULL_UP, _PULL_DOWN = 2, 1
_IRQ_RISING, _IRQ_FALLING, _WAKE_LOW, _WAKE_HIGH = 1, 2, 4, 5
# GPIOs of an ESP32-WROOM-32 (6-11 drive the flash); 34-39 are inputs only.
VALID_PINS = frozenset([0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 25, 26, 27,
                        32, 33, 34, 35, 36, 37, 38, 39])
INPUT_ONLY_PINS = frozenset(range(34, 40))
# FreeRTOS tick on MicroPython's ESP32 port (CONFIG_FREERTOS_HZ=100): idle() wakes by then.
_IDLE_TICK_US = 10_000
# Virtual CPU cost of calls a firmware may poll in a busy loop, so such loops still see time
# pass (a MicroPython call on a 160 MHz ESP32 takes some microseconds).
_POLL_COST_US = 10
_ADC_COST_US = 50
_RTC_MEMORY_MAX = 2048
_DEFAULT_TICKS_START_MS = (1 << 30) - 30_000  # ticks wrap 30 s after each boot
_EPOCH_2000_UNIX_MS = 946_684_800_000

# CPU states
OFF, BOOT, RUN, WAIT, IDLE, LIGHT, DEEP = "off", "boot", "run", "wait", "idle", "light", "deep"
_AWAKE = frozenset((RUN, WAIT, IDLE))

_code_cache: dict = {}  # (filename, source) -> code object, shared by all devices and boots


def _compile(filename, source):
    key = (filename, source)
    code = _code_cache.get(key)
    if code is None:
        code = compile(source, filename, "exec", dont_inherit=True)
        _code_cache[key] = code
    return code


class DeviceReset(BaseException):
    """Unwinds the firmware for a reset; a BaseException so `except Exception` lets it by."""

    def __init__(self, cause, sleep_ms=None, power_cut=False, why=""):
        super().__init__(RESET_NAMES.get(cause, cause), why)
        self.cause = cause
        self.sleep_ms = sleep_ms
        self.power_cut = power_cut
        self.why = why


class _Shutdown(BaseException):
    pass


class _Pin:
    __slots__ = ("mode", "pull", "out", "ext", "irq_trigger", "irq_fn", "irq_wake")

    def __init__(self):
        self.mode = 1
        self.pull = None
        self.out = 0
        self.ext = None  # level driven by the outside circuit, None = floating
        self.irq_trigger = 0
        self.irq_fn = None
        self.irq_wake = 0

    def level(self):
        if self.mode in _PIN_OUT_MODES:
            return self.out
        if self.ext is not None:
            return self.ext
        return 1 if self.pull == _PULL_UP else 0


class Uart:
    """One UART's receive side: a bounded buffer that drops what does not fit, and counts it."""

    def __init__(self, uart_id):
        self.uart_id = uart_id
        self.open = False
        self.baudrate = 115200
        self.capacity = 256
        self.rx = bytearray()
        self.overflow_bytes = 0
        self.rx_bytes = 0
        self.tx_bytes = 0

    def feed(self, data):
        """Bytes arriving on RX; returns how many were dropped."""
        space = self.capacity - len(self.rx)
        if len(data) > space:
            dropped = len(data) - max(space, 0)
            self.rx += data[:max(space, 0)]
        else:
            dropped = 0
            self.rx += data
        self.overflow_bytes += dropped
        self.rx_bytes += len(data) - dropped
        return dropped


class _StdoutFacade:
    def __init__(self, write):
        self.write = write

    def flush(self):
        pass


class EmulatedDevice:
    """An ESP32 board running the firmware from its flash image.

    Peripherals: `button`, `gnss`, `battery`, `led`, `haptic`, `link`; `energy` integrates the
    current. `log` holds firmware stdout lines as (t_ms, line).
    Options: `link={...}` (see Link), `gnss={...}` (see Gnss), `battery={...}` (see Battery),
    `echo_stdout_to_link` (REPL text appears on UART 0 between frames, as on the board).
    """

    def __init__(self, world, device_id, key=None, profile="esp32-devkitc", files=None,
                 image=None, ticks_start_ms=None, rtc_utc_ms=None, link=None, gnss=None,
                 battery=None, echo_stdout_to_link=False, trace_sleeps=False,
                 runtime="cpython", heap_bytes=None):
        from .gnss import Gnss
        from .link import Link
        from .peripherals import Battery, Button, OutputRecorder

        self.world = world
        self.device_id = device_id
        self.key = key
        self.profile = load_profile(profile)
        self.energy = Energy(self.profile, lambda: world.now_us)
        self.rng = world.rng(device_id, "device")
        self.unique = hashlib.sha256(str(device_id).encode()).digest()[:6]
        # runtime="micropython": each boot runs in a real MicroPython VM (vm.py).
        self.vm = None
        if runtime == "micropython":
            from .vm import DEFAULT_HEAP_BYTES, VmBridge, compiled_files
            self.vm = VmBridge(self, heap_bytes or DEFAULT_HEAP_BYTES)
            files = compiled_files(files or {}) if image is None else files
        elif runtime != "cpython":
            raise ValueError("runtime %r: cpython or micropython" % (runtime,))
        self.runtime = runtime
        if image is None:
            from host.deploy import build_image
            image = build_image(files or {})
        self.flash = Flash(image)
        self.ticks_start_ms = _DEFAULT_TICKS_START_MS if ticks_start_ms is None else ticks_start_ms
        self.echo_stdout_to_link = echo_stdout_to_link
        self.trace_sleeps = trace_sleeps
        self.log = []
        self.crashes = []
        self.boot_count = 0

        self._pins = {n: _Pin() for n in VALID_PINS}
        self._out_listeners = collections.defaultdict(list)
        self._analog = {}
        self.uarts = {n: Uart(n) for n in (0, 1, 2)}
        self._rtc_memory = b""
        self._rtc_offset_us = self._initial_rtc_offset(rtc_utc_ms)
        self._freq_mhz = self.profile["cpu"].get("freq_mhz", 160)
        self._timers = {}
        self._timer_gen = 0
        self._wdt_timeout_us = None
        self._wdt_deadline_us = 0
        self._wdt_gen = 0
        self._ext0 = None
        self._ext1 = None
        self._pending = collections.deque()
        self._state = OFF
        self._wait_id = 1
        self._woken = 0
        self._interrupt = None
        self._unwinding = None
        self._reset_cause = PWRON_RESET
        self._wake_reason = 0
        self._reset_us = 0
        self._stdout_buf = ""
        self._modules = {}
        self._hw_modules = {}
        self._loaded_files = set()
        self._builtins = dict(builtins.__dict__)
        self._builtins.update({"__import__": self._import, "open": self.flash.open,
                               "print": self._print, "input": self._input})
        self._set_cpu(OFF)

        self.button = Button(self)
        self.led = OutputRecorder(self, "led", 2, self.profile["outputs"]["led_ma"])
        self.haptic = OutputRecorder(self, "haptic", 25, self.profile["outputs"]["haptic_ma"])
        self.battery = Battery(self, **(battery or {}))
        self.gnss = Gnss(self, **(gnss or {}))
        self.link = Link(self, **(link or {}))

        self._go = threading.Lock()
        self._go.acquire()
        self._back = threading.Lock()
        self._back.acquire()
        self._thread = threading.Thread(target=self._thread_main, daemon=True,
                                        name="vigil-device-%s" % (device_id,))
        self._thread.start()

    # ==================================================================================
    # Scheduler side: what the world, peripherals and tests call
    # ==================================================================================
    @property
    def state(self):
        return self._state

    @property
    def listening(self):
        """Awake with firmware running: UART data goes straight into the RX buffer."""
        return self._state in _AWAKE

    @property
    def reset_cause(self):
        return self._reset_cause

    @property
    def rtc_memory(self):
        return self._rtc_memory

    def power_on(self):
        if self._state == OFF:
            self._woken = 1
            self._kick()

    def power_cut(self):
        """Cut the supply: the firmware stops at once; RTC memory and the RTC clock are lost,
        flash keeps what was written. The board stays off until power_on()."""
        if self._state != OFF:
            self._interrupt_with(DeviceReset(PWRON_RESET, power_cut=True, why="power cut"))

    def cut_power_after_flash_writes(self, n):
        """Cut the power right after the next `n` flash program/erase operations complete:
        later writes are lost, as in a brown-out in the middle of a file update."""
        self.flash.cut_after_writes(n)

    def drive_pin(self, pin, level):
        """The outside circuit drives `pin` to `level` (0/1), or releases it (None)."""
        p = self._pins[pin]
        old = p.level()
        p.ext = level
        new = p.level()
        if old != new:
            self._edge(pin, p, new)
        if self._state in (LIGHT, DEEP):
            reason = self._wake_level_reason()
            if reason:
                self._wake(reason)

    def pin_level(self, pin):
        return self._pins[pin].level()

    def on_output(self, pin, fn):
        """Call fn(level) whenever the firmware changes the level it drives on `pin`."""
        self._out_listeners[pin].append(fn)

    def set_analog(self, pin, fn):
        """fn() -> microvolts on `pin`, read by machine.ADC."""
        self._analog[pin] = fn

    def feed_uart(self, uart_id, data):
        """Bytes arriving on a UART's RX line. Lost if its driver is not open (the board is
        asleep in deep sleep, booting or off); returns the number of bytes dropped."""
        uart = self.uarts[uart_id]
        if not uart.open or self._state in (OFF, BOOT, DEEP):
            return len(data)
        dropped = uart.feed(data)
        if dropped:
            self.world.record(self.device_id, "uart_overflow", "%d:%d" % (uart_id, dropped))
        if self._state == IDLE:
            self._wake(_DATA_WAKE)
        return dropped

    def _kick(self):
        self.world.at_us(self.world.now_us, self._resume, self._wait_id)

    def _wake(self, reason):
        if not self._woken:
            self._woken = reason
        self._kick()

    def _interrupt_with(self, exc):
        self._interrupt = exc
        self._kick()

    def _resume(self, wait_id):
        """Hand the baton to the firmware thread and wait until it waits again."""
        if wait_id != self._wait_id or not self._thread.is_alive():
            return
        self._go.release()
        if not self._back.acquire(timeout=self.world.hang_timeout_s):
            self._stop_spinning_thread()
            raise EmulatorError("%s: firmware ran %.0f s of wall time without waiting (a busy "
                                "loop with no sleep?)" % (self.device_id, self.world.hang_timeout_s))

    def _stop_spinning_thread(self):
        """A firmware thread that never waits never takes the baton back, so it cannot be
        told to stop; left alone it would hold the GIL and slow every later run in this
        process. CPython delivers an asynchronous exception at the thread's next bytecode,
        which is all a busy loop executes."""
        ident = self._thread.ident
        if ident is not None and self._thread.is_alive():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                       ctypes.py_object(_Shutdown))
            if self.vm is not None:  # the thread waits on the VM's pipe, not on bytecode
                self.vm.kill()
            self._thread.join(timeout=5)

    def _shutdown(self):
        if self._thread.is_alive():
            self._interrupt = _Shutdown()
            self._go.release()
            self._thread.join(timeout=5)
        if self.vm is not None:
            self.vm.kill()

    def _edge(self, pin, p, level):
        trig = p.irq_trigger
        if p.irq_fn is None:
            return
        if trig == _WAKE_LOW:
            match = level == 0
        elif trig == _WAKE_HIGH:
            match = level == 1
        else:
            match = trig & (_IRQ_RISING if level else _IRQ_FALLING)
        if not match:
            return
        state = self._state
        if state in _AWAKE:
            self._pending.append(p.irq_fn)
            if state != RUN:
                self._kick()
        elif state == LIGHT and p.irq_wake & _SLEEP:
            self._pending.append(p.irq_fn)
            self._wake(EXT0_WAKE)
        elif state == LIGHT:
            # GPIO interrupts are not serviced in light sleep unless the pin is a wake source.
            self.world.record(self.device_id, "irq_lost", pin)

    def _wake_level_reason(self):
        """A level-triggered wake source that is active now, for light or deep sleep."""
        if self._ext0 is not None:
            pin, level = self._ext0
            if self._pins[pin].level() == level:
                return EXT0_WAKE
        if self._ext1 is not None:
            pins, level = self._ext1
            levels = [self._pins[n].level() for n in pins]
            if pins and (any(levels) if level else not any(levels)):
                return EXT1_WAKE
        wake_bit = _SLEEP if self._state == LIGHT else _DEEPSLEEP
        for p in self._pins.values():
            if p.irq_wake & wake_bit and p.irq_trigger in (_WAKE_LOW, _WAKE_HIGH):
                if p.level() == (1 if p.irq_trigger == _WAKE_HIGH else 0):
                    return EXT0_WAKE
        return 0

    def _wdt_check(self, gen):
        if gen != self._wdt_gen or self._wdt_timeout_us is None or self._state == LIGHT:
            return  # light sleep pauses the watchdog; lightsleep() re-arms it
        if self.world.now_us < self._wdt_deadline_us:
            self.world.at_us(self._wdt_deadline_us, self._wdt_check, gen)
        elif self._state in _AWAKE:
            self._interrupt_with(DeviceReset(WDT_RESET, why="watchdog expired"))

    def _timer_fire(self, key):
        timer_id, gen = key
        timer = self._timers.get(timer_id)
        if timer is None or timer[0] != gen or self._state == LIGHT:
            return  # hardware timers are clock-gated in light sleep; lightsleep() catches up
        _, period_us, periodic, fn = timer
        if periodic:
            self.world.at_us(self.world.now_us + period_us, self._timer_fire, key)
        else:
            del self._timers[timer_id]
        if self._state in _AWAKE:
            self._pending.append(fn)
            if self._state != RUN:
                self._kick()

    # ==================================================================================
    # Firmware thread
    # ==================================================================================
    def _yield(self):
        """Give the baton back to the scheduler; returns when resumed."""
        self._back.release()
        self._go.acquire()
        if self._interrupt is not None:
            exc, self._interrupt = self._interrupt, None
            self._unwinding = exc
            raise exc

    def _guard(self):
        # Firmware that swallowed a reset (a bare `except:`) gets it again at its next call.
        if self._unwinding is not None:
            raise self._unwinding
        if self.flash.context.cut:
            self.flash.clear_fault()
            self._unwinding = DeviceReset(PWRON_RESET, power_cut=True, why="power cut mid-write")
            raise self._unwinding

    def _set_cpu(self, state):
        cpu = self.profile["cpu"]
        if state in _AWAKE:
            ma = cpu.get("active_%dmhz_ma" % self._freq_mhz, cpu["active_160mhz_ma"])
            self.energy.set("cpu", ma, "active")
        elif state == LIGHT:
            self.energy.set("cpu", cpu["light_sleep_ma"], "light_sleep")
        elif state == DEEP:
            self.energy.set("cpu", cpu["deep_sleep_ma"], "deep_sleep")
        elif state == BOOT:
            self.energy.set("cpu", cpu["boot_ma"], "boot")
        else:
            self.energy.set("cpu", 0.0, "off")

    def _wait(self, until_us, mode):
        """Block the firmware until `until_us` (None: no deadline) in `mode`.

        WAIT runs IRQ handlers as they happen and returns at the deadline; IDLE also returns
        after any handler or UART data; LIGHT, DEEP and OFF return on a wake source.
        Returns the wake reason (TIMER_WAKE at the deadline).
        """
        world = self.world
        if mode in (WAIT, IDLE) and self._pending:
            self._dispatch()
            if mode == IDLE:
                return 0
        self._woken = 0
        self._state = mode
        self._wait_id += 1
        if until_us is not None:
            world.at_us(until_us, self._resume, self._wait_id)
        reason = 0
        while True:
            self._yield()
            if self._woken:
                reason = self._woken
                break
            if self._pending and mode in (WAIT, IDLE):
                self._state = RUN
                self._dispatch()
                self._state = mode
                self._wait_id += 1  # a handler may have waited itself: re-arm the deadline
                if mode == IDLE:
                    break
                if until_us is not None:
                    world.at_us(until_us, self._resume, self._wait_id)
            if until_us is not None and world.now_us >= until_us:
                reason = TIMER_WAKE
                break
        self._wait_id += 1
        self._woken = 0
        self._state = RUN
        return reason

    def _dispatch(self):
        pending = self._pending
        while pending:
            pending.popleft()()

    def _spin(self, cost_us):
        """Let `cost_us` of busy CPU time pass, serving anything that falls due meanwhile."""
        world = self.world
        t = world.now_us + cost_us
        heap = world._heap
        if heap and heap[0][0] <= t:
            self._wait(t, WAIT)
        else:
            world.now_us = t
            if self._pending:
                self._dispatch()

    def _thread_main(self):
        try:
            self._go.acquire()  # the first power_on()
            if self._interrupt is not None:
                raise self._interrupt
            cause = PWRON_RESET
            while True:
                try:
                    self._boot_and_run(cause)
                    self._record("main_returned")
                    while True:  # the REPL: awake and idle
                        self._wait(None, IDLE)
                except DeviceReset as r:
                    cause = self._after_reset(r)
                except Exception as e:  # noqa: BLE001 - a firmware crash resets the board
                    if self.flash.context.cut:  # the flash error came from the power cut
                        self.flash.clear_fault()
                        reset = DeviceReset(PWRON_RESET, power_cut=True, why="power cut mid-write")
                    else:
                        self._crash(e)
                        reset = DeviceReset(HARD_RESET, why="crash")
                    cause = self._after_reset(reset)
        except _Shutdown:
            pass
        finally:
            self._state = OFF
            self._back.release()

    def _after_reset(self, r):
        """Unwound by a reset: sleep or stay off as it says; returns the next boot's cause."""
        while True:
            try:
                return self._handle_reset(r)
            except DeviceReset as again:  # e.g. power cut during deep sleep
                r = again

    def _handle_reset(self, r):
        self._unwinding = None
        self._interrupt = None
        if self.vm is not None:
            self.vm.kill()  # a reset ends the VM process; flash and RTC memory are here
        self._flush_stdout()
        self._record("reset", "%s%s" % (RESET_NAMES[r.cause], (" " + r.why) if r.why else ""))
        self._stop_activity()
        if r.power_cut:
            self._rtc_memory = b""
            self._rtc_offset_us = self._initial_rtc_offset(None)
            self._ext0 = self._ext1 = None
            self._clear_irqs()
            self.gnss.on_power_cut()
            self._set_cpu(OFF)
            self._wait(None, OFF)
            return PWRON_RESET
        if r.cause == DEEPSLEEP_RESET:
            self._set_cpu(DEEP)
            self._state = DEEP
            reason = self._wake_level_reason()
            if not reason:
                until = None if r.sleep_ms is None else self.world.now_us + r.sleep_ms * 1000
                reason = self._wait(until, DEEP)
            self._wake_reason = reason
            self._record("wake", reason)
            return DEEPSLEEP_RESET
        return r.cause

    def _stop_activity(self):
        """What any reset stops: timers, the watchdog, pending IRQs, driven outputs, UARTs."""
        self._timers.clear()
        self._wdt_timeout_us = None
        self._wdt_gen += 1
        self._pending.clear()
        for pin, p in self._pins.items():
            was = p.out if p.mode in _PIN_OUT_MODES else 0
            p.mode, p.out = 1, 0  # pulls stay: they are the RTC pad's in deep sleep
            if was:
                self._notify_output(pin, 0)
        for uart in self.uarts.values():
            uart.open = False
            uart.rx = bytearray()

    def _clear_irqs(self):
        for p in self._pins.values():
            p.irq_fn, p.irq_trigger, p.irq_wake, p.pull = None, 0, 0, None

    def _boot_and_run(self, cause):
        self._reset_cause = cause
        if cause != DEEPSLEEP_RESET:
            self._wake_reason = 0
        self._reset_us = self.world.now_us
        self._set_cpu(BOOT)
        cpu = self.profile["cpu"]
        boot_ms = cpu["soft_reset_ms"] if cause == SOFT_RESET else cpu["boot_ms"]
        self._wait(self.world.now_us + round(boot_ms * 1000), BOOT)
        self._clear_irqs()
        self._ext0 = self._ext1 = None
        self.boot_count += 1
        self.energy.count("boots")
        self.flash.mount()
        self._modules = {}
        uart0 = self.uarts[0]  # the REPL's UART is up from boot
        uart0.open = True
        uart0.capacity = 256
        self._state = RUN
        self._set_cpu(RUN)
        self._record("boot", RESET_NAMES[cause])
        self.link.on_wake()
        if self.vm is not None:
            self.vm.run_boot()
            return
        main = self._new_module("__main__", None)
        for path in ("/boot.py", "/main.py"):
            source = self.flash.read_file(path)
            if source is not None:
                main.__file__ = path
                self._loaded_files.add(path)
                exec(_compile(path, source), main.__dict__)

    def _crash(self, exc):
        self._flush_stdout()
        lines = ["Traceback (most recent call last):"]
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename in self._loaded_files:
                lines.append('  File "%s", line %d, in %s' % (frame.filename, frame.lineno, frame.name))
        lines.extend(getattr(exc, "vm_traceback", "").splitlines()[1:-1])  # the VM's frames
        lines.append("%s: %s" % (type(exc).__name__, exc))
        for line in lines:
            self._log_line(line)
        self.crashes.append((self.world.now_ms, lines[-1]))
        self._record("crash", lines[-1])

    def _record(self, kind, detail=""):
        self.world.record(self.device_id, kind, detail)

    # --- stdout -----------------------------------------------------------------------
    def _print(self, *args, sep=" ", end="\n", file=None, flush=False):
        text = sep.join(str(a) for a in args) + end
        if file is not None and getattr(file, "write", None) is not self._stdout_write:
            file.write(text)
        else:
            self._stdout_write(text)

    def _input(self, prompt=""):
        raise OSError(5, "EIO: no REPL input in the emulator")

    def _stdout_write(self, text):
        if self.echo_stdout_to_link:
            self.link.on_device_write(text.encode())
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
        self.world.record(self.device_id, "print", line)

    # --- imports ----------------------------------------------------------------------
    def _new_module(self, name, path, package=None):
        module = types.ModuleType(name)
        module.__dict__["__builtins__"] = self._builtins
        module.__file__ = path
        module.__package__ = package if package is not None else name.rpartition(".")[0]
        self._modules[name] = module
        return module

    def _exec_module(self, name, path, source, package=None, pkg_dir=None):
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
                    except ImportError:
                        pass
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
            # one copy per device serves every boot: deep-sleep cycles boot ~20 % faster.
            module = self._hw_modules[name]
        elif name == "_board":
            module = self._hw_modules[name] = self._board_module()
        elif name in _HW_MODULES:
            path = str(MPY_DIR / (name + ".py"))
            module = self._exec_module(name, name + ".py", _hw_source(path))
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
        module = types.ModuleType("_board")
        for attr in dir(_BoardBus):
            if not attr.startswith("_"):
                setattr(module, attr, getattr(self, "bus_" + attr))
        return module

    def _sys_module(self):
        module = types.ModuleType("sys")
        stdout = _StdoutFacade(self._stdout_write)

        def print_exception(exc, file=None):
            text = "".join(traceback.format_exception_only(type(exc), exc))
            (file or stdout).write("Traceback (most recent call last):\n" + text)

        def exit(code=0):
            raise SystemExit(code)

        module.__dict__.update({
            "path": ["", ".frozen", "/lib"], "modules": self._modules, "argv": [],
            "platform": "esp32", "byteorder": "little", "maxsize": (1 << 31) - 1,
            "version": "3.4.0; MicroPython v1.29.0 (vigil emulator)",
            "implementation": types.SimpleNamespace(name="micropython", version=(1, 29, 0, ""),
                                                    _machine="ESP32 module with ESP32", _mpy=0),
            "stdout": stdout, "stderr": stdout, "stdin": None,
            "print_exception": print_exception, "exit": exit,
        })
        return module

    def _gc_module(self):
        module = types.ModuleType("gc")
        module.__dict__.update({
            "collect": lambda: None, "enable": lambda: None, "disable": lambda: None,
            "isenabled": lambda: True, "mem_free": self.bus_mem_free,
            "mem_alloc": lambda: 11168, "threshold": lambda amount=None: -1,
        })
        return module

    def _random_module(self):
        rng = self.world.rng(self.device_id, "firmware-random", self.boot_count)
        module = types.ModuleType("random")
        for attr in ("getrandbits", "randint", "randrange", "random", "uniform", "choice", "seed"):
            setattr(module, attr, getattr(rng, attr))
        return module

    # ==================================================================================
    # The board bus: what mpy/*.py call as `_board.<name>` (firmware thread only)
    # ==================================================================================
    def bus_ticks_us(self):
        self._guard()
        self._spin(_POLL_COST_US)
        return self.ticks_start_ms * 1000 + (self.world.now_us - self._reset_us)

    def bus_sleep_us(self, us, mode):
        """mode 0: time.sleep (awake, IRQs served); 1: machine.idle / blocking read (returns
        early on an IRQ or UART data; None = one FreeRTOS tick)."""
        self._guard()
        now = self.world.now_us
        if mode == 1:
            self._wait(now + (_IDLE_TICK_US if us is None else us), IDLE)
        else:
            self._wait(now + us, WAIT)

    def bus_lightsleep(self, time_ms):
        self._guard()
        world = self.world
        start = world.now_us
        if self.trace_sleeps:
            self._record("lightsleep", time_ms)
        self._set_cpu(LIGHT)
        self._state = LIGHT
        reason = self._wake_level_reason()
        if not reason:
            until = None if time_ms is None else start + max(0, int(time_ms)) * 1000
            reason = self._wait(until, LIGHT)
        self._state = RUN
        self._set_cpu(RUN)
        slept = world.now_us - start
        self._wake_reason = reason
        self.energy.count("wakes")
        if self._wdt_timeout_us is not None:
            self._wdt_deadline_us += slept
            self._wdt_gen += 1
            world.at_us(self._wdt_deadline_us, self._wdt_check, self._wdt_gen)
        for timer_id, timer in list(self._timers.items()):
            self._timer_gen += 1
            timer[0] = self._timer_gen
            world.at_us(world.now_us + timer[1], self._timer_fire, (timer_id, self._timer_gen))
        self.link.on_wake()
        self._spin(round(self.profile["cpu"]["light_sleep_wake_us"]))
        if self._pending:
            self._dispatch()
        return None

    def bus_deepsleep(self, time_ms):
        self._guard()
        self._flush_stdout()
        self._unwinding = DeviceReset(DEEPSLEEP_RESET, sleep_ms=time_ms,
                                      why="" if time_ms is None else "%d ms" % time_ms)
        raise self._unwinding

    def bus_reset(self, cause):
        self._guard()
        self._unwinding = DeviceReset(cause, why="machine.reset" if cause == HARD_RESET else "")
        raise self._unwinding

    def bus_reset_cause(self):
        return self._reset_cause

    def bus_wake_reason(self):
        return self._wake_reason

    def bus_unique_id(self):
        return self.unique

    def bus_freq(self, hz):
        if hz is None:
            return self._freq_mhz * 1_000_000
        mhz = hz // 1_000_000
        if mhz not in (20, 40, 80, 160, 240):
            raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
        self._freq_mhz = mhz
        self._set_cpu(RUN)

    def bus_mem_free(self):
        return 100000

    def bus_schedule(self, fn):
        self._pending.append(fn)

    def bus_pin_check(self, pin):
        if pin not in VALID_PINS:
            raise ValueError("invalid pin")

    def bus_pin_init(self, pin, mode, pull, value):
        self._guard()
        p = self._pins[pin]
        before = p.out if p.mode in _PIN_OUT_MODES else 0
        if value is not None:
            p.out = 1 if value else 0
        if mode != -1 and mode is not None:
            if mode in _PIN_OUT_MODES and pin in INPUT_ONLY_PINS:
                raise ValueError("pin can only be input")
            p.mode = mode
        if pull != -1:
            p.pull = pull
        after = p.out if p.mode in _PIN_OUT_MODES else 0
        if after != before:
            self._notify_output(pin, after)

    def bus_pin_get(self, pin):
        self._guard()
        return self._pins[pin].level()

    def bus_pin_set(self, pin, level):
        self._guard()
        p = self._pins[pin]
        if p.out == level:
            return
        p.out = level
        if p.mode in _PIN_OUT_MODES:
            self._notify_output(pin, level)

    def _notify_output(self, pin, level):
        for fn in self._out_listeners.get(pin, ()):
            fn(level)

    def bus_pin_irq(self, pin, trigger, fn, wake):
        p = self._pins[pin]
        p.irq_fn = fn
        p.irq_trigger = trigger if fn is not None else 0
        p.irq_wake = wake if fn is not None else 0

    def bus_uart_init(self, uart_id, baudrate, rxbuf):
        if uart_id not in self.uarts:
            raise ValueError("UART(%d) does not exist" % uart_id)
        uart = self.uarts[uart_id]
        uart.open = True
        uart.baudrate = baudrate
        uart.capacity = max(int(rxbuf), 129)  # the ESP-IDF driver's minimum
        del uart.rx[uart.capacity:]

    def bus_uart_deinit(self, uart_id):
        self.uarts[uart_id].open = False

    def bus_uart_any(self, uart_id):
        self._guard()
        self._spin(_POLL_COST_US)
        return len(self.uarts[uart_id].rx)

    def bus_uart_read(self, uart_id, n):
        self._guard()
        rx = self.uarts[uart_id].rx
        if n < 0 or n >= len(rx):
            data = bytes(rx)
            rx.clear()
        else:
            data = bytes(rx[:n])
            del rx[:n]
        return data

    def bus_uart_readline(self, uart_id):
        self._guard()
        rx = self.uarts[uart_id].rx
        end = rx.find(b"\n")
        n = len(rx) if end < 0 else end + 1
        data = bytes(rx[:n])
        del rx[:n]
        return data

    def bus_uart_write(self, uart_id, data):
        self._guard()
        uart = self.uarts[uart_id]
        uart.tx_bytes += len(data)
        if uart_id == 0:
            self.link.on_device_write(data)
        elif uart_id == 2:
            self.gnss.on_device_write(data)
        return len(data)

    def bus_adc_uv(self, pin):
        self._guard()
        self._spin(_ADC_COST_US)
        source = self._analog.get(pin)
        return int(source()) if source else 0

    def bus_rtc_us(self):
        return self.world.now_us + self._rtc_offset_us

    def bus_rtc_set_us(self, us):
        self._rtc_offset_us = us - self.world.now_us

    def _initial_rtc_offset(self, rtc_utc_ms):
        if rtc_utc_ms is None:  # the RTC starts at 2000-01-01 00:00:00 on power-up
            return -self.world.now_us
        return (rtc_utc_ms - _EPOCH_2000_UNIX_MS) * 1000 - self.world.now_us

    def bus_rtc_memory(self, data):
        if data is None:
            return self._rtc_memory
        if len(data) > _RTC_MEMORY_MAX:
            raise ValueError("buffer too long")
        self._rtc_memory = bytes(data)

    def bus_wdt_start(self, timeout_ms):
        self._wdt_timeout_us = max(1, int(timeout_ms)) * 1000
        self._wdt_deadline_us = self.world.now_us + self._wdt_timeout_us
        self._wdt_gen += 1
        self.world.at_us(self._wdt_deadline_us, self._wdt_check, self._wdt_gen)

    def bus_wdt_feed(self):
        self._guard()
        if self._wdt_timeout_us is not None:
            self._wdt_deadline_us = self.world.now_us + self._wdt_timeout_us

    def bus_timer_start(self, timer_id, period_us, periodic, fn):
        self._timer_gen += 1
        self._timers[timer_id] = [self._timer_gen, period_us, periodic, fn]
        self.world.at_us(self.world.now_us + period_us, self._timer_fire, (timer_id, self._timer_gen))

    def bus_timer_stop(self, timer_id):
        self._timers.pop(timer_id, None)

    def bus_wake_ext0(self, pin, level):
        self._ext0 = None if pin is None else (pin, level)

    def bus_wake_ext1(self, pins, level):
        self._ext1 = (list(pins), level) if pins else None


class _BoardBus:
    """The names `_board` exposes to mpy/*.py (each maps to EmulatedDevice.bus_<name>).

    A port of the emulator into the real MicroPython VM implements these same calls."""
    ticks_us = sleep_us = lightsleep = deepsleep = reset = reset_cause = wake_reason = None
    unique_id = freq = mem_free = schedule = None
    pin_check = pin_init = pin_get = pin_set = pin_irq = None
    uart_init = uart_deinit = uart_any = uart_read = uart_readline = uart_write = None
    adc_uv = rtc_us = rtc_set_us = rtc_memory = wdt_start = wdt_feed = None
    timer_start = timer_stop = wake_ext0 = wake_ext1 = None


_hw_sources: dict = {}


def _hw_source(path):
    source = _hw_sources.get(path)
    if source is None:
        source = _hw_sources[path] = Path(path).read_bytes()
    return source

