"""MicroPython's `cryptolib.aes` on top of `cryptography` (host only: the real VM has its own)."""
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MODE_ECB = 1
MODE_CBC = 2


class aes:  # noqa: N801 - MicroPython's name
    def __init__(self, key, mode, IV=None):  # noqa: N803
        key = bytes(key)
        if len(key) not in (16, 24, 32):
            raise ValueError("key")
        if mode == MODE_ECB:
            cipher = Cipher(algorithms.AES(key), modes.ECB())
        elif mode == MODE_CBC:
            if IV is None or len(IV) != 16:
                raise ValueError("IV")
            cipher = Cipher(algorithms.AES(key), modes.CBC(bytes(IV)))
        else:
            raise ValueError("mode")
        self._enc = cipher.encryptor()
        self._dec = cipher.decryptor()
        self._used = None  # MicroPython refuses mixing encrypt and decrypt on one object

    def _run(self, ctx, kind, data, out):
        if self._used not in (None, kind):
            raise OSError(1)
        self._used = kind
        data = bytes(data)
        if len(data) % 16:
            raise ValueError("blksize")
        result = ctx.update(data)
        if out is None:
            return result
        out[:len(result)] = result
        return None

    def encrypt(self, in_buf, out_buf=None):
        return self._run(self._enc, "enc", in_buf, out_buf)

    def decrypt(self, in_buf, out_buf=None):
        return self._run(self._dec, "dec", in_buf, out_buf)
