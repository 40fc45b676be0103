"""Protocol frames over the link UART (serial or USB bridge; BLE in a later issue).

    link = Link(uart, receiver, log=print)
    link.write(frame_bytes)
    link.poll() -> [Frame, ...]       drains the UART; bad frames are logged and dropped
    link.duplicates -> [Frame, ...]   authentic repeats seen by the last poll: the centre
                                      did not get our ACK, so they are acked again (SPEC:
                                      duplicates are acked but delivered once)

Log text printed on the same UART sits between frames; the deframer resyncs at each 0x00.
"""


class Link:
    # The peer can wake the device (LINK_WAKE, docs/LINK.md); config `wake_line` says
    # whether this board has it wired.
    has_wake_line = True

    def __init__(self, uart, receiver, log=None):
        self.uart = uart
        self.receiver = receiver
        self.log = log
        self._buf = bytearray(256)                # one read from the UART
        self.frames_in = 0
        self.errors_in = 0
        self.duplicates = []

    def write(self, frame):
        # A leading delimiter ends any log text that did not end in 0x00, so the text
        # cannot swallow this frame at the receiver (SPEC 2.3).
        self.uart.write(b"\x00")
        self.uart.write(frame)

    def poll(self):
        frames = []
        self.duplicates = []
        uart = self.uart
        while uart.any():
            n = uart.readinto(self._buf)
            if not n:
                break
            receive(self, bytes(self._buf[:n]), frames, "link")
        return frames


def receive(link, data, frames, name):
    """Feed `data` to `link.receiver`: new frames go to `frames`, authentic repeats to
    `link.duplicates` (acked again, delivered once), refusals are counted and logged.
    Shared by the UART link and the BLE link (firmware/ble.py)."""
    for item in link.receiver.feed(data):
        if hasattr(item, "fields"):
            frames.append(item)
            link.frames_in += 1
        elif getattr(item, "frame", None) is not None:
            link.duplicates.append(item.frame)
        else:
            link.errors_in += 1
            if link.log:
                link.log("%s: dropped frame: %s" % (name, item))
