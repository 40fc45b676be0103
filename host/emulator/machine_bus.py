"""The board bus of `machine` beyond pins and UARTs (a mixin of EmulatedDevice): what
mpy/*.py call as `_board.<name>` (firmware thread only): ticks, sleeps, resets, the RTC and
its memory, the watchdog, timers, the scheduler, the ADC. Every rule is in docs/HARDWARE.md
with its source."""
from .states import DEEPSLEEP_RESET, HARD_RESET, IDLE, LIGHT, RUN, WAIT, DeviceReset

# Virtual CPU cost of calls a firmware may poll in a busy loop, so such loops still see time
# pass (a MicroPython call on a 160 MHz ESP32 takes some microseconds).
_POLL_COST_US = 10
_ADC_COST_US = 50
# machine.idle() is taskYIELD(): with nothing else to run it returns at once (modmachine.c).
_IDLE_COST_US = 5
_RTC_MEMORY_MAX = 2048
_SCHEDULE_DEPTH = 8              # MICROPY_SCHEDULER_DEPTH (ports/esp32/mpconfigport.h)
_EPOCH_2000_UNIX_MS = 946_684_800_000


class MachineBus:
    def bus_ticks_us(self):
        self._guard()
        self._spin(_POLL_COST_US)
        return self.ticks_start_ms * 1000 + (self.world.now_us - self._reset_us)

    def bus_sleep_us(self, us, mode):
        """mode 0: time.sleep (awake, IRQs served); 1: a blocking read's wait (returns early
        on an IRQ or UART data)."""
        self._guard()
        now = self.world.now_us
        if mode == 1:
            self._wait(now + us, IDLE)
        else:
            self._wait(now + us, WAIT)

    def bus_lightsleep(self, time_ms):
        self._guard()
        world = self.world
        start = world.now_us
        if self.trace_sleeps:
            self._record("lightsleep", time_ms)
        self._pause_tx()
        self._set_cpu(LIGHT)
        self._state = LIGHT
        if self._ble is not None:
            self._ble.on_light_sleep(True)
        reason = self._wake_level_reason()
        if not reason:
            until = None if time_ms is None else start + max(0, int(time_ms)) * 1000
            reason = self._wait(until, LIGHT)
        self._state = RUN
        self._set_cpu(RUN)
        self._resume_tx()
        self._after_light_sleep_pads()
        slept = world.now_us - start
        if self._ble is not None:
            self._ble.on_light_sleep(False, slept)
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
        self._spin(round(self.profile["cpu"]["light_sleep_wake_us"]))
        if self._pending:
            self._dispatch()
        return None

    def bus_deepsleep(self, time_ms):
        self._guard()
        self._flush_stdout()
        self._drain_fifo_for_deep_sleep()
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
        return self.heap.free_bytes()

    def bus_mem_alloc(self):
        return self.heap.alloc_bytes()

    def bus_schedule(self, fn):
        self._guard()
        if self._pending and not self._in_callbacks:
            # Outside a callback the VM runs the queue at every backward jump, so a loop of
            # schedule() calls never fills it; only callbacks (locked) and IRQ bursts do.
            self._dispatch()
        if len(self._pending) >= _SCHEDULE_DEPTH:
            raise RuntimeError("schedule queue full")
        self._pending.append(fn)

    def bus_idle(self):
        """machine.idle() is taskYIELD(): back at once with the CPU awake (modmachine.c)."""
        self._guard()
        self._spin(_IDLE_COST_US)

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


class BoardBus:
    """The names `_board` exposes to mpy/*.py (each maps to EmulatedDevice.bus_<name>).

    A port of the emulator into the real MicroPython VM implements these same calls."""
    ticks_us = sleep_us = lightsleep = deepsleep = reset = reset_cause = wake_reason = None
    unique_id = freq = mem_free = mem_alloc = schedule = idle = None
    pin_check = pin_init = pin_get = pin_set = pin_irq = gpio_deep_sleep_hold = None
    uart_init = uart_deinit = uart_any = uart_read = uart_readline = uart_write = None
    uart_flush = uart_txdone = uart_irq = None
    adc_uv = rtc_us = rtc_set_us = rtc_memory = wdt_start = wdt_feed = None
    timer_start = timer_stop = wake_ext0 = wake_ext1 = ext0 = None
