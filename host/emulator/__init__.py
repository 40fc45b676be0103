"""The emulated ESP32 board: virtual clock, MicroPython hardware modules, virtual peripherals.

The unchanged firmware boots from a littlefs image of the device filesystem
(`host.deploy.device_files` / `build_image`) and runs on `machine`, `esp32`, `time`,
`micropython`, `cryptolib`, `os`, `sys`, `gc` and `random` modules that each device gets
fresh at every boot (see mpy/*.py: they talk to the board only through `_board`).

    from host.emulator import World
    from host.deploy import device_files

    with World(seed=7) as world:
        dev = world.add_device("dev-1", key=b"k" * 16, files=device_files(repo_root))
        dev.link.connect(lambda data, t_ms: ...)        # the centre's side
        dev.button.hold(3000, at_ms=60_000)               # press at 60 s, release at 63 s
        world.run_until(24 * 3600 * 1000)                 # one virtual day
        print(dev.energy.report(), world.trace_sha256())

World(seed=0, utc_start_ms=2026-01-01T00:00Z, hang_timeout_s=30)
    now_us / now_ms           virtual time since the world began
    run_until(t_ms), run_for(ms)
    at(t_ms, fn, *args), after(delay_ms, fn, *args), at_us(t_us, fn, arg)
    add_device(device_id, key=None, profile="esp32-devkitc" | "product" | path to a TOML,
               files=None | image=None,
               ticks_start_ms=None, rtc_utc_ms=None, link={...}, gnss={...},
               battery={...}, echo_stdout_to_link=False, trace_sleeps=False)
        -> EmulatedDevice (powered on at once; boots when the world runs)
    devices                   {device_id: EmulatedDevice}
    trace                     [(t_ms, device_id, kind, detail)]: boot, reset, wake, crash,
                              print, button, led, haptic, gnss, charger, brownout, uplink,
                              downlink, uart_overflow, irq_lost, main_returned
    trace_sha256()            hash of the whole trace, to compare runs
    log                       [(t_ms, device_id, line)]: firmware stdout
    rng(*names)               a random.Random derived from the seed and names
    close() / with World():   stop the firmware threads

EmulatedDevice
    button    Button: press(at_ms=None), release(at_ms=None), hold(duration_ms, at_ms=None),
              click(at_ms=None), script([(t_ms, "press"|"release")]), pressed, events
    gnss      Gnss: route (Route(waypoints, speed_mps, start_ms) or Route.from_gpx(...)),
              set_route(), indoor spans, sessions [(start_ms, kind, ttff_ms)], state
    battery   Battery: soc_pct, voltage_mv(), set_soc(pct), plug(at_ms=None),
              unplug(at_ms=None), browned_out
    led, haptic  OutputRecorder: edges [(t_ms, level)], level, pulses(), on_ms()
    link      Link: connect(on_uplink(data, t_ms)), uplinks, send_downlink(data),
              downlink_waits [(arrival_ms, delivered_ms, waited_ms)], stats, outage()
    energy    Energy: report() -> energy_mah, by_component_mah, avg_current_ma,
              projected_battery_days, floor_mah, floor_ratio, board_mah, counters
              (the profile's [board] draws count while the board has power)
    uarts     {id: Uart}: overflow_bytes, rx_bytes, tx_bytes, capacity
    power_cut(), power_on(), cut_power_after_flash_writes(n), drive_pin(pin, level),
    pin_level(pin), feed_uart(uart_id, data), state, listening, reset_cause, rtc_memory,
    boot_count, crashes, log, flash (Flash: image, read_file(path))

Semantics (DESIGN.md decision 2): virtual time moves only while the firmware waits
(time.sleep*, machine.idle, lightsleep, deepsleep, UART reads with a timeout) and by a few
microseconds per polled call (ticks, UART.any, ADC); deep sleep, watchdog expiry,
machine.reset and an uncaught exception are real resets that discard every module; only RTC
memory and flash survive (a power cut loses RTC memory too). Light sleep pauses the watchdog
and the hardware timers, and loses GPIO interrupts of pins that are not wake sources.
"""
from .device import EmulatedDevice
from .energy import Energy, ProfileError, load_profile
from .gnss import Route, nmea_sentence
from .states import RESET_NAMES, DeviceReset
from .world import EmulatorError, World

__all__ = ["World", "EmulatedDevice", "EmulatorError", "DeviceReset", "RESET_NAMES", "Energy",
           "ProfileError", "load_profile", "Route", "nmea_sentence"]
