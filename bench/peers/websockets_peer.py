"""websockets (asyncio): the chat seed subset over WebSocket, one text message
per line (PROTOCOL.md, "The web page"), on the library's asyncio server. A
broadcast is `websockets.broadcast` (no await: written to every member's
transport at once); a member whose transport buffer passes the bound is
aborted, as the asyncio peer does, and its handler sees the end and leaves.
Compression is whatever the client offers (the load generator offers none).
"""

import asyncio

from websockets.asyncio.server import broadcast, serve
from websockets.exceptions import ConnectionClosed

from bench.peers import common


def text(line):
    return line.decode().rstrip("\r\n")


PROMPT, TAKEN, INVALID = text(common.PROMPT), text(common.TAKEN), text(common.INVALID)


class ChatServer:
    def __init__(self):
        self.members = {}  # casefolded handle -> (handle, connection), in join order

    def broadcast(self, message):
        connections = [ws for _handle, ws in self.members.values()]
        broadcast(connections, message)
        for ws in connections:  # over the bound: dropped
            if ws.transport.get_write_buffer_size() > common.MAX_BACKLOG:
                ws.transport.abort()

    async def handle(self, ws):
        member = None
        try:
            while member is None:
                await ws.send(PROMPT)
                handle = str(await ws.recv()).strip()
                if not common.valid_handle(handle):
                    await ws.send(INVALID)
                elif handle.casefold() in self.members:
                    await ws.send(TAKEN)
                else:
                    member = handle
                    self.members[handle.casefold()] = (handle, ws)
                    self.broadcast(text(common.joined(handle)))
                    await ws.send(text(common.online([h for h, _ in self.members.values()])))
            async for message in ws:
                line = str(message).strip()
                if line == "/quit":
                    break
                if line:
                    self.broadcast(f"{member} says: {line}")
        except ConnectionClosed:
            pass
        finally:
            if member is not None:
                del self.members[member.casefold()]
                self.broadcast(text(common.left(member)))


def chat_server(port):
    async def main():
        chat = ChatServer()
        async with serve(chat.handle, common.HOST, port, max_size=common.MAX_LINE,
                         ping_interval=None, compression=None) as server:
            await server.serve_forever()

    asyncio.run(main())


common.main(__name__)
