"""Issue 13's figures: subprocesses and UDP, each beside a stdlib peer in the same run.

    .venv/bin/python bench/everyday.py            # medians of 3 runs, about 15 s

1. 50 children ``sleep 0.5``, started together and waited for by 50 tasklets
   (``microthreads.subprocess``), while a ticker tasklet ticks; the serial
   figure (50 x 0.5 s) is arithmetic, not run.
2. ``communicate()`` of 10 MiB in and out of ``cat``: ``microthreads.subprocess``
   against the stdlib's ``subprocess`` (its selector loop, one blocking thread).
3. UDP: 10 senders x 1,000 datagrams, each sender keeping at most 8
   unacknowledged, a server acknowledging each. microthreads' DatagramServer
   (a tasklet per datagram), the same with one tasklet reading a
   ``microthreads.net.socket`` socket, and the stdlib ``socket`` module in one
   blocking thread (the senders' bursts and the server's replies taken in
   turn: the same datagrams, the same windows, no concurrency).

Only the ratios within one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess as std_subprocess
import sys
import time
from collections.abc import Callable

import microthreads
from microthreads import net
from microthreads import subprocess as mt_subprocess
from microthreads.net import socket as coop

CHILDREN, CHILD_SECONDS = 50, 0.5
PAYLOAD = os.urandom(1 << 20) * 10
SENDERS, EACH, WINDOW = 10, 1000, 8


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# ------------------------------------------------------------ subprocesses


def children_with_microthreads() -> None:
    def main() -> None:
        ticker = microthreads.spawn(_tick)
        children = [mt_subprocess.Popen(["sleep", str(CHILD_SECONDS)]) for _ in range(CHILDREN)]
        microthreads.joinall([microthreads.spawn(child.wait) for child in children])
        ticker.kill()

    microthreads.run(main)


def _tick() -> None:
    while True:
        microthreads.sleep(0.01)


def communicate_with_microthreads() -> None:
    def main() -> None:
        child = mt_subprocess.Popen(["cat"], stdin=mt_subprocess.PIPE, stdout=mt_subprocess.PIPE)
        out, _ = child.communicate(PAYLOAD)
        assert out == PAYLOAD

    microthreads.run(main)


def communicate_with_stdlib() -> None:
    child = std_subprocess.Popen(["cat"], stdin=std_subprocess.PIPE, stdout=std_subprocess.PIPE)
    out, _ = child.communicate(PAYLOAD)
    assert out == PAYLOAD


# --------------------------------------------------------------------- UDP


def _sender(address: tuple[str, int], n: int) -> int:
    acked = 0
    with coop.socket(coop.AF_INET, coop.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        for start in range(0, EACH, WINDOW):
            for seq in range(start, start + WINDOW):
                sock.sendto(b"%d:%d" % (n, seq), address)
            for _ in range(WINDOW):
                try:
                    sock.recvfrom(64)
                except coop.timeout:
                    break
                acked += 1
    return acked


def _senders(address: tuple[str, int]) -> int:
    tasklets = [microthreads.spawn(_sender, address, n) for n in range(SENDERS)]
    return sum(t.get() for t in tasklets)


def udp_datagram_server() -> int:
    def main() -> int:
        server: net.DatagramServer

        def ack(data: bytes, address: tuple[str, int]) -> None:
            server.sendto(data.split(b":")[1], address)

        server = net.DatagramServer(("127.0.0.1", 0), ack).start()
        try:
            return _senders(server.address)
        finally:
            server.stop()

    return microthreads.run(main)


def udp_one_tasklet() -> int:
    def serve(sock: coop.socket) -> None:
        while True:
            data, address = sock.recvfrom(65535)
            sock.sendto(data.split(b":")[1], address)

    def main() -> int:
        with coop.socket(coop.AF_INET, coop.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            server = microthreads.spawn(serve, sock)
            try:
                return _senders(sock.getsockname())
            finally:
                server.kill()

    return microthreads.run(main)


def udp_stdlib_one_thread() -> int:
    acked = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(1.0)
        address = server.getsockname()
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SENDERS)]
        try:
            for sock in senders:
                sock.settimeout(1.0)
            for start in range(0, EACH, WINDOW):
                for n, sock in enumerate(senders):
                    for seq in range(start, start + WINDOW):
                        sock.sendto(b"%d:%d" % (n, seq), address)
                    for _ in range(WINDOW):
                        data, peer = server.recvfrom(65535)
                        server.sendto(data.split(b":")[1], peer)
                    for _ in range(WINDOW):
                        sock.recvfrom(64)
                        acked += 1
        finally:
            for sock in senders:
                sock.close()
    return acked


# -------------------------------------------------------------------- main


def median_of(runs: int, fn: Callable[[], object]) -> float:
    return statistics.median(timed(fn) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; medians of {runs}")

    wall = median_of(runs, children_with_microthreads)
    serial = CHILDREN * CHILD_SECONDS
    print(f"{CHILDREN} x sleep {CHILD_SECONDS}: {wall:.3f} s (serial {serial:.1f} s: "
          f"{serial / wall:.1f}x faster)")

    ours = median_of(runs, communicate_with_microthreads)
    stdlib = median_of(runs, communicate_with_stdlib)
    print(f"communicate 10 MiB in and out: microthreads {ours:.3f} s, stdlib {stdlib:.3f} s "
          f"(microthreads / stdlib = {ours / stdlib:.2f})")

    total = SENDERS * EACH
    rows = [("stdlib socket, one blocking thread", udp_stdlib_one_thread),
            ("microthreads DatagramServer", udp_datagram_server),
            ("microthreads net.socket, one server tasklet", udp_one_tasklet)]
    base = None
    for name, fn in rows:
        rate = total / median_of(runs, fn)
        base = base or rate
        print(f"UDP {total} datagrams, {SENDERS} senders, window {WINDOW}: {name}: "
              f"{rate:,.0f} datagrams/s ({rate / base:.2f}x stdlib)")


if __name__ == "__main__":
    main()
