"""--vigil-board=labgrid:PLACE: a board from a labgrid farm (labgrid >= 24, gRPC coordinator).

The rig acquires PLACE from the coordinator at $LG_COORDINATOR (labgrid's own variable;
default 127.0.0.1:20408) for the length of one test, and reaches the board only through what
the place's exporter serves:

| resource (name) | class | what the rig does with it |
|---|---|---|
| `console` | NetworkSerialPort | rfc2217://host:port (the exporter's ser2net): the console log |
| `link` | NetworkSerialPort | rfc2217://host:port: the frames |
| `control` (optional) | VigilSideChannel, params `path` | the bench side channel (hil/README.md): wake/ready lines, stimuli, the virtual clock of an emulated board |

An exporter config serving a bench board (RawSerialPort / USBSerialPort become
NetworkSerialPort behind a ser2net the exporter starts when the place is acquired):

    vigil-bench-1:
      console: {cls: USBSerialPort, match: {ID_SERIAL_SHORT: "..."}}
      link: {cls: USBSerialPort, match: {ID_SERIAL_SHORT: "..."}}

With a `control` resource (CI: `vigil device --listen pty --clock virtual` behind the
exporter, hil/labgrid_ci.py) every test gets a fresh board (REFLASH: flashed, deployed,
provisioned anew) on the board's virtual clock. Without one, it is a bench board: wall-clock
time, stimuli by TEST_INJECT on a test build (hil/boards/devkitc-bench.toml), its keys from
provisioning.
"""
import os
import time
from argparse import Namespace

from hil import board as boards
from hil.rig import RigError

DEFAULT_COORDINATOR = "127.0.0.1:20408"
RESOURCES_TIMEOUT_S = 15.0   # the exporter starts ser2net on acquire, then reports its port
# Downlink bytes cross ser2net (TCP, then the exporter's pty) while the side channel is a
# direct socket: hold the wake line this much wall time after a write, so the bytes are in
# the board's UART before the clock runs on and the board may go back to sleep.
CROSSING_S = 0.05


class LabgridPlace:
    """One acquired place: its resources' params by name; release() gives it back."""

    def __init__(self, place, address=None):
        try:
            from labgrid.remote.client import Error as ClientError
            from labgrid.remote.client import start_session
        except ImportError:
            raise RigError("--vigil-board=labgrid:%s: labgrid is not installed "
                           "(pip install 'vigil[labgrid]')" % place) from None
        self.name = place
        self.address = address or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR
        self._error = ClientError
        self.session = None
        self.acquired = False
        try:
            self.session = start_session(self.address, extra={"args": Namespace(
                place=place, allow_unmatched=False, kick=False)})
        except Exception as e:  # noqa: BLE001 - grpc and connection errors: one line
            raise RigError("labgrid coordinator %s: %s" % (self.address, _one_line(e))) from None
        try:
            self._run(self.session.acquire())
            self.acquired = True
            self.resources = self._wait_for_ports()
        except Exception as e:  # noqa: BLE001
            self.release()
            raise RigError("labgrid place %s: %s" % (place, _one_line(e))) from None

    def _run(self, coro):
        return self.session.loop.run_until_complete(coro)

    def _wait_for_ports(self):
        import asyncio

        deadline = time.monotonic() + RESOURCES_TIMEOUT_S
        while True:
            place = self.session.get_place(self.name)
            found = {}
            for (name, cls), resource in self.session.get_target_resources(place).items():
                found[name] = (cls, dict(resource.params), resource.avail)
            waiting = [n for n, (cls, params, avail) in found.items()
                       if not avail or (cls == "NetworkSerialPort" and not params.get("port"))]
            if not found:
                raise RigError("the place matches no resources (labgrid-client add-match)")
            if not waiting:
                return found
            if time.monotonic() > deadline:
                raise RigError("resources %s not available within %g s"
                               % (", ".join(waiting) or "(none matched)", RESOURCES_TIMEOUT_S))
            self._run(asyncio.sleep(0.1))  # the message pump brings the exporter's updates

    def url(self, name):
        entry = self.resources.get(name)
        if entry is None or entry[0] != "NetworkSerialPort":
            raise RigError("labgrid place %s has no NetworkSerialPort named %r (it has: %s)"
                           % (self.name, name, ", ".join("%s %s" % (n, c) for n, (c, _p, _a)
                                                        in sorted(self.resources.items()))))
        params = entry[1]
        # ser2net does not answer SET_CONTROL as pyserial waits for; labgrid's pyserial fork
        # (a labgrid dependency) takes this option, as labgrid's own SerialDriver does.
        return "rfc2217://%s:%d?ign_set_control" % (params["host"], params["port"])

    def params(self, name):
        entry = self.resources.get(name)
        return None if entry is None else entry[1]

    def release(self):
        if self.session is None:
            return
        try:
            if self.acquired:
                self._run(self.session.release())
        except Exception:  # noqa: BLE001 - a place left acquired is the farm's to see
            pass
        finally:
            self.acquired = False
            try:
                self._run(self.session.stop())
                self._run(self.session.close())
            except Exception:  # noqa: BLE001
                pass
            self.session = None


