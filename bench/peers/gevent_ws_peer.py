"""gevent + gevent-websocket: the chat seed subset over WebSocket, one text
message per line (PROTOCOL.md, "The web page"), on gevent's pywsgi server
with gevent-websocket's handler, a greenlet per connection. Each member has a
queue and a writer greenlet (as the gevent peer), so a broadcast never
blocks on a slow reader; over the bound the member is dropped.
"""

from gevent import monkey  # before anything that may import socket

monkey.patch_all()

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from gevent.queue import Queue  # noqa: E402
from geventwebsocket.exceptions import WebSocketError  # noqa: E402
from geventwebsocket.handler import WebSocketHandler  # noqa: E402

from bench.peers import common  # noqa: E402


def text(line):
    return line.decode().rstrip("\r\n")


PROMPT, TAKEN, INVALID = text(common.PROMPT), text(common.TAKEN), text(common.INVALID)


class Member:
    def __init__(self, handle, ws):
        self.handle = handle
        self.ws = ws
        self.queue = Queue()
        self.pending = 0
        self.dropped = False

    def deliver(self, message):
        if self.dropped:
            return
        self.pending += len(message)
        if self.pending > common.MAX_BACKLOG:
            self.drop()
        else:
            self.queue.put_nowait(message)

    def drop(self):
        self.dropped = True
        try:
            self.ws.stream.handler.socket.shutdown(2)
        except (OSError, AttributeError):
            pass

    def write_forever(self):
        while True:
            message = self.queue.get()
            try:
                self.ws.send(message)
            except (OSError, WebSocketError):
                self.drop()
                return
            self.pending -= len(message)


class ChatServer:
    def __init__(self):
        self.members = {}

    def broadcast(self, message):
        for member in self.members.values():
            member.deliver(message)

    def app(self, environ, start_response):
        ws = environ.get("wsgi.websocket")
        if ws is None:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"WebSocket only\n"]
        try:
            member = self.login(ws)
            if member is not None:
                self.chat(member)
        except (OSError, WebSocketError):
            pass
        return []

    def login(self, ws):
        while True:
            ws.send(PROMPT)
            message = ws.receive()
            if message is None:
                return None
            handle = str(message).strip()
            if not common.valid_handle(handle):
                ws.send(INVALID)
            elif handle.casefold() in self.members:
                ws.send(TAKEN)
            else:
                member = self.members[handle.casefold()] = Member(handle, ws)
                self.broadcast(text(common.joined(handle)))
                member.deliver(text(common.online([m.handle for m in self.members.values()])))
                return member

    def chat(self, member):
        writer = gevent.spawn(member.write_forever)
        try:
            while True:
                message = member.ws.receive()
                if message is None:
                    break
                line = str(message).strip()
                if line == "/quit":
                    break
                if line:
                    self.broadcast(f"{member.handle} says: {line}")
        finally:
            writer.kill(block=False)
            del self.members[member.handle.casefold()]
            self.broadcast(text(common.left(member.handle)))


def chat_server(port):
    WSGIServer((common.HOST, port), ChatServer().app, handler_class=WebSocketHandler,
               log=None).serve_forever()


common.main(__name__)
