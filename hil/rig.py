"""Build a Dut from a --vigil-board spec: emu | pty | serial:CONSOLE,LINK |
rfc2217:HOST:PORT | labgrid:PLACE | a board TOML path.

Each kind supplies the strategy's steps and the drivers; the Dut and the tests never know
which kind they got. The rig's key for the device is derived from the seed, as in scenarios.
"""
import time

from hil import board as boards
from hil import drivers as drv
from hil.dut import Dut
from hil.strategy import Strategy

UTC0_MS = 1767225600000  # 2026-01-01T00:00Z, the emulator's default UTC at virtual time 0
HELLO_TIMEOUT_MS = 15_000


class RigError(RuntimeError):
    """The rig cannot provide this board; one line."""


def centre_for(device_id, key, **config):
    from host.centre import Centre, CentreConfig
    from host.keys import KeyStore

    keys = KeyStore()
    keys.add(device_id, 0, key)
    return Centre(keys, CentreConfig(**config))


def parse_spec(spec):
    """('emu'|'pty'|'serial'|'rfc2217'|'labgrid'|'toml', argument)"""
    if spec in ("emu", "pty", "ble"):
        return spec, ""
    kind, sep, arg = spec.partition(":")
    if kind in ("serial", "rfc2217", "labgrid", "ble") and sep and arg:
        if kind == "serial" and "," not in arg:
            raise RigError("--vigil-board=%s: expected serial:CONSOLE,LINK (two ports)" % spec)
        return kind, arg
    if spec.endswith(".toml"):
        return "toml", spec
    raise RigError("--vigil-board=%s: expected emu, pty, ble, ble:NAME-or-ADDRESS, "
                   "serial:CONSOLE,LINK, rfc2217:HOST:PORT, labgrid:PLACE or a board .toml"
                   % spec)


def open_dut(spec="emu", seed=0, centre_config=None, board_options=None, test_keys=None):
    """test_keys: the rig key file of bench boards' test keys (vigil provision --test-key);
    without it a test build's test key is derived from the seed, as an emulated board's."""
    kind, arg = parse_spec(spec)
    test_key = _rig_test_key(test_keys, spec)
    if kind == "emu":
        return _emu_dut(seed, centre_config or {}, board_options or {})
    if kind == "ble":
        return _ble_dut(arg, seed, centre_config or {}, board_options or {})
    if kind == "pty":
        from hil.ptyboard import pty_dut
        return pty_dut(seed, centre_config or {}, board_options or {})
    if kind == "labgrid":
        from hil.labgrid_board import labgrid_dut
        return labgrid_dut(arg, seed, centre_config or {}, test_key)
    if kind == "toml":
        board = boards.load(arg)
        if board.kind == "emu":
            return _emu_dut(seed, centre_config or {}, board_options or {}, board=board)
        return serial_dut(board, board.console_url, board.link_url, seed, centre_config or {},
                          test_key=test_key(board))
    if kind == "serial":
        console, link = arg.split(",", 1)
        board = boards.load("devkitc-bench")
        return serial_dut(board, _as_url(console), _as_url(link), seed, centre_config or {},
                          test_key=test_key(board))
    board = boards.load("devkitc-bench")
    return serial_dut(board, "", "rfc2217://" + arg, seed, centre_config or {},
                      test_key=test_key(board))


def _rig_test_key(path, spec):
    """board -> its test key from the rig key file, or None (derive it from the seed)."""
    def for_board(board):
        if not path or not injects(board):
            return None
        from hil.inject import InjectError, load_rig_key
        try:
            return load_rig_key(path, board.device_id)
        except InjectError as e:
            raise RigError("--vigil-board=%s: %s" % (spec, e)) from None
    return for_board


def _as_url(port):
    return port if "://" in port else "serial://" + port


def _ble_dut(target, seed, centre_config, board_options):
    """ble: the emulated board over BLE through the emulated phone (virtual time);
    ble:NAME-or-ADDRESS: a real board over the OS's Bluetooth (wall time), reconnecting to
    each of its listen windows."""
    if not target:
        return _emu_dut(seed, centre_config, board_options, over_ble=True)
    board = boards.load("ble")
    from host import emulate
    from host.transport import open_transport
    key = emulate.device_key(seed, board.device_id)
    try:
        link = open_transport("ble://" + target, timeout_ms=1000, reconnect_ms=60_000,
                              connect_timeout_ms=30_000)
    except OSError as e:
        raise RigError("board ble:%s: %s" % (target, e)) from None
    clock = drv.RealClock()
    dut = Dut(board, link, clock, centre_for(board.device_id, key, **centre_config), {},
              board.device_id, key, int(time.time() * 1000), Strategy({}, state="booted"))
    dut.strategy.steps["linked"] = lambda: dut.expect("HELLO", timeout=HELLO_TIMEOUT_MS)
    return dut


