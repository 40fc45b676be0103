"""firmware/ble.py's secrets (our IRK, bonds): on flash only, read when NimBLE asks."""
from firmware import persist
from firmware.ble import get_secret, set_secret


def test_secrets_by_key_and_by_index_survive_a_reset(tmp_path):
    path = str(tmp_path / "ble.bin")
    assert get_secret(path, 10, 0, b"irk") is None
    assert set_secret(path, 10, b"irk", b"I" * 16) is True
    set_secret(path, 2, b"peer-a", b"A")
    set_secret(path, 2, b"peer-b", b"B")
    set_secret(path, 2, b"peer-a", b"A2")                # replaced, now the newest
    assert get_secret(path, 10, 0, memoryview(b"irk")) == b"I" * 16
    assert [get_secret(path, 2, i, None) for i in range(3)] == [b"B", b"A2", None]
    set_secret(path, 2, b"peer-b", None)                 # NimBLE deletes a bond
    assert get_secret(path, 2, 0, None) == b"A2"
    assert get_secret(path, 2, 1, None) is None


def test_the_bound_drops_the_oldest_bond_never_our_irk(tmp_path):
    path = str(tmp_path / "ble.bin")
    set_secret(path, 10, b"irk", b"I" * 16)
    for n in range(40):
        set_secret(path, 2, b"peer%d" % n, b"%d" % n)
    assert get_secret(path, 10, 0, b"irk") == b"I" * 16
    assert get_secret(path, 2, 0, b"peer0") is None and get_secret(path, 2, 0, b"peer39") == b"39"
    assert len(persist.read_file(path)) == 16


def test_a_torn_or_foreign_file_is_an_empty_store(tmp_path):
    path = tmp_path / "ble.bin"
    path.write_bytes(b"\x00garbage")
    assert get_secret(str(path), 10, 0, b"irk") is None
    persist.write_file(str(path), [[10, b"irk"], "x", 5])  # sealed, but not a secrets list
    assert get_secret(str(path), 10, 0, b"irk") is None
    assert set_secret(str(path), 10, b"irk", b"J" * 16) is True
    assert get_secret(str(path), 10, 0, b"irk") == b"J" * 16
