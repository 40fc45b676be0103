# MicroPython `micropython` for the emulator.
import _board


def const(x):
    return x


def native(f):
    return f


def viper(f):
    return f


def schedule(func, arg):
    """py/modmicropython.c: the queue is MICROPY_SCHEDULER_DEPTH (8 on the ESP32) deep and
    shared with pin IRQs and timers; a full queue raises. The callback runs protected, as
    mp_sched_run_pending does: an exception in it is printed, not raised."""
    def run():
        try:
            func(arg)
        except Exception as e:  # noqa: BLE001 - mp_call_function_1_protected prints any
            import sys
            sys.print_exception(e)
    _board.schedule(run)


def mem_info(verbose=None):
    free = _board.mem_free()
    used = _board.mem_alloc()
    print("stack: 736 out of 15360")
    print("GC: total: %d, used: %d, free: %d" % (used + free, used, free))


def qstr_info(verbose=None):
    print("qstr pool: n_pool=1, n_qstr=0, n_str_data_bytes=0, n_total_bytes=0")


def stack_use():
    return 736


def heap_lock():
    return 0


def heap_unlock():
    return 0


def alloc_emergency_exception_buf(size):
    pass


def kbd_intr(chr):
    pass


def opt_level(level=None):
    return 0 if level is None else None