def injects(board):
    """Does the rig give this board its stimuli by TEST_INJECT (a test build, no relays)?"""
    return board.test_build and board.has("test_inject")


def _emu_dut(seed, centre_config, board_options, over_ble=False, board=None):
    from host import emulate
    from host.deploy import device_files
    from host.emulator.transport import EmuBoard, EmuTransport
    from host.keys import device_key_file_bytes

    board = board or boards.load("ble" if over_ble else "emu")
    device_id = board.device_id
    key = emulate.device_key(seed, device_id)
    made = {}

    def deploy():
        made["files"] = dict(device_files(emulate.REPO, test_build=injects(board)))

    def provision():
        made["files"]["/keys/device.key"] = device_key_file_bytes(device_id, {0: key})
        if injects(board):
            from hil.inject import test_key, test_key_file
            made["files"]["/keys/test.key"] = test_key_file(device_id, test_key(seed, device_id))
        if over_ble:  # the same firmware, told by its pin table to link over BLE
            made["files"]["/lib/firmware/pins.py"] += b'\nLINK_KIND = "ble"\n'
        made["files"].update(board_options.pop("files", {}))

    def boot():
        emu = EmuBoard(device_id, seed, key=key, files=made["files"], **board_options)
        made["board"] = emu
        if over_ble:
            from host.emulator.ble_transport import EmuBleTransport
            made["link"] = EmuBleTransport("emu-ble://%d" % device_id, timeout_ms=1000,
                                           board=emu)
        else:
            made["link"] = EmuTransport("emu://%d" % device_id, timeout_ms=1000, board=emu)

    strategy = Strategy({"deployed": deploy, "provisioned": provision, "booted": boot})
    strategy.transition("booted")
    emu, device = made["board"], made["board"].device
    drivers = {"button": drv.EmuButton(device), "gps": drv.EmuGps(device),
               "battery": drv.EmuBattery(device), "power": drv.EmuPower(device),
               "console": drv.EmuConsole(device), "outputs": drv.EmuOutputs(device)}
    dut = Dut(board, made["link"], emu.clock, centre_for(device_id, key, **centre_config),
              drivers, device_id, key, UTC0_MS, strategy)
    if injects(board):  # stimuli down the link, as on a bench board with no relays
        from hil.inject import TestInjector, inject_drivers, test_key
        dut.injector = TestInjector(made["link"], device_id, test_key(seed, device_id),
                                    dut.utc_ms)
        drivers.update(inject_drivers(dut.injector))
    dut.emulated = device
    strategy.steps["linked"] = lambda: dut.expect("HELLO", timeout=HELLO_TIMEOUT_MS)
    strategy.transition("linked")
    return dut


def serial_dut(board, console_url, link_url, seed, centre_config, key=None, test_key=None):
    """A real board (or anything on real ports): wall-clock time, stimuli by the board's
    drivers, or by TEST_INJECT on a test build without relays. Its keys come from
    provisioning (`vigil provision`), given here as `key` and `test_key`."""
    from host.transport import open_transport
    from host.transport.serial import ModemLines

    if key is None:
        from host import emulate
        key = emulate.device_key(seed, board.device_id)
    try:
        link = open_transport(link_url, timeout_ms=1000, ready_timeout_ms=board.ready_timeout_ms,
                              reconnect_ms=5000)
    except OSError as e:
        raise RigError("board %s: link %s: %s" % (board.name, link_url, e)) from None
    if board.wake == "rts":
        link.wake_line = ModemLines(link)
    drivers = {}
    if console_url:
        import serial
        try:
            port = serial.serial_for_url(console_url.replace("serial://", ""), timeout=0)
        except (serial.SerialException, ValueError, OSError) as e:
            link.close()
            raise RigError("board %s: console %s: %s" % (board.name, console_url, e)) from None
        drivers["console"] = drv.SerialConsole(port)
    clock = drv.RealClock()
    dut = Dut(board, link, clock, centre_for(board.device_id, key, **centre_config), drivers,
              board.device_id, key, int(time.time() * 1000) - 0, Strategy({}, state="booted"))
    dut.strategy.steps["linked"] = lambda: dut.expect("HELLO", timeout=HELLO_TIMEOUT_MS)
    if injects(board):  # a test build with no relays: stimuli by TEST_INJECT down the link
        from hil.inject import TestInjector, inject_drivers
        from hil.inject import test_key as derive_test_key
        dut.injector = TestInjector(link, board.device_id,
                                    test_key or derive_test_key(seed, board.device_id),
                                    dut.utc_ms)
        drivers.update(inject_drivers(dut.injector))
    return dut
