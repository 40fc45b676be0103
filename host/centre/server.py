"""The centre's network side: one asyncio loop serves every link.

    server = CentreServer(centre)
    url = await server.start_tcp("tcp://127.0.0.1:0")   # any number of links
    server.add_listener(listen("pty://"))                # pty, serial: a reader thread each
    await server.run(stop)                               # until the asyncio.Event `stop` is set

Why asyncio: the thread-per-link server it replaces used select(), which raises past
FD_SETSIZE (1,024) descriptors; its reader threads then died and their sockets were never
closed. asyncio's default selector on Linux is epoll, which has no such limit, and every link
is a coroutine whose `finally` closes its socket whatever happened. Only the loop thread
touches the Centre (it is not thread-safe); reader threads of pty/serial links hand their
bytes to the loop with call_soon_threadsafe.

A link whose peer stops reading (its send buffer past `max_buffer_bytes`) or whose socket
fails is closed and reported to the Centre (`link_closed`), which writes the link's refusal
counts to the evidence log.
"""
import asyncio
import threading
import time

from host.transport.base import TransportClosed
from host.transport.tcp import parse_host_port


def utc_ms():
    return time.time_ns() // 1_000_000


class CentreServer:
    def __init__(self, centre, clock=utc_ms, on_link=None, max_buffer_bytes=1 << 20,
                 read_bytes=65536, max_tick_wait_s=0.5, min_tick_s=0.01):
        self.centre = centre
        self.clock = clock
        self.on_link = on_link  # on_link("open"|"closed", link_id, peer): for the CLI's lines
        self.max_buffer_bytes = max_buffer_bytes
        self.read_bytes = read_bytes
        self.max_tick_wait_s = max_tick_wait_s
        self.min_tick_s = min_tick_s
        self.links = {}  # link id -> send(wire) callable
        self.opened = 0
        self.closed = 0
        self._servers = []
        self._listeners = []
        self._next_link = 1
        self._loop = None
        self._wake = None
        self._closers = {}  # link id -> close() callable

    # ---- listeners ------------------------------------------------------------------------

    async def start_tcp(self, url, backlog=4096):
        """Listen on tcp://HOST:PORT (PORT 0 picks one); returns the URL with the real port."""
        self._bind_loop()
        host, port = parse_host_port(url, allow_zero=True)
        server = await asyncio.start_server(self._tcp_link, host, port, backlog=backlog)
        self._servers.append(server)
        return "tcp://%s:%d" % (host, server.sockets[0].getsockname()[1])

    def add_listener(self, listener):
        """A host.transport listener (pty://, serial://, ...): a thread accepts its links and
        one reader thread per link feeds the loop."""
        self._bind_loop()
        self._listeners.append(listener)
        threading.Thread(target=self._accept_thread, args=(listener,), daemon=True).start()

    def _bind_loop(self):
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()

    def _new_link_id(self):
        with _ID_LOCK:  # accept threads allocate ids too
            link_id = "link%d" % self._next_link
            self._next_link += 1
        return link_id

    # ---- TCP links --------------------------------------------------------------------------

    async def _tcp_link(self, reader, writer):
        link_id = self._new_link_id()
        peer = writer.get_extra_info("peername")
        peer = "tcp://%s:%d" % peer[:2] if peer else "tcp://?"

        def send(wire):
            if writer.is_closing():
                return False
            if writer.transport.get_write_buffer_size() > self.max_buffer_bytes:
                writer.close()  # the peer does not read: a failed link
                return False
            writer.write(wire)
            return True

        self._open(link_id, peer, send, writer.close)
        try:
            while True:
                data = await reader.read(self.read_bytes)
                if not data:
                    break
                self._data(link_id, data)
        except (ConnectionError, OSError):
            pass
        finally:
            self._closed(link_id)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    # ---- thread-fed links (pty, serial) -----------------------------------------------------

    def _accept_thread(self, listener):
        while True:
            try:
                transport = listener.accept(timeout_ms=None)
            except (OSError, ValueError):
                return
            if transport is None:
                return
            link_id = self._new_link_id()

            def send(wire, transport=transport):
                try:
                    transport.send(wire)
                    return True
                except (TransportClosed, OSError):
                    return False

            self._loop.call_soon_threadsafe(self._open, link_id, transport.url, send,
                                            transport.close)
            threading.Thread(target=self._read_thread, args=(link_id, transport),
                             daemon=True).start()

    def _read_thread(self, link_id, transport):
        while True:
            try:
                data = transport.recv(timeout_ms=None)
            except OSError:
                self._loop.call_soon_threadsafe(self._closed, link_id)
                return
            if data:
                self._loop.call_soon_threadsafe(self._data, link_id, data)

    # ---- the loop side ------------------------------------------------------------------------

    def _open(self, link_id, peer, send, close):
        self.links[link_id] = send
        self._closers[link_id] = close
        self.opened += 1
        if self.on_link is not None:
            self.on_link("open", link_id, peer)

    def _closed(self, link_id):
        if self.links.pop(link_id, None) is None:
            return
        self._closers.pop(link_id, None)
        self.closed += 1
        self.centre.link_closed(link_id, self.clock())
        if self.on_link is not None:
            self.on_link("closed", link_id, None)

    def _data(self, link_id, data):
        if link_id not in self.links:
            return
        for wire in self.centre.receive(link_id, data, self.clock()):
            self._send(link_id, wire)
        self._wake.set()  # the centre may have a new, earlier deadline

    def _send(self, link_id, wire):
        send = self.links.get(link_id)
        if send is None:
            return  # the link went away; the centre retries when the device is heard again
        if not send(wire):
            close = self._closers.get(link_id)
            self._closed(link_id)
            if close is not None:
                close()

    async def run(self, stop):
        """Run the centre's timers until `stop` (an asyncio.Event) is set."""
        self._bind_loop()
        while not stop.is_set():
            now_ms = self.clock()
            for link_id, wire in self.centre.tick(now_ms):
                self._send(link_id, wire)
            deadline = self.centre.next_deadline_ms()
            wait_s = self.max_tick_wait_s if deadline is None else min(
                self.max_tick_wait_s, max(0.0, (deadline - self.clock()) / 1000))
            self._wake.clear()
            waits = [asyncio.ensure_future(self._wake.wait()),
                     asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
            # A tick scans every device; under a burst of input, tick at most every
            # min_tick_s instead of once per read (replies to input go out at once anyway).
            await asyncio.sleep(self.min_tick_s)

    async def close(self):
        for server in self._servers:
            server.close()
        for listener in self._listeners:
            listener.close()
        for link_id, close in list(self._closers.items()):
            close()
            self._closed(link_id)
        for server in self._servers:
            await server.wait_closed()
        await asyncio.sleep(0)  # let the link coroutines run their finally blocks


_ID_LOCK = threading.Lock()
