"""Protocol frames over the link UART (serial or USB bridge; firmware/ble.py is the other link).

    link = Link(uart)
    link.write(frame_bytes)
    link.poll() -> [bytes, ...]       what the UART received since the last poll, as read;
                                      the app deframes and opens it (App.step)

A link only moves bytes: the same receiver opens what either link brings. Log text printed on
the same UART sits between frames; the deframer resyncs at each 0x00.
"""


class Link:
    # The peer can wake the device (LINK_WAKE, docs/LINK.md); config `wake_line` says
    # whether this board has it wired.
    has_wake_line = True

    def __init__(self, uart):
        self.uart = uart
        self._buf = bytearray(256)                # one read from the UART

    def write(self, frame):
        # A leading delimiter ends any log text that did not end in 0x00, so the text
        # cannot swallow this frame at the receiver (SPEC 2.3).
        self.uart.write(b"\x00")
        self.uart.write(frame)

    def poll(self):
        received = []
        uart = self.uart
        while uart.any():
            n = uart.readinto(self._buf)
            if not n:
                break
            received.append(bytes(self._buf[:n]))
        return received
