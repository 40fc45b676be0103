"""The emulated BLE host's addresses and our IRK: the public identity, the resolvable private
address NimBLE rotates, and load_irk's question to the IRQ handler at the stack's sync. A
mixin of host/emulator/ble.py's BleHost (its state: device, controller, addr_mode, irk, ...);
the rules are cited in docs/HARDWARE.md "## bluetooth" (Addresses, Our IRK).
"""
import hashlib

from bumble import hci

# IRQ event codes of the secret exchange (extmod/modbluetooth.h)
IRQ_GET_SECRET = 29
IRQ_SET_SECRET = 30
# load_irk (extmod/nimble/modbluetooth_nimble.c): the IRK is asked of the IRQ handler as secret
# type 10 under the key b"irk"; a handler that cannot store it leaves NimBLE's built-in IRK,
# the same on every device (apache/mynewt-nimble nimble/host/src/ble_hs_pvcy.c), with which
# anyone resolves the "private" address.
SECRET_TYPE_OUR_IRK = 10
NIMBLE_DEFAULT_IRK = bytes.fromhex("ef8de2164fec430dbf5bdd34c0531eb8")
RPA_TIMEOUT_S = 900          # ESP-IDF CONFIG_BT_NIMBLE_RPA_TIMEOUT default


class BleAddresses:
    def _current_address_bytes(self):
        if self.device is None:
            return self.public_address
        if self.addr_mode == 0:
            return self.public_address
        return bytes(reversed(bytes(self.controller.random_address)))

    def _generated_irk(self):
        # NimBLE's ble_hs_hci_util_rand, made deterministic: the n-th IRK this board generates.
        n = self._irk_generations
        tag = b"irk|%s" % str(self.dev.device_id).encode() + (b"|%d" % n if n else b"")
        return hashlib.sha256(tag).digest()[:16]

    def _load_irk(self):
        """load_irk at the stack's sync (during active(True)): the handler registered before
        active(True) is asked for the stored IRK; failing that a fresh one is offered for
        storing; a handler that stores nothing leaves NimBLE's default IRK."""
        key = b"irk"
        if self.irq is not None:
            stored = self._call_handler(IRQ_GET_SECRET, (SECRET_TYPE_OUR_IRK, 0, key))
            if stored is not None and len(stored) == 16:
                self.irk, self.irk_source = bytes(stored), "stored"
                return
            fresh = self._generated_irk()
            self._irk_generations += 1
            if self._call_handler(IRQ_SET_SECRET, (SECRET_TYPE_OUR_IRK, key, fresh)):
                self.irk, self.irk_source = fresh, "generated"
                return
        self.irk, self.irk_source = NIMBLE_DEFAULT_IRK, "nimble-default"

    def _rotate_rpa(self, controller, epoch):
        """The controller's RPA timer: a new resolvable private address every
        CONFIG_BT_NIMBLE_RPA_TIMEOUT while the stack is up, on air at once."""
        if controller is not self.controller or self.addr_mode != 2 or epoch != self._rpa_epoch:
            return
        if self.connections:
            # A new RPA is for the next advertising; a connection keeps its access address.
            # (bumble's LocalLink routes by address, so it must not change under a link.)
            self._rpa_due = True
            return
        self._apply_address()
        if self.advertising is not None and not self.connections:
            adv = self.advertising[1]
            self.adv_log.append((self.world.now_ms, adv, self._current_address_bytes()))
            self._on_loop(self._restart_advertising())

    async def _restart_advertising(self):
        await self._stop_advertising()
        await self._start_advertising()

    def _apply_address(self):
        if self.device is None or self.addr_mode == 0:
            return
        rng = self.dev.world.rng(self.dev.device_id, "ble-addr", self.world.now_us)
        raw = bytearray(rng.getrandbits(8) for _ in range(6))   # little-endian, as bumble
        if self.addr_mode == 1:
            raw[5] |= 0xC0               # static random
        elif self.addr_mode == 2:
            # Resolvable private: prand (top bits 01) and hash = ah(IRK, prand) (Core spec
            # Vol 6 Part B 1.3.2.2), so a central holding the IRK finds the device.
            from bumble.crypto import ah
            prand = bytes(raw[3:5]) + bytes([(raw[5] & 0x3F) | 0x40])
            raw = bytearray(ah(self.irk, prand) + prand)
        else:
            raw[5] &= 0x3F               # non-resolvable private
        address = hci.Address(bytes(raw), hci.Address.RANDOM_DEVICE_ADDRESS)
        # bumble's Device programs its random_address into the controller when advertising
        # starts; NimBLE does the same with the RPA it generated.
        self.device.random_address = address
        self.controller.random_address = address
        if self.addr_mode == 2:
            ble = self.dev.profile.get("ble", {})
            period_ms = int(ble.get("rpa_timeout_s", RPA_TIMEOUT_S) * 1000)
            self._rpa_epoch += 1         # one timer: a later addr_mode=2 restarts it
            self.world.after(period_ms, self._rotate_rpa, self.controller, self._rpa_epoch)
