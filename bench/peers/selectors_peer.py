"""The floor: a hand-written callback loop on `selectors` (epoll), pure
Python, no library. Non-blocking sockets, an input buffer and an output
buffer per connection; output written during one loop iteration is sent with
one send() per connection at its end. "Tasks" in the microbenchmarks are
callbacks: no stacks, so this is what scheduling costs with nothing to switch.
"""

import selectors
import socket
from collections import deque
from functools import partial
from time import perf_counter

from bench.peers import common


class Loop:
    """One iteration: run the callbacks ready when it began, wait for I/O (not
    at all if callbacks are pending), dispatch it, flush written connections."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.ready = deque()
        self.written = []  # connections with output appended this iteration
        self.turn_end = []  # called at the end of each iteration, before the flush

    def call_soon(self, fn, *args):
        self.ready.append((fn, args))

    def run(self, until=None):
        ready, select = self.ready, self.selector.select
        while True:
            for _ in range(len(ready)):
                fn, args = ready.popleft()
                fn(*args)
            if until is not None and until():
                return
            for key, mask in select(0 if ready else None):
                key.data(mask)
            for fn in self.turn_end:
                fn()
            if self.written:
                written, self.written = self.written, []
                for conn in written:
                    conn.flush()


class Connection:
    def __init__(self, loop, sock, server):
        sock.setblocking(False)
        self.loop = loop
        self.sock = sock
        self.server = server
        self.partial = b""  # the start of an incomplete input line
        self.out = bytearray()
        self.queued = False  # in loop.written
        self.writing = False  # EVENT_WRITE registered
        self.closed = False
        self.handle = None  # chat: set once logged in
        loop.selector.register(sock, selectors.EVENT_READ, self.on_event)

    def on_event(self, mask):
        if self.closed:
            return
        if mask & selectors.EVENT_READ:
            self.on_readable()
        if mask & selectors.EVENT_WRITE and not self.closed:
            self.flush()

    def on_readable(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        lines = (self.partial + data if self.partial else data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > common.MAX_LINE:
            self.close()
            return
        on_line = self.server.on_line
        for line in lines:
            if self.closed:
                break
            on_line(self, line)

    def write(self, data):
        """Queue data; it is sent at the end of this loop iteration."""
        if self.closed:
            return
        self.out += data
        if len(self.out) > common.MAX_BACKLOG:
            self.closed = True  # too slow: closed once this broadcast is over
            self.loop.call_soon(self._close)
        elif not self.queued:
            self.queued = True
            self.loop.written.append(self)

    def flush(self):
        self.queued = False
        if self.closed:
            return
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return
        del self.out[:sent]
        if bool(self.out) != self.writing:
            self.writing = not self.writing
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.writing else 0)
            self.loop.selector.modify(self.sock, events, self.on_event)

    def close(self):
        if not self.closed:
            self.closed = True
            self._close()

    def _close(self):
        self.loop.selector.unregister(self.sock)
        self.sock.close()
        self.server.on_close(self)


def listen(loop, port, server):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((common.HOST, port))
    sock.listen(1024)
    sock.setblocking(False)

    def on_accept(_mask):
        while True:
            try:
                client, _address = sock.accept()
            except (BlockingIOError, OSError):  # OSError: EMFILE, try on the next event
                return
            server.on_connect(Connection(loop, client, server))

    loop.selector.register(sock, selectors.EVENT_READ, on_accept)
    loop.run()


class EchoServer:
    def on_connect(self, conn):
        pass

    def on_line(self, conn, line):
        conn.write(line + b"\n")

    def on_close(self, conn):
        pass


def echo_server(port):
    listen(Loop(), port, EchoServer())


class ChatServer:
    def __init__(self):
        self.members = {}  # casefolded handle -> Connection, in join order

    def broadcast(self, data):
        for conn in self.members.values():
            conn.write(data)

    def on_connect(self, conn):
        conn.write(common.PROMPT)

    def on_line(self, conn, line):
        text = common.text_of(line)
        if conn.handle is None:
            self.login(conn, text)
        elif text == "/quit":
            conn.close()
        elif text:
            self.broadcast(common.says(conn.handle, text))

    def login(self, conn, handle):
        if not common.valid_handle(handle):
            conn.write(common.INVALID + common.PROMPT)
        elif handle.casefold() in self.members:
            conn.write(common.TAKEN + common.PROMPT)
        else:
            conn.handle = handle
            self.members[handle.casefold()] = conn
            self.broadcast(common.joined(handle))
            conn.write(common.online([m.handle for m in self.members.values()]))

    def on_close(self, conn):
        if conn.handle is not None:
            del self.members[conn.handle.casefold()]
            self.broadcast(common.left(conn.handle))


def chat_server(port):
    listen(Loop(), port, ChatServer())


def sleep0(ntasks, rounds):
    loop = Loop()
    finished = 0

    def step(remaining):  # one "task": re-posts itself `rounds` times
        nonlocal finished
        if remaining:
            loop.call_soon(step, remaining - 1)
        else:
            finished += 1

    started = perf_counter()
    for _ in range(ntasks):
        loop.call_soon(step, rounds)
    loop.run(until=lambda: finished == ntasks)
    return perf_counter() - started


def spawn_join(count):
    loop = Loop()
    finished = 0

    def task():
        nonlocal finished
        finished += 1

    started = perf_counter()
    for _ in range(count):
        loop.call_soon(task)
    loop.run(until=lambda: finished == count)
    return perf_counter() - started


def idle_tasks(count, mark):
    loop = Loop()
    waiters = []  # the "event": callbacks to run when it is set
    finished = 0

    def on_set(number):
        nonlocal finished
        finished += 1

    mark()
    for number in range(count):
        waiters.append(partial(on_set, number))
    mark()
    for on_set in waiters:
        loop.call_soon(on_set)
    loop.run(until=lambda: finished == count)


if __name__ == "__main__":
    common.main(__name__)
