"""asyncio streams (start_server, readline, write + drain); with --uvloop the
same code runs on uvloop's loop. A chat broadcast writes to every member's
transport without awaiting; a member whose transport buffer passes the bound
is aborted, and its reader sees the end and leaves.
"""

import asyncio
import sys
from time import perf_counter

from bench.peers import common

USE_UVLOOP = "--uvloop" in sys.argv
if USE_UVLOOP:
    sys.argv.remove("--uvloop")
    import uvloop


def run(main):
    if USE_UVLOOP:
        return uvloop.run(main)
    return asyncio.run(main)


async def serve(handler, port):
    server = await asyncio.start_server(handler, common.HOST, port, limit=common.MAX_LINE + 2)
    async with server:
        await server.serve_forever()


async def echo(reader, writer):
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except (ConnectionError, ValueError):
        pass
    finally:
        writer.close()


def echo_server(port):
    run(serve(echo, port))


class Member:
    __slots__ = ("dropped", "handle", "writer")

    def __init__(self, handle, writer):
        self.handle = handle
        self.writer = writer
        self.dropped = False


class ChatServer:
    def __init__(self):
        self.members = {}  # casefolded handle -> Member, in join order

    def broadcast(self, data):
        for member in self.members.values():
            if member.dropped:
                continue
            transport = member.writer.transport
            if transport.get_write_buffer_size() > common.MAX_BACKLOG:
                member.dropped = True
                transport.abort()  # its reader gets EOF, and it leaves
            else:
                member.writer.write(data)

    async def handle(self, reader, writer):
        try:
            member = await self.login(reader, writer)
            if member is not None:
                await self.chat(member, reader)
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def login(self, reader, writer):
        while True:
            writer.write(common.PROMPT)
            line = await reader.readline()
            if not line:
                return None
            handle = common.text_of(line)
            if not common.valid_handle(handle):
                writer.write(common.INVALID)
            elif handle.casefold() in self.members:
                writer.write(common.TAKEN)
            else:
                member = self.members[handle.casefold()] = Member(handle, writer)
                self.broadcast(common.joined(handle))
                writer.write(common.online([m.handle for m in self.members.values()]))
                return member

    async def chat(self, member, reader):
        try:
            while line := await reader.readline():
                text = common.text_of(line)
                if text == "/quit":
                    break
                if text:
                    self.broadcast(common.says(member.handle, text))
                    await member.writer.drain()
        finally:
            del self.members[member.handle.casefold()]
            self.broadcast(common.left(member.handle))


def chat_server(port):
    run(serve(ChatServer().handle, port))


def sleep0(ntasks, rounds):
    async def task():
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def main():
        started = perf_counter()
        await asyncio.gather(*[task() for _ in range(ntasks)])
        return perf_counter() - started

    return run(main())


def spawn_join(count):
    async def task():
        pass

    async def main():
        started = perf_counter()
        tasks = [asyncio.create_task(task()) for _ in range(count)]
        await asyncio.gather(*tasks)
        return perf_counter() - started

    return run(main())


def idle_tasks(count, mark):
    async def main():
        event = asyncio.Event()
        blocked = 0

        async def task():
            nonlocal blocked
            blocked += 1
            await event.wait()

        mark()
        tasks = [asyncio.create_task(task()) for _ in range(count)]
        while blocked < count:
            await asyncio.sleep(0)
        mark()
        event.set()
        await asyncio.gather(*tasks)

    run(main())


if __name__ == "__main__":
    common.main(__name__)
