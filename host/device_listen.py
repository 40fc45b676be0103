"""`vigil device --listen pty`: an emulated board whose console and link are two real ptys.

    vigil device --listen pty [--runtime cpython|micropython] [--scenario S] [--seed N]
                 [--device-id N] [--clock real|virtual] [--speed X] [--json]

prints
    console: /dev/pts/5        the REPL/log UART (firmware stdout, as on the board's USB)
    link: /dev/pts/6           the link UART (frames; 115200 baud on the board)
    control: /tmp/.../control  the side channel (host/transport/sidechannel.py)
    key: <32 hex digits>       the device key (key id 0) the board was provisioned with

pyserial, minicom, mpremote and the rig open the ptys like /dev/ttyUSB0. With --clock real
(the default) virtual time follows the wall clock (times --speed); with --clock virtual it
moves only when the side channel says RUN, so the rig's tests are fast and deterministic.
A pty has no modem lines: LINK_WAKE / LINK_READY and the bench stimuli (button relay,
power switch, GNSS and battery simulators) travel on the side channel.

Downlinks: when the firmware drives LINK_READY (docs/LINK.md, the issue-7 firmware; CAPS
says link_ready) the host holds its bytes and does the wake/ready handshake, and the board
feeds what arrives straight into the link UART, so bytes sent to a sleeping board are lost
as on silicon. Older firmware has no ready line: then the emulated link peer holds the
bytes until the device listens (host/emulator/link.py).
"""
import argparse
import errno
import json
import os
import select
import socket
import sys
import tempfile
import time
import tty

LINK_WAKE_PIN = 32   # docs/LINK.md: in, pull-up, active low
LINK_READY_PIN = 27  # docs/LINK.md: out, 1 = listening
_MAX_WAIT_S = 0.05
EN_PULSE_MS = 10  # a reset holds EN low this long (the cut lands when the board next runs)


class UsageError(Exception):
    pass


def _pty():
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


