"""A power cut in the middle of a flash write stops the CPU inside that write: the firmware
never gets to see the write fail. Found by the chaos campaign (issue 8): the emulator used to
hand the firmware an OSError(EIO) for the write that met the cut, and main.py's catch-all
logged "vigil: crash" and ran on before the reset, which no board can do."""
import os

import pytest

from host.deploy import build_image
from host.emulator import World
from host.emulator.flash import Flash

WRITER = """
import os, time
for i in range(200):
    try:
        with open("/state.tmp", "wb") as f:
            f.write(bytes([i % 256]) * 3000)
        os.rename("/state.tmp", "/state.bin")
        with open("/log.txt", "a") as f:
            f.write("entry %d\\n" % i)
    except OSError as e:
        print("saw", e)
    time.sleep_ms(10)
print("done")
"""


@pytest.mark.parametrize("writes", [0, 1, 2, 3, 5, 8, 13])
def test_the_write_that_meets_a_power_cut_never_returns_to_the_firmware(writes):
    world = World(seed=1)
    try:
        dev = world.add_device("d1", files={"/main.py": WRITER.encode()})
        world.run_until(700)
        assert dev.state != "off"
        dev.cut_power_after_flash_writes(writes)
        world.run_until(3000)
        assert dev.state == "off", dev.printed()
        assert not [line for line in dev.printed() if line.startswith("saw")], dev.printed()
        assert "done" not in dev.printed()
        assert not dev.crashes
    finally:
        world.close()


class _BrownOut(BaseException):
    """What the device's power-lost hook raises (a DeviceReset on the board)."""


@pytest.mark.parametrize("writes", range(0, 40, 3))
def test_every_flash_call_that_meets_the_cut_raises_the_power_loss_not_an_oserror(writes):
    flash = Flash(build_image({"/main.py": b"pass\n"}, block_count=64))
    flash.mount()

    def power_lost():
        raise _BrownOut()
    flash.on_power_lost = power_lost
    fs_os = flash.os_module(os.urandom)
    flash.cut_after_writes(writes)
    with pytest.raises(_BrownOut) as raised:
        for i in range(100):
            with flash.open("/state.tmp", "wb") as f:
                f.write(bytes([i]) * 3000)
            fs_os.rename("/state.tmp", "/state.bin")
            with flash.open("/log.txt", "a") as f:
                f.write("entry %d\n" % i)
    assert flash.context.cut
    # Not even on the way: an OSError the caller saw, masked by a `with` block's close.
    chain, exc = [], raised.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__context__
    assert not [e for e in chain if type(e) is OSError], chain
