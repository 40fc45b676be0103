"""HMAC-SHA256 tags and AES-128-CTR built on AES-ECB, portable to MicroPython.

MicroPython has hashlib.sha256 and cryptolib.aes (ECB/CBC, no CTR, no hmac module), so both
are built here from those primitives. On CPython `cryptolib` is absent and AES-ECB comes from
the `cryptography` package. See SPEC.md section 4.
"""
import hashlib

try:
    import cryptolib

    def _ecb(key):
        return cryptolib.aes(key, 1).encrypt
except ImportError:  # CPython
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def _ecb(key):
        return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update

TAG_LEN = 8
KEY_LEN = 16
_BLOCK = 64


class Hmac:
    """HMAC-SHA256 with the key's pads computed once."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        # XOR in place: a list comprehension would allocate a 512-byte list on MicroPython.
        pad = bytearray(_BLOCK)
        pad[:len(key)] = key
        for i in range(_BLOCK):
            pad[i] ^= 0x36
        self._ipad = bytes(pad)
        for i in range(_BLOCK):
            pad[i] ^= 0x36 ^ 0x5C
        self._opad = bytes(pad)

    def digest(self, msg):
        inner = hashlib.sha256(self._ipad)
        inner.update(msg)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()


def hmac_sha256(key, msg):
    return Hmac(key).digest(msg)


def derive_keys(device_key):
    """Split one 16-byte device key into a MAC key and an AES key (SPEC 4.1)."""
    if len(device_key) != KEY_LEN:
        raise ValueError("device key must be 16 bytes")
    mac = Hmac(device_key)
    # v2 labels: a v2 frame never shares a keystream with a v1 frame of the same counter.
    return mac.digest(b"vigil-mac-v2"), mac.digest(b"vigil-enc-v2")[:KEY_LEN]


class Ctr:
    """AES-128-CTR keystream: block i of frame (device, direction, counter, key id) is
    AES(key, device_id[4] | direction[1] | counter[4] | key_id[1] | 0[4] | i[2])."""

    def __init__(self, enc_key):
        self._encrypt = _ecb(enc_key)
        self._block = bytearray(16)

    def xor(self, device_id, downlink, counter, key_id, data):
        block = self._block
        block[0] = (device_id >> 24) & 0xFF
        block[1] = (device_id >> 16) & 0xFF
        block[2] = (device_id >> 8) & 0xFF
        block[3] = device_id & 0xFF
        block[4] = 1 if downlink else 0
        block[5] = (counter >> 24) & 0xFF
        block[6] = (counter >> 16) & 0xFF
        block[7] = (counter >> 8) & 0xFF
        block[8] = counter & 0xFF
        block[9] = key_id & 0xFF
        nblocks = (len(data) + 15) // 16
        stream = bytearray()
        for i in range(nblocks):
            block[14] = i >> 8
            block[15] = i & 0xFF
            stream += self._encrypt(bytes(block))
        out = bytearray(data)
        for i in range(len(out)):
            out[i] ^= stream[i]
        return bytes(out)
