"""persist.py on the real MicroPython VM: littlefs with power cuts, and the RTC blob."""

import pytest

from tests.vm import CUT_BLOCK_DEVICE, device_lib, needs_micropython, run_micropython

pytestmark = [pytest.mark.micropython, needs_micropython]

CUT_SCRIPT = CUT_BLOCK_DEVICE + r"""
from firmware.persist import MessageCounter, bump_boot_count, load_config, read_file, save_config

dev = CutDevice(24)
os.VfsLfs2.mkfs(dev)
os.mount(os.VfsLfs2(dev), '/fl')
save_config('/fl/state', 1, {1: 900})
os.umount('/fl')
base = bytes(dev.d)

def boot(n, used):
    # one boot: resume, take 12 counters (crossing blocks of 4), bump the boot count
    os.mount(os.VfsLfs2(dev), '/fl')
    dev.left = n
    try:
        c = MessageCounter('/fl/state/counter.bin', block=4)
        k = c.resume()
        for _ in range(12):
            c.ensure(k)  # as a sender does before it uses k
            if not dev.cut:
                used.append(k)
            k += 1
        bump_boot_count('/fl/state')
    except OSError:
        if not dev.cut:
            raise
    dev.left = -1
    os.umount('/fl')

def check(n, torn):
    dev.d[:] = base
    dev.cut = False; dev.torn = torn; dev.ops = 0
    used = []
    boot(-1, used)
    boot(n, used)  # power cut after n block operations
    dev.cut = False
    ops = dev.ops
    boot(-1, used)
    assert len(used) == len(set(used)), ('reused', n, torn, used)
    assert used == sorted(used), ('backwards', n, torn, used)
    os.mount(os.VfsLfs2(dev), '/fl')
    assert load_config('/fl/state') == (1, {1: 900}), ('config', n, torn)
    boots = read_file('/fl/state/boot.bin')
    assert 2 <= boots <= 3, ('boots', n, torn, boots)
    os.umount('/fl')
    return ops

total = check(-1, False)
cases = 0
for torn in (False, True):
    for n in range(total + 1):
        check(n, torn)
        cases += 1
print('OK', total, cases)
"""


def test_counter_is_never_reused_across_power_cuts_on_littlefs(tmp_path):
    lib = device_lib(tmp_path, compiled=True)
    result = run_micropython(CUT_SCRIPT, heapsize="1M", path=[lib], timeout_s=120)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    words = out.split()
    assert words[0] == "OK", out
    assert int(words[1]) >= 8, "the boot should span many block operations"


RTC_SCRIPT = r"""
from firmware.persist import rtc_save, rtc_take, MessageCounter, encode, decode
class Rtc:
    def __init__(self):
        self.blob = b''
    def memory(self, data=None):
        if data is None:
            return self.blob
        self.blob = bytes(data)
rtc = Rtc()
obj = {'counter': 77, 'alarm': [1, True, None, b'\x00\xff', 'x'], -5: -(1 << 40)}
rtc_save(rtc, obj)
assert rtc_take(rtc) == obj
assert rtc_take(rtc) is None
assert decode(encode(obj)) == obj
c = MessageCounter(ROOT + '/c.bin', block=8)
assert c.resume() == 1
for k in range(1, 11):
    c.ensure(k)
assert c.reserved == 17
assert MessageCounter(ROOT + '/c.bin', block=8).resume() == 17
print('OK', encode(obj).hex())
"""


def test_persist_on_the_vm_in_48k_matches_cpython(tmp_path):
    from firmware import persist

    lib = device_lib(tmp_path, compiled=True)
    result = run_micropython(RTC_SCRIPT.replace("ROOT", repr(str(tmp_path))), path=[lib])
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    words = out.split()
    assert words[0] == "OK", out
    obj = {"counter": 77, "alarm": [1, True, None, b"\x00\xff", "x"], -5: -(1 << 40)}
    # dict order differs between the interpreters; the bytes decode the same everywhere
    assert persist.decode(bytes.fromhex(words[1])) == obj
