"""Tasklets that read lines from telnet users and store them with redis.asyncio.

Straight-line code per connection (a tasklet), an asyncio library for the
store, one thread and one loop: ``microthreads.aio`` joins the two.

    python examples/telnet_to_redis.py [redis://127.0.0.1:6379/0] [port]
    telnet 127.0.0.1 2323          # each line you type goes to the list "lines"
"""

from __future__ import annotations

import sys

import redis.asyncio

from microthreads import aio, net


def serve(redis_url: str, port: int, ready=None) -> None:
    store = redis.asyncio.from_url(redis_url)

    def member(conn: net.Connection) -> None:     # one tasklet per telnet user
        conn.write(b"Type lines; each is stored. /quit ends.\r\n")
        for raw in conn:
            line = raw.rstrip(b"\r\n")
            if line == b"/quit":
                break
            count = aio.await_(store.rpush("lines", line))   # an asyncio call
            conn.write(b"stored as line %d\r\n" % count)

    server = net.StreamServer(("127.0.0.1", port), member)
    server.start()
    if ready is not None:
        ready(server)
    try:
        server.serve_forever()
    finally:
        aio.await_(store.aclose() if hasattr(store, "aclose") else store.close())


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 2323
    aio.run(serve, url, port)
