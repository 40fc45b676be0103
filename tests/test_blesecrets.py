"""firmware/blesecrets.py: the stack's secrets (our IRK, bonds) kept on flash."""
from firmware.blesecrets import SecretStore


def test_secrets_by_key_and_by_index_survive_a_reload(tmp_path):
    path = str(tmp_path / "ble.bin")
    store = SecretStore(path)
    assert store.get(10, 0, b"irk") is None
    assert store.set(10, b"irk", b"I" * 16) is True
    store.set(2, b"peer-a", b"A")
    store.set(2, b"peer-b", b"B")
    store.set(2, b"peer-a", b"A2")                       # replaced, now the newest
    again = SecretStore(path)                           # as after a reset
    assert again.get(10, 0, memoryview(b"irk")) == b"I" * 16
    assert [again.get(2, i, None) for i in range(3)] == [b"B", b"A2", None]
    again.set(2, b"peer-b", None)                       # NimBLE deletes a bond
    assert SecretStore(path).get(2, 0, None) == b"A2"


def test_the_bound_drops_the_oldest_bond_never_our_irk(tmp_path):
    store = SecretStore(str(tmp_path / "ble.bin"))
    store.set(10, b"irk", b"I" * 16)
    for n in range(40):
        store.set(2, b"peer%d" % n, b"%d" % n)
    assert store.get(10, 0, b"irk") == b"I" * 16
    assert store.get(2, 0, b"peer0") is None and store.get(2, 0, b"peer39") == b"39"
    assert len(store._items) == 16


def test_a_torn_or_foreign_file_is_an_empty_store(tmp_path):
    path = tmp_path / "ble.bin"
    path.write_bytes(b"\x00garbage")
    assert SecretStore(str(path)).get(10, 0, b"irk") is None
