"""gevent: a StreamServer with one greenlet per connection; each chat member
has a queue and a writer greenlet, so a broadcast never blocks on a slow reader.
"""

import socket
from time import perf_counter

import gevent
from gevent.event import Event
from gevent.queue import Queue
from gevent.server import StreamServer

from bench.peers import common


def echo_server(port):
    def handle(sock, _address):
        with sock.makefile("rb") as lines:
            for line in lines:
                sock.sendall(line)

    StreamServer((common.HOST, port), handle).serve_forever()


class Member:
    def __init__(self, handle, sock):
        self.handle = handle
        self.sock = sock
        self.queue = Queue()
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
        with sock.makefile("rb") as lines:
            try:
                member = self.login(sock, lines)
                if member is not None:
                    self.chat(member, lines)
            except (OSError, ValueError):
                pass

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
        writer = gevent.spawn(member.write_forever)
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
            writer.kill(block=False)
            del self.members[member.handle.casefold()]
            self.broadcast(common.left(member.handle))


def read_line(lines):
    line = lines.readline(common.MAX_LINE + 1)
    if len(line) > common.MAX_LINE and not line.endswith(b"\n"):
        raise ValueError("line too long")
    return line


def chat_server(port):
    StreamServer((common.HOST, port), ChatServer().handle).serve_forever()


def sleep0(ntasks, rounds):
    def task():
        for _ in range(rounds):
            gevent.sleep(0)

    started = perf_counter()
    gevent.joinall([gevent.spawn(task) for _ in range(ntasks)])
    return perf_counter() - started


def spawn_join(count):
    def task():
        pass

    started = perf_counter()
    gevent.joinall([gevent.spawn(task) for _ in range(count)])
    return perf_counter() - started


def idle_tasks(count, mark):
    event = Event()
    blocked = 0

    def task():
        nonlocal blocked
        blocked += 1
        event.wait()

    mark()
    tasks = [gevent.spawn(task) for _ in range(count)]
    while blocked < count:
        gevent.sleep(0)
    mark()
    event.set()
    gevent.joinall(tasks)


if __name__ == "__main__":
    common.main(__name__)
