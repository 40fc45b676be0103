"""The BLE stack's secrets (our IRK, bonds): answered from RAM in the IRQ handler
(firmware/ble.py), kept on flash by the next poll() (firmware/blestart.py)."""
from firmware import persist
from firmware.ble import get_secret, set_secret
from firmware.blestart import load_secrets, save_secrets


def test_secrets_by_key_and_by_index_survive_a_reset(tmp_path):
    path = str(tmp_path / "ble.bin")
    items = load_secrets(path)
    assert items == [] and get_secret(items, 10, 0, b"irk") is None
    set_secret(items, 10, b"irk", b"I" * 16)
    set_secret(items, 2, b"peer-a", b"A")
    set_secret(items, 2, b"peer-b", b"B")
    set_secret(items, 2, b"peer-a", b"A2")               # replaced, now the newest
    save_secrets(path, items)
    again = load_secrets(path)                           # as after a reset
    assert get_secret(again, 10, 0, memoryview(b"irk")) == b"I" * 16
    assert [get_secret(again, 2, i, None) for i in range(3)] == [b"B", b"A2", None]
    set_secret(again, 2, b"peer-b", None)                # NimBLE deletes a bond
    assert get_secret(again, 2, 0, None) == b"A2" and get_secret(again, 2, 1, None) is None


def test_the_bound_drops_the_oldest_bond_never_our_irk(tmp_path):
    path = str(tmp_path / "ble.bin")
    items = []
    set_secret(items, 10, b"irk", b"I" * 16)
    for n in range(40):
        set_secret(items, 2, b"peer%d" % n, b"%d" % n)
    save_secrets(path, items)
    kept = load_secrets(path)
    assert get_secret(kept, 10, 0, b"irk") == b"I" * 16
    assert get_secret(kept, 2, 0, b"peer0") is None and get_secret(kept, 2, 0, b"peer39") == b"39"
    assert len(kept) == 16


def test_a_torn_or_foreign_file_is_an_empty_store(tmp_path):
    path = tmp_path / "ble.bin"
    path.write_bytes(b"\x00garbage")
    assert load_secrets(str(path)) == []
    persist.write_file(str(path), [[10, b"irk"], "x", 5])  # sealed, but not a secrets list
    assert load_secrets(str(path)) == []
