"""MicroPython's `cryptolib` as the ESP32 port builds it, on top of `cryptography` (host only).

Follows extmod/modcryptolib.c with the ESP32 configuration (MICROPY_SSL_MBEDTLS, and the
py/mpconfig.h defaults MICROPY_PY_CRYPTOLIB_CTR = 0 and MICROPY_PY_CRYPTOLIB_CONSTS = 0, which
ports/esp32 does not override), v1.24 to master: only `aes`, no MODE_* constants, no CTR mode,
16- or 32-byte keys, positional arguments only, and the port's exact exception types and texts.
See docs/HARDWARE.md, "cryptolib".
"""
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_MODE_ECB = 1
_MODE_CBC = 2
_KEY_NONE, _KEY_ENC, _KEY_DEC = 0, 1, 2


def _check_args(args, kwargs, n_min, n_max):
    """py/argcheck.c mp_arg_check_num for a function that takes no keywords (counts include
    `self` for methods, as MicroPython's messages do)."""
    if kwargs:
        raise TypeError("function doesn't take keyword arguments")
    n = len(args)
    if n < n_min:
        raise TypeError("function missing %d required positional arguments" % (n_min - n))
    if n > n_max:
        raise TypeError("function expected at most %d arguments, got %d" % (n_max, n))


def _read_buffer(obj):
    """mp_get_buffer_raise(obj, MP_BUFFER_READ): str and bytes-likes expose their bytes."""
    if isinstance(obj, str):
        return obj.encode()
    try:
        return bytes(memoryview(obj))
    except TypeError:
        raise TypeError("object with buffer protocol required") from None


def _write_buffer(obj):
    """mp_get_buffer_raise(obj, MP_BUFFER_WRITE): bytes and str are read-only."""
    try:
        view = memoryview(obj)
    except TypeError:
        raise TypeError("object with buffer protocol required") from None
    if view.readonly:
        raise TypeError("object with buffer protocol required")
    return view.cast("B")


def _get_int(obj):
    """mp_obj_get_int: ints and bools only."""
    if isinstance(obj, int):
        return int(obj)
    raise TypeError("can't convert %s to int" % type(obj).__name__)


class aes:  # noqa: N801 - MicroPython's name
    """cryptolib.aes(key, mode[, IV]): mode 1 (ECB) or 2 (CBC)."""

    def __init__(self, *args, **kwargs):
        _check_args(args, kwargs, 2, 3)
        mode = _get_int(args[1])
        if mode not in (_MODE_ECB, _MODE_CBC):
            raise ValueError("mode")  # checked before the key, as in cryptolib_aes_make_new
        key = _read_buffer(args[0])
        if len(key) not in (16, 32):
            raise ValueError("key")
        iv = args[2] if len(args) > 2 else None
        if iv is not None:
            iv = _read_buffer(iv)
            if len(iv) != 16:
                raise ValueError("IV")
        elif mode == _MODE_CBC:
            raise ValueError("IV")
        if mode == _MODE_ECB:
            cipher = Cipher(algorithms.AES(key), modes.ECB())  # an IV given to ECB is ignored
        else:
            cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
        self._cipher = cipher
        self._ctx = None
        self._key_type = _KEY_NONE

    def _process(self, args, kwargs, encrypt):
        _check_args((self,) + args, kwargs, 2, 3)
        data = _read_buffer(args[0])
        if len(data) % 16:
            raise ValueError("blksize % 16")
        out = None
        if len(args) > 1:
            out = _write_buffer(args[1])
            if len(out) < len(data):
                raise ValueError("output too small")
        # The first call fixes the direction (mbedtls sets an encrypt or a decrypt key schedule).
        want = _KEY_ENC if encrypt else _KEY_DEC
        if self._key_type == _KEY_NONE:
            self._key_type = want
            self._ctx = self._cipher.encryptor() if encrypt else self._cipher.decryptor()
        elif self._key_type != want:
            raise ValueError("can't encrypt & decrypt")
        result = self._ctx.update(data)
        if out is None:
            return result
        out[:len(result)] = result
        return args[1]  # the caller's own buffer object, as aes_process returns out_buf

    def encrypt(self, *args, **kwargs):
        return self._process(args, kwargs, True)

    def decrypt(self, *args, **kwargs):
        return self._process(args, kwargs, False)
