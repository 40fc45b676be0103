"""One emulated ESP32 board: virtual time, the firmware's thread, sleep, resets and the REPL.

The firmware runs in its own thread, but only one thread ever runs at a time: the scheduler
hands a baton (a pair of locks) to the device when one of its events is due, and the device
hands it back when the firmware waits (sleep, idle, light sleep, deep sleep). Virtual time
therefore moves only while the firmware waits, and a run is the same for the same seed.

Pins, UARTs, the rest of `machine` and the firmware's imports live in their own modules
(gpio.py, uart.py, machine_bus.py, runtime.py), mixed into `EmulatedDevice`; every rule is
in docs/HARDWARE.md with its source.
"""
import ctypes
import hashlib
import threading
import types

from .energy import Energy, load_profile
from .flash import Flash
from .gpio import GpioBus
from .heap import Heap
from .machine_bus import MachineBus
from .runtime import FirmwareRuntime, _compile
from .states import (
    BOOT,
    DEEP,
    DEEPSLEEP_RESET,
    IDLE,
    LIGHT,
    OFF,
    PWRON_RESET,
    REPL,
    RESET_NAMES,
    ROM,
    RUN,
    SOFT_RESET,
    TIMER_WAKE,
    WAIT,
    WDT_RESET,
    DeviceReset,
)
from .uart import UartBus, take
from .world import EmulatorError

_DATA_WAKE = -1  # a wait ended by UART data, not a machine.wake_reason()
_DEFAULT_TICKS_START_MS = (1 << 30) - 30_000  # ticks wrap 30 s after each boot
_REPL_BANNER = ("MicroPython v1.29.0 on 2026-08-19; ESP32 module with ESP32\n"
                "Type \"help()\" for more information.\n")
_REPL_LINE_STARTS = tuple(line[:13] for line in _REPL_BANNER.splitlines()) + (">>> ",)

# How the board is wired: which GPIO each peripheral of the emulated board hangs on
# (docs/LINK.md). A firmware whose pin table disagrees finds nothing there, as on a board.
WIRING = {"button": 33, "led": 26, "haptic": 25, "gnss_en": 4, "gnss_uart": 2,
          "link_uart": 1, "link_wake": 32, "link_ready": 27, "battery_adc": 34,
          "charger_sense": 35}

_AWAKE = frozenset((RUN, WAIT, IDLE, REPL))


class _Shutdown(BaseException):
    pass


