"""trio: serve_tcp with one task per connection and a small buffered line
reader (trio streams have no readline). Each chat member gets a memory channel
drained by its own writer task; a member over the bound is cancelled.
"""

import math
from functools import partial
from time import perf_counter

import trio

from bench.peers import common

CLOSED = (trio.BrokenResourceError, trio.ClosedResourceError)


class LineReader:
    def __init__(self, stream):
        self.stream = stream
        self.buffer = bytearray()

    async def readline(self):
        """The next line with its b"\\n"; b"" at EOF. ValueError past MAX_LINE."""
        searched = 0
        while True:
            end = self.buffer.find(b"\n", searched)
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > common.MAX_LINE:
                raise ValueError("line too long")
            searched = len(self.buffer)
            data = await self.stream.receive_some(65536)
            if not data:
                line = bytes(self.buffer)
                self.buffer.clear()
                return line
            self.buffer += data


async def echo(stream):
    reader = LineReader(stream)
    try:
        while line := await reader.readline():
            await stream.send_all(line)
    except (*CLOSED, ValueError):
        pass


def echo_server(port):
    trio.run(partial(trio.serve_tcp, echo, port, host=common.HOST))


class Member:
    def __init__(self, handle, stream):
        self.handle = handle
        self.stream = stream
        self.outbox, self.outgoing = trio.open_memory_channel(math.inf)
        self.pending = 0  # bytes queued and not yet sent
        self.scope = trio.CancelScope()  # cancelled: the member leaves

    def deliver(self, data):
        """Queue data for the writer task; never blocks. Over the bound: drop."""
        self.pending += len(data)
        if self.pending > common.MAX_BACKLOG:
            self.scope.cancel()
        elif not self.scope.cancel_called:
            self.outbox.send_nowait(data)

    async def write_forever(self):
        try:
            async for data in self.outgoing:
                chunks = [data]
                while True:  # send the whole backlog at once
                    try:
                        chunks.append(self.outgoing.receive_nowait())
                    except trio.WouldBlock:
                        break
                data = b"".join(chunks)
                await self.stream.send_all(data)
                self.pending -= len(data)
        except CLOSED:
            self.scope.cancel()


class ChatServer:
    def __init__(self):
        self.members = {}  # casefolded handle -> Member, in join order

    def broadcast(self, data):
        for member in self.members.values():
            member.deliver(data)

    async def handle(self, stream):
        reader = LineReader(stream)
        try:
            member = await self.login(stream, reader)
        except (*CLOSED, ValueError):
            return
        if member is None:
            return
        try:
            with member.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(member.write_forever)
                    await self.chat(member, reader)
                    nursery.cancel_scope.cancel()
        finally:
            del self.members[member.handle.casefold()]
            self.broadcast(common.left(member.handle))

    async def login(self, stream, reader):
        while True:
            await stream.send_all(common.PROMPT)
            line = await reader.readline()
            if not line:
                return None
            handle = common.text_of(line)
            if not common.valid_handle(handle):
                await stream.send_all(common.INVALID)
            elif handle.casefold() in self.members:
                await stream.send_all(common.TAKEN)
            else:
                member = self.members[handle.casefold()] = Member(handle, stream)
                self.broadcast(common.joined(handle))
                member.deliver(common.online([m.handle for m in self.members.values()]))
                return member

    async def chat(self, member, reader):
        try:
            while line := await reader.readline():
                text = common.text_of(line)
                if text == "/quit":
                    break
                if text:
                    self.broadcast(common.says(member.handle, text))
        except (*CLOSED, ValueError):
            pass


def chat_server(port):
    trio.run(partial(trio.serve_tcp, ChatServer().handle, port, host=common.HOST))


def sleep0(ntasks, rounds):
    async def task():
        for _ in range(rounds):
            await trio.sleep(0)

    async def main():
        started = perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(ntasks):
                nursery.start_soon(task)
        return perf_counter() - started

    return trio.run(main)


def spawn_join(count):
    async def task():
        pass

    async def main():
        started = perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(task)
        return perf_counter() - started

    return trio.run(main)


def idle_tasks(count, mark):
    async def main():
        event = trio.Event()
        blocked = 0

        async def task():
            nonlocal blocked
            blocked += 1
            await event.wait()

        mark()
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(task)
            while blocked < count:
                await trio.sleep(0)
            mark()
            event.set()

    trio.run(main)


if __name__ == "__main__":
    common.main(__name__)