class PtyBoard:
    """One emulated board behind two ptys and a control socket (see the module docstring)."""

    def __init__(self, device_id=1004, seed=0, scenario=None, clock="real", speed=1.0,
                 control_path=None):
        from host.emulator.transport import EmuBoard

        self.clock_mode = clock
        self.speed = speed
        if scenario is not None:
            self.sim, dev = _scenario_device(scenario, seed)
            self.world, self.device = self.sim.world, dev
            from host import emulate
            self.key = emulate.device_key(self.sim.seed, dev.device_id)
        else:
            self.sim = None
            self.board = EmuBoard(device_id, seed)
            self.world, self.device, self.key = self.board.world, self.board.device, self.board.key
        self.raw_link = _has_ready_line(self.device)
        self.device.link.connect(self._on_uplink)
        self.device.on_output(LINK_READY_PIN, self._on_ready)
        self._console_bytes = hasattr(self.device, "on_console")
        if self._console_bytes:  # everything the REPL UART sends, the REPL included
            self.device.on_console(lambda data: self._write(self.console_fd, data, "console"))
        self.console_fd, self._console_slave, self.console_path = _pty()
        self.link_fd, self._link_slave, self.link_path = _pty()
        self._dir = None
        if control_path is None:
            self._dir = tempfile.mkdtemp(prefix="vigil-device-")
            control_path = os.path.join(self._dir, "control")
        self.control_path = control_path
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(control_path)
        self._server.listen(4)
        self._clients = {}  # socket -> bytes buffer
        self._activity = False
        self._log_sent = 0
        self._down = bytearray()
        self.dropped = {"console": 0, "link": 0}
        self._wall0 = time.monotonic()
        self._virt0_ms = self.world.now_ms
        self.running = True

    # ---- board -> host ----------------------------------------------------------------------
    def _on_uplink(self, data, _t_ms):
        self._write(self.link_fd, data, "link")
        self._activity = True

    def _on_ready(self, level):
        self._broadcast("READY %d" % (1 if level else 0))

    def _write(self, fd, data, name):
        try:
            os.write(fd, data)
        except BlockingIOError:  # nobody reads the tty: a UART with no listener loses bytes
            self.dropped[name] += len(data)

    def _pump_console(self):
        if self._console_bytes:
            return
        log = self.device.log
        while self._log_sent < len(log):
            self._write(self.console_fd, (log[self._log_sent][1] + "\r\n").encode(), "console")
            self._log_sent += 1

    def _broadcast(self, line):
        for sock in list(self._clients):
            try:
                sock.sendall(line.encode() + b"\n")
            except OSError:
                self._drop_client(sock)

    # ---- host -> board ----------------------------------------------------------------------
    def _from_link(self, data):
        if self.raw_link:
            self.device.feed_uart(self.device.link.uart_id, data)
            return
        self._down += data
        while True:
            end = self._down.find(b"\x00")
            if end < 0:
                return
            chunk = bytes(self._down[:end + 1])
            del self._down[:end + 1]
            if end:
                self.device.link.send_downlink(chunk)

    def _run_virtual(self, ms):
        self._activity = False
        return self.world.run_until_done(ms, lambda: self._activity, self._pump_console)

    def command(self, line):
        from host.emulator import Route

        words = line.split()
        if not words:
            return "ERR empty command"
        op, args = words[0].upper(), words[1:]
        dev = self.device
        try:
            if op == "CAPS":
                return "CAPS" + (" link_ready" if self.raw_link else "") + " clock_" + self.clock_mode
            if op == "NOW":
                return "T %.3f" % self.world.now_ms
            if op == "RUN":
                if self.clock_mode != "virtual":
                    return "ERR RUN needs --clock virtual"
                active = self._run_virtual(float(args[0]))
                return "T %.3f %s" % (self.world.now_ms, "ACTIVE" if active else "IDLE")
            if op == "WAKE":
                dev.drive_pin(LINK_WAKE_PIN, 0 if args[0] == "1" else None)
            elif op == "PRESS":
                dev.button.hold(float(args[0]))
            elif op == "BATTERY":
                dev.battery.set_soc(float(args[0]))
            elif op == "POWER":
                (dev.power_on if args[0] == "1" else dev.power_cut)()
            elif op == "RESET":
                dev.power_cut()
                self.world.after(EN_PULSE_MS, dev.power_on)
            elif op == "REFLASH":
                self._reflash()
            elif op == "CUT_AFTER_WRITES":
                dev.cut_power_after_flash_writes(int(args[0]))
            elif op == "ROUTE":
                speed_kmh, sky = float(args[0]), args[1] == "1"
                points = [tuple(float(v) for v in p.split(",")) for p in args[2:]]
                now_ms = self.world.now_ms
                dev.gnss.set_route(Route(points, speed_mps=speed_kmh / 3.6, start_ms=now_ms))
                dev.gnss.indoor = [s for s in dev.gnss.indoor if s[1] <= now_ms]
                if not sky:
                    dev.gnss.indoor.append((now_ms, float("inf")))
            elif op == "PULSES":
                pulses = getattr(dev, {"haptic": "haptic", "led": "led"}[args[0]]).pulses(
                    float(args[1]) if len(args) > 1 else 0.0)
                return "PULSES" + "".join(" %.3f:%.3f" % (s, -1 if d is None else d)
                                          for s, d in pulses)
            else:
                return "ERR unknown command %s" % op
        except (IndexError, ValueError, KeyError) as e:
            return "ERR %s: %s" % (op, " ".join(str(e).split()) or type(e).__name__)
        return "OK"

    def _reflash(self):
        """A fresh board, as a rig's strategy makes one (flash, deploy, provision): power off,
        the image laid out anew (test build and keys as at start), power on. For a board a
        labgrid exporter serves to one test after another."""
        if self.sim is not None:
            raise ValueError("a scenario's board cannot be reflashed")
        from host.deploy import build_image

        dev = self.device
        image = build_image(self.board.files, dev.flash.block_count, dev.flash.block_size)
        dev.power_cut()

        def write_and_power_on():
            flash = dev.flash
            flash.context.buffer[:] = image
            flash._files.clear()
            flash._fs = None
            dev.power_on()
        self.world.after(EN_PULSE_MS, write_and_power_on)

    def _drop_client(self, sock):
        self._clients.pop(sock, None)
        sock.close()

    # ---- the loop ---------------------------------------------------------------------------
    def serve(self, until=None):
        while self.running and (until is None or not until()):
            timeout = _MAX_WAIT_S
            if self.clock_mode == "real":
                self._run_real_time()
                nxt = self.world.next_event_us()
                if nxt is not None:
                    due_s = (nxt / 1000 - self._virt_target_ms()) / 1000 / self.speed
                    timeout = max(0.0, min(timeout, due_s))
            else:
                timeout = 1.0
            fds = [self._server, self.link_fd, self.console_fd] + list(self._clients)
            readable, _, _ = select.select(fds, [], [], timeout)
            for fd in readable:
                if fd is self._server:
                    sock, _ = self._server.accept()
                    self._clients[sock] = b""
                elif fd == self.link_fd:
                    self._from_link(_read(self.link_fd))
                elif fd == self.console_fd:
                    data = _read(self.console_fd)
                    if data and self._console_bytes:
                        self.device.console_in(data)  # typed into the REPL UART
                else:
                    self._serve_client(fd)

    def _virt_target_ms(self):
        return self._virt0_ms + (time.monotonic() - self._wall0) * 1000 * self.speed

    def _run_real_time(self):
        self.world.run_until(max(self.world.now_ms, self._virt_target_ms()))
        self._pump_console()

    def _serve_client(self, sock):
        try:
            chunk = sock.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            self._drop_client(sock)
            return
        buf = self._clients[sock] + chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            reply = self.command(line.decode("utf-8", "replace").strip())
            try:
                sock.sendall(reply.encode() + b"\n")
            except OSError:
                self._drop_client(sock)
                return
        self._clients[sock] = buf

    def close(self):
        self.running = False
        for sock in list(self._clients):
            sock.close()
        self._server.close()
        for fd in (self.console_fd, self._console_slave, self.link_fd, self._link_slave):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.unlink(self.control_path)
            if self._dir:
                os.rmdir(self._dir)
        except OSError:
            pass
        (self.sim or self.board).close()


