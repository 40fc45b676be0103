"""--vigil-board=pty: `vigil device --listen pty --clock virtual` in a child process, reached
only through its two ptys (pyserial, like /dev/ttyUSB0) and its side channel. The same
frames cross a real tty as on a bench board; the clock is the board's virtual clock, stepped
over the side channel, so the suite is as fast as on emu.
"""
import json
import os
import subprocess
import sys

from hil import board as boards
from hil import drivers as drv
from hil.dut import Dut
from hil.strategy import Strategy

START_TIMEOUT_S = 60
# A key typed on the console pty reaches the board process asynchronously (the kernel pushes
# pty bytes to the other end from a work queue), while RUN goes over the side channel; on a
# loaded machine the clock could run past the 2 s safe-mode window first.
CONSOLE_SETTLE_S = 0.02


class PtyBoardProcess:
    def __init__(self, seed=0, device_id=1004, scenario=None):
        cmd = [sys.executable, "-m", "host.cli", "device", "--listen", "pty", "--clock",
               "virtual", "--json", "--seed", str(seed), "--device-id", str(device_id)]
        if scenario:
            cmd += ["--scenario", scenario]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
            self.proc.wait()
            raise RuntimeError("vigil device did not start: %s" % (err[-1] if err else "no output"))
        self.info = json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()


def pty_dut(seed, centre_config, board_options):
    import serial

    from host.transport import open_transport
    from host.transport.sidechannel import RemoteClock, SideChannel

    board = boards.load("pty")
    made = {}

    def boot():
        made["proc"] = PtyBoardProcess(seed, board.device_id)

    strategy = Strategy({"booted": boot})  # the child deploys and provisions its own image
    strategy.transition("booted")
    proc = made["proc"]
    try:
        channel = SideChannel(proc.info["control"])
        link = open_transport("serial://" + proc.info["link"], timeout_ms=1000,
                              ready_timeout_ms=board.ready_timeout_ms)
        clock = RemoteClock(channel)
        link.clock = clock
        if "link_ready" in channel.caps:
            link.wake_line = channel
        console = serial.Serial(proc.info["console"], timeout=0)
    except Exception:
        proc.close()
        raise
    key = bytes.fromhex(proc.info["key"])
    return side_channel_dut(board, link, clock, channel, console, key, strategy, centre_config,
                            proc, CONSOLE_SETTLE_S)


def side_channel_dut(board, link, clock, channel, console, key, strategy, centre_config,
                     process, settle_s):
    """A Dut whose stimuli go through an emulated board's side channel (a pty board here, the
    same board behind a labgrid exporter), linked once its first HELLO arrives."""
    from hil.rig import HELLO_TIMEOUT_MS, UTC0_MS, centre_for  # hil.rig imports this module

    drivers = {"button": drv.SideButton(channel), "gps": drv.SideGps(channel),
               "battery": drv.SideBattery(channel), "power": drv.SidePower(channel),
               "console": drv.SerialConsole(console, settle_s=settle_s),
               "outputs": SideOutputs(channel)}
    dut = PtyDut(board, link, clock, centre_for(board.device_id, key, **centre_config), drivers,
                 board.device_id, key, UTC0_MS, strategy)
    dut.process, dut.channel, dut.console_port = process, channel, console
    strategy.steps["linked"] = lambda: dut.expect("HELLO", timeout=HELLO_TIMEOUT_MS)
    strategy.transition("linked")
    return dut


class SideOutputs:
    def __init__(self, channel):
        self.channel = channel

    def pulses(self, name, since_ms=0):
        reply = self.channel.command("PULSES %s %.3f" % (name, since_ms))
        out = []
        for item in reply.split()[1:]:
            start, duration = item.split(":")
            out.append((float(start), None if float(duration) < 0 else float(duration)))
        return out


class PtyDut(Dut):
    def close(self):
        try:
            super().close()
            self.console_port.close()
            self.channel.close()
        finally:
            self.process.close()
