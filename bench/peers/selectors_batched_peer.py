"""The careful floor: the selectors floor's loop and connections, with a
chat room that batches as a careful callback server does.

Lines broadcast during one loop iteration are joined once at its end and
each member's output gets them as one piece (then one send() per member per
iteration, as in the plain floor). A member who joined during the iteration
gets only the lines from its own join on, and its private lines (the
`Online` list) in their place among them: the same order a server that
sent every line at once would give. Echo and the microbenchmarks are the
plain floor's (there is nothing to batch).
"""

from bench.peers import common
from bench.peers.selectors_peer import ChatServer, Loop, listen
from bench.peers.selectors_peer import echo_server as echo_server


class BatchedChatServer(ChatServer):
    """The plain floor's room (connect, lines, quit), its output batched."""

    def __init__(self, loop):
        super().__init__()
        self.batch = []  # lines broadcast this iteration
        self.joiners = {}  # Connection -> [batch position of its join, private lines...]
        loop.turn_end.append(self.flush)

    def broadcast(self, data):
        self.batch.append(data)

    def flush(self):
        batch, joiners = self.batch, self.joiners
        if not batch and not joiners:
            return
        data = b"".join(batch)
        for conn in self.members.values():
            own = joiners.get(conn)
            if own is None:
                if data:
                    conn.write(data)
                continue
            # a joiner: the lines from its join on, its private lines in their place
            start, *private = own
            parts, at = [], start
            for position, line in private:
                parts += batch[at:position]
                parts.append(line)
                at = position
            parts += batch[at:]
            conn.write(b"".join(parts))
        self.batch = []
        self.joiners = {}

    def login(self, conn, handle):
        if not common.valid_handle(handle):
            conn.write(common.INVALID + common.PROMPT)
        elif handle.casefold() in self.members:
            conn.write(common.TAKEN + common.PROMPT)
        else:
            conn.handle = handle
            self.members[handle.casefold()] = conn
            self.joiners[conn] = [len(self.batch)]
            self.broadcast(common.joined(handle))
            online = common.online([m.handle for m in self.members.values()])
            self.joiners[conn].append((len(self.batch), online))

    def on_close(self, conn):
        self.joiners.pop(conn, None)
        super().on_close(conn)


def chat_server(port):
    loop = Loop()
    listen(loop, port, BatchedChatServer(loop))


if __name__ == "__main__":
    common.main(__name__)