def _one_line(e):
    return " ".join(str(e).split()) or type(e).__name__


class _CrossingWake:
    """The side channel as the link's wake line, releasing the line only after the bytes
    have had CROSSING_S to cross ser2net (see CROSSING_S)."""

    def __init__(self, channel):
        self.channel = channel

    def set_wake(self, asserted):
        if not asserted:
            time.sleep(CROSSING_S)
        self.channel.set_wake(asserted)

    def ready(self):
        return self.channel.ready()

    def wait_ready(self, timeout_s):
        return self.channel.wait_ready(timeout_s)


def labgrid_dut(place_name, seed, centre_config, test_key=None):
    """test_key(board) -> the bench board's test key or None (hil.rig._rig_test_key)."""
    place = LabgridPlace(place_name)
    try:
        control = place.params("control")
        if control is None:
            dut = _bench_dut(place, seed, centre_config, test_key)
        else:
            dut = _emulated_dut(place, control, seed, centre_config)
    except BaseException:
        place.release()
        raise
    dut.labgrid_place = place
    close = dut.close

    def close_and_release():
        try:
            close()
        finally:
            place.release()
    dut.close = close_and_release
    return dut


def _bench_dut(place, seed, centre_config, test_key=None):
    from hil.rig import serial_dut

    board = boards.load("devkitc-bench")
    return serial_dut(board, place.url("console"), place.url("link"), seed, centre_config,
                      test_key=test_key(board) if test_key else None)


def _emulated_dut(place, control, seed, centre_config):
    import serial

    from hil.ptyboard import side_channel_dut
    from hil.strategy import Strategy
    from host import emulate
    from host.transport import open_transport
    from host.transport.sidechannel import RemoteClock, SideChannel

    board = boards.load("pty")
    made = {}
    try:
        made["channel"] = channel = SideChannel(control["path"])
    except OSError as e:
        raise RigError("labgrid place %s: control %s: %s" % (place.name, control["path"], e)) from None

    def fresh():
        channel.command("REFLASH")

    # One REFLASH is the strategy's flash, deploy and provision: the board keeps its image
    # and keys (the seed's) and starts from a blank state.
    strategy = Strategy({"provisioned": fresh})
    try:
        link = made["link"] = open_transport(place.url("link"), timeout_ms=50,
                                             ready_timeout_ms=board.ready_timeout_ms)
        console = made["console"] = serial.serial_for_url(place.url("console"), timeout=0)
        console.reset_input_buffer()
        while link.recv() is not None:  # what the board sent while nobody listened
            pass
        link.timeout_ms = 1000
        strategy.transition("booted")
        clock = RemoteClock(channel)
        link.clock = clock
        if "link_ready" in channel.caps:
            link.wake_line = _CrossingWake(channel)
    except Exception as e:
        for name in ("link", "console", "channel"):
            if name in made:
                made[name].close()
        raise RigError("labgrid place %s: %s" % (place.name, _one_line(e))) from None
    key = emulate.device_key(seed, board.device_id)
    return side_channel_dut(board, link, clock, channel, console, key, strategy, centre_config,
                            _NoProcess(), CROSSING_S)


class _NoProcess:
    """The exporter's board outlives the test: nothing to stop."""

    def close(self):
        pass