class EmulatedDevice(GpioBus, UartBus, MachineBus, FirmwareRuntime):
    """An ESP32 board running the firmware from its flash image.

    Peripherals: `button`, `gnss`, `battery`, `led`, `haptic`, `link`; `energy` integrates the
    current; `heap` models the MicroPython heap. `log` holds firmware stdout lines as
    (t_ms, line); `faults` holds what left the board unable to run its firmware (at the REPL,
    stuck in the ROM, out of memory) as (t_ms, kind, detail).
    Options: `link={...}` (see Link), `gnss={...}` (see Gnss), `battery={...}` (see Battery),
    `wiring={...}` (override WIRING entries).
    """

    def __init__(self, world, device_id, key=None, profile="esp32-devkitc", files=None,
                 image=None, ticks_start_ms=None, rtc_utc_ms=None, link=None, gnss=None,
                 battery=None, trace_sleeps=False, wiring=None, runtime="cpython",
                 heap_bytes=None):
        from .gnss import Gnss
        from .link import Link
        from .peripherals import Battery, Button, OutputRecorder

        self.world = world
        self.device_id = device_id
        self.key = key
        self.profile = load_profile(profile)
        self.wiring = dict(WIRING, **(wiring or {}))
        self.energy = Energy(self.profile, lambda: world.now_us)
        ram = self.profile.get("ram", {})
        self.heap = Heap(ram.get("heap_bytes", 112 * 1024), ram.get("baseline_bytes", 6 * 1024))
        self.rng = world.rng(device_id, "device")
        self.unique = hashlib.sha256(str(device_id).encode()).digest()[:6]
        # runtime="micropython": each boot runs in a real MicroPython VM (vm.py).
        self.vm = None
        if runtime == "micropython":
            from .vm import DEFAULT_HEAP_BYTES, VmBridge
            from .vmtools import compiled_files
            self.vm = VmBridge(self, heap_bytes or DEFAULT_HEAP_BYTES)
            self.vm.sources = dict(files or {})
            files = compiled_files(files or {}) if image is None else files
        elif runtime != "cpython":
            raise ValueError("runtime %r: cpython or micropython" % (runtime,))
        self.runtime = runtime
        if image is None:
            from host.deploy import build_image
            image = build_image(files or {})
        self.flash = Flash(image)
        self.flash.on_power_lost = self._guard
        self.ticks_start_ms = _DEFAULT_TICKS_START_MS if ticks_start_ms is None else ticks_start_ms
        self.trace_sleeps = trace_sleeps
        self.log = []
        self.crashes = []
        self.faults = []
        self.boot_count = 0
        self.console = bytearray()          # what the REPL UART sent (bounded, newest kept)
        self._console_listeners = []

        self._init_gpio(self.profile.get("pins", {}).get("external_pull_down", ()))
        self._init_uarts()
        self._analog = {}
        self._rtc_memory = b""
        self._rtc_offset_us = self._initial_rtc_offset(rtc_utc_ms)
        self._freq_mhz = self.profile["cpu"].get("freq_mhz", 160)
        self._timers = {}
        self._timer_gen = 0
        self._wdt_timeout_us = None
        self._wdt_deadline_us = 0
        self._wdt_gen = 0
        self._pending = []
        self._in_callbacks = 0
        self._state = OFF
        self._wait_id = 1
        self._woken = 0
        self._interrupt = None
        self._unwinding = None
        self._reset_cause = PWRON_RESET
        self._wake_reason = 0
        self._reset_us = 0
        self._at_repl = False
        self._ble = None
        self._init_runtime()
        self._set_cpu(OFF)

        w = self.wiring
        self.button = Button(self, pin=w["button"])
        self.led = OutputRecorder(self, "led", w["led"], self.profile["outputs"]["led_ma"])
        self.haptic = OutputRecorder(self, "haptic", w["haptic"],
                                     self.profile["outputs"]["haptic_ma"])
        self.battery = Battery(self, adc_pin=w["battery_adc"], sense_pin=w["charger_sense"],
                               **(battery or {}))
        self.gnss = Gnss(self, en_pin=w["gnss_en"], uart_id=w["gnss_uart"], **(gnss or {}))
        self.link = Link(self, uart_id=w["link_uart"], wake_pin=w["link_wake"],
                         ready_pin=w["link_ready"], **(link or {}))

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
    def at_repl(self):
        """Sitting at the REPL prompt (after main.py ended or crashed)."""
        return self._at_repl

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

    def press_en(self):
        """The EN (reset) button, or esptool's DTR/RTS reset: a chip reset that latches the
        strapping pins again; reset_cause() reads PWRON_RESET (ESP_RST_POWERON on the ESP32)."""
        if self._state == OFF:
            return
        self._interrupt_with(DeviceReset(PWRON_RESET, why="EN pin"))

    def cut_power_after_flash_writes(self, n):
        """Cut the power right after the next `n` flash program/erase operations complete:
        later writes are lost, as in a brown-out in the middle of a file update."""
        self.flash.cut_after_writes(n)

    def set_analog(self, pin, fn):
        """fn() -> microvolts on `pin`, read by machine.ADC."""
        self._analog[pin] = fn

    def printed(self):
        """The lines the firmware printed, without the REPL's banner and prompts that follow
        main.py on a board (they are the port's, not the firmware's)."""
        return [line for _, line in self.log if not line.startswith(_REPL_LINE_STARTS)]

    def console_in(self, data):
        """Bytes typed into the REPL UART (the board's USB console)."""
        return self.feed_uart(0, bytes(data))

    def console_out(self, data):
        self.console += data
        del self.console[:-65536]
        for fn in self._console_listeners:
            fn(data)

    def on_console(self, fn):
        """Call fn(bytes) with everything the board writes to its REPL UART."""
        self._console_listeners.append(fn)

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
            if isinstance(exc, DeviceReset) or isinstance(exc, _Shutdown):
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
        was_powered = self.energy.powered
        self._set_cpu_current(state)
        if self.energy.powered != was_powered:
            for output in (getattr(self, "led", None), getattr(self, "haptic", None)):
                if output is not None:
                    output.power_changed()

    def _set_cpu_current(self, state):
        cpu = self.profile["cpu"]
        if state in _AWAKE:
            ma = cpu.get("active_%dmhz_ma" % self._freq_mhz, cpu["active_160mhz_ma"])
            self.energy.set("cpu", ma, "active")
        elif state == LIGHT:
            self.energy.set("cpu", cpu["light_sleep_ma"], "light_sleep")
        elif state == DEEP:
            self.energy.set("cpu", cpu["deep_sleep_ma"], "deep_sleep")
        elif state in (BOOT, ROM):
            self.energy.set("cpu", cpu["boot_ma"], state)
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
        self._in_callbacks += 1  # the scheduler is locked while its callbacks run
        try:
            while pending:
                pending.pop(0)()
        finally:
            self._in_callbacks -= 1

    def _spin(self, cost_us):
        """Let `cost_us` of busy CPU time pass, serving anything that falls due meanwhile."""
        if cost_us <= 0:
            return
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
                except DeviceReset as r:
                    cause = self._after_reset(r)
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

    # --- Bluetooth (host/emulator/ble.py) -----------------------------------------------
    @property
    def ble(self):
        """The board's Bluetooth host and controller, made on first use."""
        if self._ble is None:
            from .ble import BleHost
            self._ble = BleHost(self)
        return self._ble

    def _ble_module(self):
        module = types.ModuleType("_ble")
        ble = self.ble
        for attr in dir(ble):
            if attr.startswith("bus_"):
                setattr(module, attr[4:], getattr(ble, attr))
        return module

    @property
    def awake(self):
        """The CPU runs (or waits awake): an IRQ is served, not lost."""
        return self._state in _AWAKE

    def post_irq(self, fn):
        """Run fn in the firmware thread like a soft IRQ (BLE sync events): at once if it waits."""
        self._pending.append(fn)
        if self._state in (WAIT, IDLE):
            self._kick()

    def _handle_reset(self, r):
        self._unwinding = None
        self._interrupt = None
        if self.vm is not None:
            self.vm.kill()  # a reset ends the VM process; flash and RTC memory are here
        self._flush_stdout()
        self._record("reset", "%s%s" % (RESET_NAMES[r.cause], (" " + r.why) if r.why else ""))
        self._timers.clear()
        self._pending.clear()
        if self._ble is not None:
            self._ble.on_reset()                  # every reset, soft too, deinits the stack
        keep_wdt = r.cause == SOFT_RESET          # the task watchdog outlives a soft reset
        if not keep_wdt:
            self._wdt_timeout_us = None
            self._wdt_gen += 1
        if r.power_cut:
            self._reset_uarts()
            self._reset_pads(power_cut=True)
            self._rtc_memory = b""
            self._rtc_offset_us = self._initial_rtc_offset(None)
            self.gnss.on_power_cut()
            self._set_cpu(OFF)
            self._wait(None, OFF)
            return PWRON_RESET
        if r.cause == DEEPSLEEP_RESET:
            self._enter_deep_sleep_pads()
            self._reset_uarts()
            self._set_cpu(DEEP)
            self._state = DEEP
            reason = self._wake_level_reason()
            if not reason:
                until = None if r.sleep_ms is None else self.world.now_us + r.sleep_ms * 1000
                reason = self._wait(until, DEEP)
            self._wake_reason = reason
            self._record("wake", reason)
            return DEEPSLEEP_RESET
        self._reset_uarts()
        if r.cause != SOFT_RESET:
            self._reset_pads(power_cut=False)
        return r.cause

    def _boot_and_run(self, cause):
        self._at_repl = False
        self._reset_cause = cause
        if cause != DEEPSLEEP_RESET:
            self._wake_reason = 0
        self._reset_us = self.world.now_us
        cpu = self.profile["cpu"]
        if cause == PWRON_RESET:
            fault = self._strapping_fault()
            if fault:
                # The ROM never reaches the firmware: the board is dead until power-cycled
                # (or reset with the strapping pin released).
                self._set_cpu(ROM)
                self._fault("strapping", fault)
                self._wait(None, ROM)
        self._set_cpu(BOOT)
        boot_ms = cpu["soft_reset_ms"] if cause == SOFT_RESET else cpu["boot_ms"]
        self._wait(self.world.now_us + round(boot_ms * 1000), BOOT)
        self._reset_pads(power_cut=False)
        self.boot_count += 1
        self.energy.count("boots")
        self.flash.mount()
        self._modules = {}
        self.heap.reset()
        self._state = RUN
        self._set_cpu(RUN)
        self._record("boot", RESET_NAMES[cause])
        main = self._new_module("__main__", None)
        try:
            if self.vm is not None:
                self.vm.run_boot()  # raises what main.py raised; returns when it returns
            for path in ("/boot.py", "/main.py") if self.vm is None else ():
                source = self.flash.read_file(path)
                if source is not None:
                    main.__file__ = path
                    self._loaded_files.add(path)
                    exec(_compile(path, source), main.__dict__)
            self._record("main_returned")
        except DeviceReset:
            raise
        except _Shutdown:
            raise
        except SystemExit:
            self._record("main_returned", "SystemExit")
        except BaseException as exc:  # noqa: BLE001 - the board prints it and goes to the REPL
            if self.flash.context.cut:  # the flash error came from the power cut
                self.flash.clear_fault()
                raise DeviceReset(PWRON_RESET, power_cut=True, why="power cut mid-write") from None
            self._crash(exc)
        self._repl(main.__dict__)

    def _crash(self, exc):
        """An uncaught exception in main.py: MicroPython prints the traceback and starts the
        REPL (pyexec_file in ports/esp32/main.c); it does not reset the board."""
        self._flush_stdout()
        text = self._format_traceback(exc)
        self._stdout_write(text)
        last = text.strip().splitlines()[-1]
        self.crashes.append((self.world.now_ms, last))
        self._record("crash", last)
        if isinstance(exc, MemoryError):
            self._fault("memory_error", last)

    def _repl(self, namespace):
        """The friendly REPL: reads lines from UART0 and runs them; Ctrl-D soft-resets. A
        running watchdog still resets the board from here."""
        self._stdout_write(_REPL_BANNER)
        self._at_repl = True
        self._fault("repl", "firmware stopped at the REPL prompt")
        while True:
            self._stdout_write(">>> ")
            line = bytearray()
            while True:
                ch = self.repl_read(1)
                if ch == b"\x04":
                    self._stdout_write("\nMPY: soft reboot\n")
                    self._unwinding = DeviceReset(SOFT_RESET, why="Ctrl-D at the REPL")
                    raise self._unwinding
                if ch in (b"\r", b"\n"):
                    break
                if ch == b"\x03":
                    line = bytearray()
                    break
                line += ch
            self._stdout_write("\n")
            source = line.decode("utf-8", "replace").strip()
            if source:
                self._repl_run(source, namespace)

    def _repl_run(self, source, namespace):
        if self.vm is not None:
            self.vm.repl_run(source)
            return
        try:
            try:
                code = compile(source, "<stdin>", "eval")
            except SyntaxError:
                exec(compile(source, "<stdin>", "exec"), namespace)
            else:
                value = eval(code, namespace)
                if value is not None:
                    self._stdout_write(repr(value) + "\n")
        except (DeviceReset, _Shutdown):
            raise
        except BaseException as exc:  # noqa: BLE001 - the REPL prints and carries on
            self._stdout_write(self._format_traceback(exc))

    def _fault(self, kind, detail):
        self.faults.append((self.world.now_ms, kind, detail))
        self._record("fault", "%s: %s" % (kind, detail))

    def repl_read(self, n):
        """Read up to n bytes (n < 0: what is there, at least one) typed on UART0; blocks."""
        rx = self.uarts[0].rx
        while not rx:
            self._wait(None, REPL if self._at_repl else IDLE)
        return take(rx, n)

    def _record(self, kind, detail=""):
        self.world.record(self.device_id, kind, detail)
