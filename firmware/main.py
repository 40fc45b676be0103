"""vigil victim device: entry point, as /main.py on the board.

Everything, the imports and the board build included, runs inside the crash guard: on the
ESP32 an uncaught exception drops to the REPL and the board stays there (no app, and a
watchdog that cannot be stopped resets it a minute later). So any crash is logged, counted
in RTC memory and turned into a reset, with a growing pause from the third crash in a row;
the queue, the counter reservation and the active alarm live on flash, so the device resumes
intact. Safe mode (firmware/safemode.py, docs/HARDWARE.md): after any reset but a deep-sleep
wake, a jumper on the safe-mode pin or a key on the REPL UART within 2 s skips the app and
the watchdog, so an engineer always gets the REPL back.
"""
import sys


def main():
    import gc
    import time

    import esp32
    import machine

    # The first thing the firmware does: note the ticks and the panic button. A press that
    # woke the board, or came during any boot, is timed from here (app.boot_press_began),
    # not from the app's start, which comes after the imports and the flash work.
    main_ms = time.ticks_ms()
    # The heap is small and first-fit: collect every 2 KiB allocated from here on (the first
    # collection frees what compiling this file left), so the modules imported next pack
    # together instead of landing between garbage (docs/HARDWARE.md, "RAM and boot time").
    gc.threshold(2048)
    from firmware import bootguard, pins
    Pin = machine.Pin
    held_at_main = Pin(pins.PANIC_BUTTON_PIN, Pin.IN, Pin.PULL_UP).value() == 0
    guard = bootguard.BootGuard(machine.RTC())
    if machine.reset_cause() != machine.DEEPSLEEP_RESET:
        import firmware.safemode
        start = firmware.safemode.start_app(machine, esp32, time, sys.stdin, pins,
                                            guard.crashes)
        # Boot only: out of the heap before the app's imports (the package holds it too).
        del firmware.safemode, sys.modules["firmware.safemode"]
        if not start:
            return
    try:
        app_ms = time.ticks_ms()                  # after the safe-mode window, before imports
        import select

        from firmware import app, board
        hw = board.Board(machine, esp32, time, pins, select)
        app.App(hw, guard=guard, boot_ticks=(main_ms, held_at_main, app_ms)).run()
    except KeyboardInterrupt:
        # A Ctrl-C on the REPL UART (or noise on its RX): never leave the victim without the
        # app. Engineers get the REPL through safe mode.
        print("vigil: interrupted: reset (safe mode gives the REPL)")
    except Exception as exc:                      # noqa: BLE001 - any crash: log, then reset
        print("vigil: crash:", repr(exc))
        sys.print_exception(exc)
        guard.save(guard.crashes + 1)
    time.sleep_ms(100)                            # let the log line out before the reset
    machine.reset()


main()
