"""vigil victim device: entry point, as /main.py on the board.

Everything, the imports and the board build included, runs inside the crash guard: on the
ESP32 an uncaught exception drops to the REPL and the board stays there (no app, and a
watchdog that cannot be stopped resets it a minute later). So any crash is logged, counted
in RTC memory and turned into a reset, with a growing pause from the third crash in a row;
the queue, the counter reservation and the active alarm live on flash, so the device resumes
intact. Safe mode (docs/HARDWARE.md): after any reset but a deep-sleep wake, a jumper on the
safe-mode pin or a key on the REPL UART within 2 s skips the app and the watchdog, so an
engineer always gets the REPL back.
"""
import sys

_SAFE_MODE_WINDOW_MS = 2000


def main():
    import time

    import esp32
    import machine

    # The first thing the firmware does: note the ticks and the panic button. A press that
    # woke the board, or came during any boot, is timed from here (app.boot_press_began),
    # not from the app's start, which comes after the imports and the flash work.
    main_ms = time.ticks_ms()
    from firmware import bootguard, pins
    Pin = machine.Pin
    held_at_main = Pin(pins.PANIC_BUTTON_PIN, Pin.IN, Pin.PULL_UP).value() == 0
    guard = bootguard.BootGuard(machine.RTC())
    if machine.reset_cause() != machine.DEEPSLEEP_RESET:
        print("vigil: press a key within 2 s for safe mode")
        why = bootguard.safe_mode_requested(machine, sys.stdin, pins, _SAFE_MODE_WINDOW_MS,
                                            time)
        if why:
            print("vigil: safe mode (%s): app and watchdog not started" % why)
            return
        pause_ms = guard.backoff_ms()
        if pause_ms:
            # Crashing again and again: pause in deep sleep (the next boot is a deep-sleep
            # wake, which tries the app), but a press or the link's wake line ends it at once.
            print("vigil: %d crashes in a row, pausing %d s" % (guard.crashes, pause_ms // 1000))
            esp32.wake_on_ext0(Pin(pins.PANIC_BUTTON_PIN, Pin.IN, Pin.PULL_UP),
                               esp32.WAKEUP_ALL_LOW)
            esp32.wake_on_ext1((Pin(pins.LINK_WAKE_PIN, Pin.IN, Pin.PULL_UP),),
                               esp32.WAKEUP_ALL_LOW)
            machine.deepsleep(pause_ms)
    try:
        app_ms = time.ticks_ms()                  # after the safe-mode window, before imports
        from firmware import app, board
        app.App(board.build(), guard=guard, boot_ticks=(main_ms, held_at_main, app_ms)).run()
    except KeyboardInterrupt:
        # A Ctrl-C on the REPL UART (or noise on its RX): never leave the victim without the
        # app. Engineers get the REPL through safe mode.
        print("vigil: interrupted: reset (for the REPL: reset, then a key within 2 s)")
    except Exception as exc:                      # noqa: BLE001 - any crash: log, then reset
        print("vigil: crash:", repr(exc))
        sys.print_exception(exc)
        guard.count_crash()
    time.sleep_ms(100)                            # let the log line out before the reset
    machine.reset()


main()
