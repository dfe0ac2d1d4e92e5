"""microthreads, through its public API only (DESIGN.md): a StreamServer with
one tasklet per connection for echo. The chat row runs the real chat service
(`python -m chat`), not a peer written here.
"""

from time import perf_counter

import microthreads
import microthreads.net as net
from bench.peers import common


def echo_server(port):
    def handle(conn):
        for line in conn:
            conn.sendall(line)

    server = net.StreamServer((common.HOST, port), handle)
    microthreads.run(server.serve_forever)


def sleep0(ntasks, rounds):
    def task():
        for _ in range(rounds):
            microthreads.sleep(0)

    def main():
        started = perf_counter()
        microthreads.joinall([microthreads.spawn(task) for _ in range(ntasks)])
        return perf_counter() - started

    return microthreads.run(main)


def spawn_join(count):
    def task():
        pass

    def main():
        started = perf_counter()
        microthreads.joinall([microthreads.spawn(task) for _ in range(count)])
        return perf_counter() - started

    return microthreads.run(main)


def idle_tasks(count, mark):
    def main():
        event = microthreads.Event()
        blocked = 0

        def task():
            nonlocal blocked
            blocked += 1
            event.wait()

        mark()
        tasklets = [microthreads.spawn(task) for _ in range(count)]
        while blocked < count:
            microthreads.sleep(0)
        mark()
        event.set()
        microthreads.joinall(tasklets)

    microthreads.run(main)


if __name__ == "__main__":
    common.main(__name__)
