"""vigil victim device: entry point, as /main.py on the board.

Builds the hardware (only now, never at import), runs the superloop, and turns any crash
into a logged reset: the queue, the counter reservation and the active alarm live on flash,
so the device resumes intact. The watchdog covers hangs.
"""
import sys


def main():
    from firmware import app, board
    hw = board.build()
    try:
        app.App(hw).run()
    except Exception as exc:                      # noqa: BLE001 - any crash: log, then reset
        print("vigil: crash:", repr(exc))
        sys.print_exception(exc)
        hw.time.sleep_ms(1000)                    # let the log line out before the reset
        hw.machine.reset()


main()
