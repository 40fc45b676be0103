"""The virtual BLE radio: bumble controllers on one LocalLink, on an asyncio loop whose clock is
the World's virtual clock.

The key decision (docs/HARDWARE.md, "## bluetooth"): bumble is asyncio, the emulator is a
plain heap of virtual-time events, and virtual time must stay the only time. So bumble runs
on `VirtualLoop`, an asyncio loop whose `time()` is `world.now_us` and whose selector never
blocks. The World is the master: the loop never runs on its own. `Radio.step()` runs the
loop's ready callbacks at the current virtual time (one `stop(); run_forever()` pass each,
asyncio's public way to run one iteration) and puts the loop's next timer on the World's heap.
Anything that hands the loop work from outside (the firmware thread calling
`bluetooth.BLE.gatts_notify`, which runs under the device's baton while the loop is idle)
calls `kick()`, which puts a step at "now" on the heap. Central-side code (bleak on the bumble
backend, tests) runs as a task on the same loop through `run(coro, timeout_ms)`, which runs
the World until the task is done. Nothing waits in real time: a scan, a connection, an MTU
exchange and a notify take virtual milliseconds and wall microseconds, and a run is the same
for the same seed.

    radio = Radio(world)
    central = radio.add_central("C0:00:00:00:00:01")     # a bumble Device, powered on
    result = radio.run(some_coroutine(), timeout_ms=5000)
    radio.block(controller) / radio.unblock(controller)   # out of range: PDUs both ways lost
"""
import asyncio
import math
import selectors

from bumble import hci
from bumble.controller import Controller
from bumble.device import Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from .world import EmulatorError


class _NoWaitSelector(selectors.SelectSelector):
    """The loop's only file descriptor is its own self-pipe: never block on it. Waiting is
    the World's job (it jumps virtual time to the loop's next timer)."""

    def select(self, timeout=None):
        return super().select(0)


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock_s):
        super().__init__(_NoWaitSelector())
        self._clock_s = clock_s

    def time(self):
        return self._clock_s()

    def has_ready(self):
        # asyncio keeps ready callbacks in _ready; there is no public accessor.
        return bool(self._ready)  # type: ignore[attr-defined]

    def next_timer_s(self):
        # The earliest timer (possibly cancelled: a spurious step is harmless, and asyncio
        # drops cancelled timers from the heap's head in that step).
        scheduled = self._scheduled  # type: ignore[attr-defined]
        return scheduled[0].when() if scheduled else None


class _GatedLink(LocalLink):
    """A LocalLink on which a controller can be out of range: every PDU from or to it is lost."""

    def __init__(self):
        super().__init__()
        self.blocked = set()

    def send_advertising_pdu(self, sender_controller, packet):
        if sender_controller in self.blocked:
            return
        loop = asyncio.get_running_loop()
        for c in self.controllers:
            if c != sender_controller and c not in self.blocked:
                loop.call_soon(c.on_ll_advertising_pdu, packet)

    def send_acl_data(self, sender_controller, destination_address, transport, data):
        target = self.find_le_controller(destination_address)
        if sender_controller in self.blocked or target in self.blocked:
            return
        super().send_acl_data(sender_controller, destination_address, transport, data)


class Radio:
    """One virtual 2.4 GHz band per World (`world.radio`, made on first use)."""

    _MAX_PASSES = 10000  # callbacks that keep rescheduling at "now" would never end

    def __init__(self, world):
        self.world = world
        self.loop = VirtualLoop(lambda: world.now_us / 1e6)
        self.link = _GatedLink()
        self._armed_us = None
        self._stepping = False
        self.controllers = {}             # central Device -> its Controller
        self._n = 0

    # --- driving the loop from the World -----------------------------------------------
    def kick(self):
        """Work was handed to the loop from outside: step it at the current virtual time."""
        self._arm(self.world.now_us)

    def _arm(self, t_us):
        if self._armed_us is not None and self._armed_us <= t_us and self._armed_us >= self.world.now_us:
            return
        self._armed_us = t_us
        self.world.at_us(t_us, self._on_event, t_us)

    def _on_event(self, t_us):
        if self._armed_us == t_us:
            self._armed_us = None
        self.step()

    def step(self):
        """Run every loop callback due now, then arm the World for the loop's next timer."""
        if self._stepping:
            return
        self._stepping = True
        loop = self.loop
        try:
            for _ in range(self._MAX_PASSES):
                loop.stop()
                loop.run_forever()
                if not loop.has_ready():
                    nxt = loop.next_timer_s()
                    if nxt is None or nxt * 1e6 > self.world.now_us:
                        break
            else:
                raise EmulatorError("the BLE radio loop never settled at t=%d us" % self.world.now_us)
        finally:
            self._stepping = False
        nxt = loop.next_timer_s()
        if nxt is not None:
            self._arm(max(self.world.now_us, int(math.ceil(nxt * 1e6))))

    def run(self, coro, timeout_ms=10000):
        """Run a coroutine on the radio loop, letting the World run (virtual time passes)
        until it finishes; its result, or its exception. TimeoutError after timeout_ms of
        virtual time."""
        task = self.loop.create_task(coro)
        self.kick()
        world = self.world
        if timeout_ms is None:
            timeout_ms = 10 * 24 * 3600 * 1000
        deadline_us = world.now_us + int(timeout_ms * 1000)
        while not task.done():
            nxt = world.next_event_us()
            if nxt is None or nxt > deadline_us:
                world.run_until(deadline_us / 1000)
                if not task.done():
                    task.cancel()
                    self.step()
                    raise TimeoutError("no result within %d ms of virtual time" % timeout_ms)
                break
            world.run_until(nxt / 1000)
        return task.result()

    def clock_s(self):
        """The runner clock for host/transport/ble.py: virtual seconds."""
        return self.world.now_us / 1e6

    # --- devices ---------------------------------------------------------------------------
    def new_device(self, name, address):
        """A bumble Device on a fresh controller on this radio (not powered on yet)."""
        async def make():  # bumble's constructors need the running loop
            controller = Controller(name, link=self.link, public_address=address)
            host = Host(controller, AsyncPipeSink(controller))
            return controller, Device(name=name, address=hci.Address(address), host=host)
        return self.run(make(), timeout_ms=1000)

    def add_central(self, address="C0:00:00:00:00:01", name="central"):
        controller, device = self.new_device(name, address)
        self.run(device.power_on(), timeout_ms=1000)
        self.controllers[device] = controller
        return device

    def block(self, controller):
        self.link.blocked.add(controller)

    def unblock(self, controller):
        self.link.blocked.discard(controller)

    def close(self):
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        try:
            self.step()
        except EmulatorError:
            pass
        self.loop.close()


def radio_of(world):
    """The World's radio, made on first use."""
    radio = getattr(world, "radio", None)
    if radio is None:
        radio = world.radio = Radio(world)
    return radio
