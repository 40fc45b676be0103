"""HMAC-SHA256 tags and AES-128-CTR built on AES-ECB, portable to MicroPython.

MicroPython has hashlib.sha256 and cryptolib.aes (ECB/CBC, no CTR, no hmac module), so both
are built here from those primitives. On CPython `cryptolib` is absent and AES-ECB comes from
the `cryptography` package. See SPEC.md section 4.
"""
import hashlib
import struct

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

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
_BLOCK = const(64)


def _pads(key):
    """HMAC's inner and outer key blocks (RFC 2104) for a key of at most 64 bytes."""
    # XOR in place: a list comprehension would allocate a 512-byte list on MicroPython.
    pad = bytearray(_BLOCK)
    pad[:len(key)] = key
    for i in range(_BLOCK):
        pad[i] ^= 0x36
    inner = bytes(pad)
    for i in range(_BLOCK):
        pad[i] ^= 0x36 ^ 0x5C
    return inner, bytes(pad)


def _hmac(pads, msg):
    inner = hashlib.sha256(pads[0])
    inner.update(msg)
    outer = hashlib.sha256(pads[1])
    outer.update(inner.digest())
    return outer.digest()


def derive_keys(device_key):
    """Split one 16-byte device key into a MAC key and an AES key (SPEC 4.1)."""
    if len(device_key) != KEY_LEN:
        raise ValueError("device key must be 16 bytes")
    pads = _pads(device_key)
    # v2 labels: a v2 frame never shares a keystream with a v1 frame of the same counter.
    return _hmac(pads, b"vigil-mac-v2"), _hmac(pads, b"vigil-enc-v2")[:KEY_LEN]


class Keys:
    """What seals and opens the frames of one device key: `tag` authenticates (HMAC-SHA256
    under the MAC key, the pads computed once), `xor` encrypts and decrypts (AES-128-CTR under
    the AES key). Block i of frame (device, direction, counter, key id) is
    AES(key, device_id[4] | direction[1] | counter[4] | key_id[1] | 0[4] | i[2])."""

    def __init__(self, device_key):
        mac_key, enc_key = derive_keys(device_key)
        self._pads = _pads(mac_key)
        self._encrypt = _ecb(enc_key)
        self._block = bytearray(16)

    def tag(self, msg):
        return _hmac(self._pads, msg)[:TAG_LEN]

    def xor(self, device_id, downlink, counter, key_id, data):
        block = self._block
        struct.pack_into(">IBIB", block, 0, device_id, 1 if downlink else 0, counter, key_id)
        stream = bytearray()
        for i in range((len(data) + 15) // 16):
            block[14] = i >> 8
            block[15] = i & 0xFF
            stream += self._encrypt(bytes(block))
        out = bytearray(data)
        for i in range(len(out)):
            out[i] ^= stream[i]
        return bytes(out)
