"""The emulated ESP32's UARTs: the REPL on UART0, IDF-driver UARTs on 1 and 2, bytes that
take their baud-rate time to leave, RX lost while the chip cannot hear, TX paused by light
sleep. The rules and their sources are in docs/HARDWARE.md ("UART").

`UartBus` is a mixin of `EmulatedDevice`; peers (the link, the GNSS receiver) attach with
`attach_uart(uart_id, on_tx)` and send with `feed_uart(uart_id, data)`.
"""
import collections
import math

REPL_UART_ID = 0
_UART_IDS = (0, 1, 2)
_FIFO_BYTES = 128          # SOC_UART_FIFO_LEN: the hardware FIFO in front of the driver's ring
_DEFAULT_BUF = 256         # machine_uart.c: txbuf/rxbuf of a freshly initialised UART
_REPL_STDIN_BYTES = 256    # the REPL's stdin ring buffer (ports/esp32 uart.c, stdin_ringbuf)
_BITS_PER_BYTE = 10        # 8N1: start, 8 data, stop
_CTRL_C = 0x03
_AWAKE_STATES = ("run", "wait", "idle", "repl")


def take(rx, n):
    """Up to n bytes (n < 0: all) from the front of an RX buffer."""
    if n < 0 or n >= len(rx):
        data = bytes(rx)
        rx.clear()
    else:
        data = bytes(rx[:n])
        del rx[:n]
    return data


class UartState:
    def __init__(self, uart_id):
        self.uart_id = uart_id
        self.open = uart_id == REPL_UART_ID
        self.baudrate = 115200
        self.capacity = _REPL_STDIN_BYTES if uart_id == REPL_UART_ID else _DEFAULT_BUF
        self.txbuf = _DEFAULT_BUF
        self.rx = bytearray()
        self.overflow_bytes = 0
        self.rx_bytes = 0
        self.rx_lost_bytes = 0       # arrived while the chip could not hear (sleep, boot, off)
        self.tx_bytes = 0
        self.tx_lost_bytes = 0       # cut off by a reset before they left
        self.tx_busy_until_us = 0
        self.tx_pending = collections.deque()   # [done_us, bytes], oldest first
        self.tx_gen = 0

    def byte_us(self):
        return _BITS_PER_BYTE * 1_000_000 / self.baudrate

    def feed(self, data):
        """Bytes into the RX ring; returns how many did not fit (lost)."""
        space = max(self.capacity - len(self.rx), 0)
        kept = data[:space]
        self.rx += kept
        dropped = len(data) - len(kept)
        self.overflow_bytes += dropped
        self.rx_bytes += len(kept)
        return dropped


