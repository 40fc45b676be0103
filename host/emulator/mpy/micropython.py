# MicroPython `micropython` for the emulator.
import _board


def const(x):
    return x


def native(f):
    return f


def viper(f):
    return f


def schedule(func, arg):
    # Runs at the firmware's next wait point, like a soft IRQ between bytecodes.
    _board.schedule(lambda: func(arg))


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
