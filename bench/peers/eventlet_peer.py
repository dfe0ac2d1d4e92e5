"""eventlet: eventlet.serve with one green thread per connection; each chat
member has a LightQueue and a writer green thread, so a broadcast never blocks.
"""

import socket
import warnings
from time import perf_counter

from bench.peers import common

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet announces its deprecation on import
    import eventlet
    from eventlet.event import Event
    from eventlet.queue import LightQueue

CONCURRENCY = 20000  # eventlet.serve's pool bound (default 1000): room for 10,000 members


def echo_server(port):
    def handle(sock, _address):
        try:
            with sock.makefile("rb") as lines:
                for line in lines:
                    sock.sendall(line)
        except OSError:
            pass

    eventlet.serve(eventlet.listen((common.HOST, port)), handle, concurrency=CONCURRENCY)


class Member:
    def __init__(self, handle, sock):
        self.handle = handle
        self.sock = sock
        self.queue = LightQueue()
        self.pending = 0  # bytes queued and not yet sent
        self.dropped = False

    def deliver(self, data):
        """Queue data for the writer; never blocks. Over the bound: drop."""
        if self.dropped:
            return
        self.pending += len(data)
        if self.pending > common.MAX_BACKLOG:
            self.drop()
        else:
            self.queue.put_nowait(data)

    def drop(self):
        """Too slow or gone: the reader sees EOF and the member leaves."""
        self.dropped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def write_forever(self):
        queue = self.queue
        while True:
            chunks = [queue.get()]
            while queue.qsize():  # send the whole backlog at once
                chunks.append(queue.get_nowait())
            data = b"".join(chunks)
            try:
                self.sock.sendall(data)
            except OSError:
                self.drop()
                return
            self.pending -= len(data)


class ChatServer:
    def __init__(self):
        self.members = {}  # casefolded handle -> Member, in join order

    def broadcast(self, data):
        for member in self.members.values():
            member.deliver(data)

    def handle(self, sock, _address):
        try:
            with sock.makefile("rb") as lines:
                member = self.login(sock, lines)
                if member is not None:
                    self.chat(member, lines)
        except (OSError, ValueError):
            pass  # eventlet.serve would stop serving on an escaped error

    def login(self, sock, lines):
        while True:
            sock.sendall(common.PROMPT)
            line = read_line(lines)
            if not line:
                return None
            handle = common.text_of(line)
            if not common.valid_handle(handle):
                sock.sendall(common.INVALID)
            elif handle.casefold() in self.members:
                sock.sendall(common.TAKEN)
            else:
                member = self.members[handle.casefold()] = Member(handle, sock)
                self.broadcast(common.joined(handle))
                member.deliver(common.online([m.handle for m in self.members.values()]))
                return member

    def chat(self, member, lines):
        writer = eventlet.spawn(member.write_forever)
        try:
            while True:
                line = read_line(lines)
                if not line:
                    break
                text = common.text_of(line)
                if text == "/quit":
                    break
                if text:
                    self.broadcast(common.says(member.handle, text))
        finally:
            writer.kill()
            del self.members[member.handle.casefold()]
            self.broadcast(common.left(member.handle))


def read_line(lines):
    line = lines.readline(common.MAX_LINE + 1)
    if len(line) > common.MAX_LINE and not line.endswith(b"\n"):
        raise ValueError("line too long")
    return line


def chat_server(port):
    eventlet.serve(eventlet.listen((common.HOST, port)), ChatServer().handle,
                   concurrency=CONCURRENCY)


def sleep0(ntasks, rounds):
    def task():
        for _ in range(rounds):
            eventlet.sleep(0)

    started = perf_counter()
    for thread in [eventlet.spawn(task) for _ in range(ntasks)]:
        thread.wait()
    return perf_counter() - started


def spawn_join(count):
    def task():
        pass

    started = perf_counter()
    for thread in [eventlet.spawn(task) for _ in range(count)]:
        thread.wait()
    return perf_counter() - started


def idle_tasks(count, mark):
    event = Event()
    blocked = 0

    def task():
        nonlocal blocked
        blocked += 1
        event.wait()

    mark()
    threads = [eventlet.spawn(task) for _ in range(count)]
    while blocked < count:
        eventlet.sleep(0)
    mark()
    event.send()
    for thread in threads:
        thread.wait()


if __name__ == "__main__":
    common.main(__name__)