def _read(fd):
    try:
        return os.read(fd, 65536)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EIO):  # EIO: nobody has the slave open
            return b""
        raise


def _has_ready_line(device):
    """Does the deployed firmware drive LINK_READY (docs/LINK.md)? The board's image is
    laid out from this checkout (host.deploy), so its pin table says."""
    from host import emulate

    return b"LINK_READY" in (emulate.REPO / "firmware" / "pins.py").read_bytes()


def _scenario_device(name, seed):
    from host import emulate
    from host import scenario as scenarios

    sc = scenarios.load(name)
    sim = emulate.ScenarioRun(sc, seed)
    device_id = sc["device"][0]["id"]
    return sim, sim.devices[device_id]


def main(argv):
    parser = argparse.ArgumentParser(prog="vigil device",
                                     description="an emulated board on two ptys (console, link)")
    parser.add_argument("--listen", required=True, help="pty (the only kind so far)")
    parser.add_argument("--runtime", default="cpython", help="cpython | micropython")
    parser.add_argument("--scenario", help="a built-in scenario or TOML file: its first device")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device-id", type=int, default=1004)
    parser.add_argument("--clock", default="real", help="real (paced, --speed x) | virtual")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--control", help="path of the side channel socket (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the paths as one JSON line")
    args = parser.parse_args(argv)
    try:
        if args.listen != "pty":
            raise UsageError("--listen %s: only pty is supported" % args.listen)
        if args.runtime not in ("cpython", "micropython"):
            raise UsageError("--runtime %s: expected cpython or micropython" % args.runtime)
        if args.runtime == "micropython":
            raise UsageError("--runtime micropython: the emulator cannot run the firmware on the "
                             "MicroPython VM yet (that runtime is issue 'vm'); use cpython")
        if args.clock not in ("real", "virtual"):
            raise UsageError("--clock %s: expected real or virtual" % args.clock)
        if args.speed <= 0:
            raise UsageError("--speed must be > 0")
        board = PtyBoard(args.device_id, args.seed, args.scenario, args.clock, args.speed,
                         args.control)
    except UsageError as e:
        print("vigil device: %s" % e, file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # scenario errors are ValueErrors with one line
        print("vigil device: %s" % " ".join(str(e).split()), file=sys.stderr)
        return 2
    info = {"console": board.console_path, "link": board.link_path,
            "control": board.control_path, "key": board.key.hex(),
            "device_id": board.device.device_id}
    if args.json:
        print(json.dumps(info), flush=True)
    else:
        for name in ("console", "link", "control", "key"):
            print("%s: %s" % (name, info[name]), flush=True)
    try:
        board.serve()
    except KeyboardInterrupt:
        pass
    finally:
        board.close()
    return 0