class UartBus:
    """UART behaviour of the emulated board (mixin of EmulatedDevice)."""

    def _init_uarts(self):
        self.uarts = {n: UartState(n) for n in _UART_IDS}
        self._uart_peers = {}
        self._tx_paused_at_us = None
        self.kbd_intr_char = _CTRL_C

    def attach_uart(self, uart_id, on_tx):
        """`on_tx(data)` is called with each write's bytes when its last byte has left."""
        self._uart_peers[uart_id] = on_tx

    # --- the outside world -------------------------------------------------------------
    def feed_uart(self, uart_id, data):
        """Bytes arriving on a UART's RX line now. Returns how many were lost: all of them
        while the chip cannot hear (light or deep sleep, boot, off) or no driver is open,
        else what overflows the RX ring."""
        u = self.uarts[uart_id]
        if self._state not in _AWAKE_STATES or not u.open:
            u.rx_lost_bytes += len(data)
            self.world.record(self.device_id, "uart_rx_lost", "%d:%d %s" % (
                uart_id, len(data), self._state))
            return len(data)
        if uart_id == REPL_UART_ID:
            return self._repl_input(u, data)
        dropped = u.feed(data)
        if dropped:
            self.world.record(self.device_id, "uart_overflow", "%d:%d" % (uart_id, dropped))
        if self._state == "idle":
            self._wake(-1)
        return dropped

    def _repl_input(self, u, data):
        """UART0 belongs to the REPL: a Ctrl-C raises KeyboardInterrupt in running code
        (mp_sched_keyboard_interrupt), anything else waits in the REPL's stdin buffer."""
        if self.kbd_intr_char >= 0 and self.kbd_intr_char in data and not self._at_repl \
                and self._interrupt is None:
            data = data.replace(bytes([self.kbd_intr_char]), b"")
            self._interrupt_with(KeyboardInterrupt())
        dropped = u.feed(data)
        if self._state in ("idle", "repl"):
            self._wake(-1)
        return dropped

    # --- the bus (firmware thread) -----------------------------------------------------
    def bus_uart_init(self, uart_id, baudrate, rxbuf=-1, txbuf=-1):
        if uart_id not in self.uarts:
            raise ValueError("UART(%d) does not exist" % uart_id)
        u = self.uarts[uart_id]
        if uart_id == REPL_UART_ID:
            # machine_uart.c, uart_is_repl: no IDF driver, fixed buffers.
            if (rxbuf >= 0 and rxbuf != _DEFAULT_BUF) or (txbuf >= 0 and txbuf != _DEFAULT_BUF):
                raise ValueError("REPL UART buffer size is fixed")
            u.baudrate = baudrate
            return
        if not u.open:
            u.capacity = _DEFAULT_BUF
            u.txbuf = _DEFAULT_BUF
        if rxbuf >= 0:
            u.capacity = rxbuf
        if txbuf >= 0:
            u.txbuf = txbuf
        # uart_driver_install: the RX ring must be larger than the FIFO; the TX ring is 0
        # (write blocks) or larger than the FIFO. check_esp_err turns the refusal into OSError.
        # (mpy/machine.py raises the port's OSError for buffers not above the 128-byte FIFO.)
        u.open = True
        u.baudrate = baudrate
        del u.rx[u.capacity:]

    def bus_uart_deinit(self, uart_id):
        if uart_id != REPL_UART_ID:
            self.uarts[uart_id].open = False

    def _driver(self, uart_id):
        self._guard()
        if uart_id == REPL_UART_ID:
            # No driver on the REPL UART: uart_get_buffered_data_len and friends fail, and
            # check_esp_err raises.
            raise OSError("ESP_FAIL: UART0 is the REPL and has no driver")
        u = self.uarts[uart_id]
        if not u.open:
            raise OSError("ESP_FAIL: UART%d driver not installed" % uart_id)
        return u

    def bus_uart_any(self, uart_id):
        u = self._driver(uart_id)
        self._spin(10)
        return len(u.rx)

    def bus_uart_read(self, uart_id, n):
        return take(self._driver(uart_id).rx, n)

    def bus_uart_readline(self, uart_id):
        rx = self._driver(uart_id).rx
        end = rx.find(b"\n")
        n = len(rx) if end < 0 else end + 1
        data = bytes(rx[:n])
        del rx[:n]
        return data

    def bus_uart_write(self, uart_id, data):
        u = self._driver(uart_id)
        if not data:
            return 0
        world = self.world
        now = world.now_us
        byte_us = u.byte_us()
        done = math.ceil(max(now, u.tx_busy_until_us) + len(data) * byte_us)
        u.tx_busy_until_us = done
        u.tx_pending.append([done, bytes(data)])
        u.tx_bytes += len(data)
        self._schedule_tx(u)
        # uart_write_bytes returns once the bytes are in the TX ring (or, with txbuf=0, in
        # the FIFO): it blocks while more than the ring and FIFO hold is still to leave.
        room_us = (u.txbuf + _FIFO_BYTES) * byte_us
        if done - now > room_us:
            self._wait(math.ceil(done - room_us), "wait")
        return len(data)

    def bus_uart_flush(self, uart_id):
        """uart.flush(): wait until the last byte has left (uart_wait_tx_done)."""
        u = self._driver(uart_id)
        if u.tx_pending:
            self._wait(int(u.tx_pending[-1][0]) + 1, "wait")

    def bus_uart_txdone(self, uart_id):
        u = self._driver(uart_id)
        return not u.tx_pending

    def bus_uart_irq(self, uart_id):
        if uart_id == REPL_UART_ID:
            raise ValueError("REPL UART does not support IRQs")

    # --- transmission ------------------------------------------------------------------
    def _schedule_tx(self, u):
        if u.tx_pending:
            self.world.at_us(u.tx_pending[0][0], self._tx_pump, (u.uart_id, u.tx_gen))

    def _tx_pump(self, key):
        uart_id, gen = key
        u = self.uarts[uart_id]
        if gen != u.tx_gen or self._tx_paused_at_us is not None:
            return
        now = self.world.now_us
        peer = self._uart_peers.get(uart_id)
        while u.tx_pending and u.tx_pending[0][0] <= now:
            _, data = u.tx_pending.popleft()
            if peer is not None:
                peer(data)
        self._schedule_tx(u)

    def _pause_tx(self):
        """Light sleep gates the UART clocks: what is still to send waits for the wake
        (ESP-IDF sleep_modes.c suspend_uarts / resume_uarts)."""
        self._tx_paused_at_us = self.world.now_us
        for u in self.uarts.values():
            u.tx_gen += 1

    def _resume_tx(self):
        start = self._tx_paused_at_us
        self._tx_paused_at_us = None
        if start is None:
            return
        slept = self.world.now_us - start
        for u in self.uarts.values():
            for chunk in u.tx_pending:
                if chunk[0] > start:
                    chunk[0] += slept
            if u.tx_busy_until_us > start:
                u.tx_busy_until_us += slept
            self._schedule_tx(u)

    def _drain_fifo_for_deep_sleep(self):
        """esp_deep_sleep_start waits for each UART's FIFO to empty (flush_uarts), so up to
        128 bytes still leave; the rest of the driver's ring is lost with the reset."""
        for u in self.uarts.values():
            kept, room = collections.deque(), _FIFO_BYTES
            for done, data in u.tx_pending:
                if room <= 0:
                    u.tx_lost_bytes += len(data)
                    continue
                kept.append([done, data[:room]])
                u.tx_lost_bytes += max(0, len(data) - room)
                room -= len(data)
            u.tx_pending = kept
            peer = self._uart_peers.get(u.uart_id)
            for _, data in kept:       # they leave before the chip powers down
                if peer is not None:
                    peer(data)
            u.tx_pending = collections.deque()
            u.tx_gen += 1

    def _reset_uarts(self):
        """A reset stops every driver; bytes not yet sent are lost."""
        for u in self.uarts.values():
            lost = sum(len(d) for _, d in u.tx_pending)
            u.tx_lost_bytes += lost
            u.tx_pending = collections.deque()
            u.tx_busy_until_us = 0
            u.tx_gen += 1
            u.open = u.uart_id == REPL_UART_ID
            u.rx = bytearray()
        self._tx_paused_at_us = None
