"""What one batch of the room's script costs, in Redis and in the writer.

Starts its own ``redis-server`` on a free loopback port (no persistence),
joins one member with the room's script, then sends batches of N says of
that member (a 30-byte line each) and prints, for each N:

- Redis's time per EVALSHA (``INFO commandstats``: the script and the
  commands it calls), and
- the calling process's CPU time per batch, the way the writer sends it
  (``ScriptCaller``: one kept connection, packed by hiredis) and through
  redis-py's ``Script`` call (a pool checkout and reply callbacks per call).

    python tools/script_cost.py [--batches 2000] [N ...]    (default N: 0 1 10 30)

Each call waits for its reply (one batch in flight, as the writer does), from
a tasklet on the cooperative connection the chat uses. Run on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import microthreads
from chat.federation import scripts
from chat.federation.client import LazyClient, ScriptCaller

NODE = "node"
COMMON = [10000, NODE, 6000, ""]     # bound, node, expiry ms, nothing to read back


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(url: str, sizes: list[int], batches: int) -> None:
    lazy = LazyClient(url)
    client = lazy.get()
    script = scripts.load()
    keys = scripts.keys("chat:{bench}:", NODE)
    caller = ScriptCaller(lazy, script, keys)
    caller(COMMON + ["join", 5, f"{NODE}:1", "m1", "m1", 0, 20])
    print(f"{'says':>5} {'Redis us/EVALSHA':>17} {'writer CPU us/batch':>20}"
          f" {'redis-py Script':>16}")
    for size in sizes:
        argv = list(COMMON)
        for number in range(size):
            argv += ["say", 3, f"{NODE}:1", "m1", f"line {number:4d} 12345678901234567"]
        client.config_resetstat()
        start = time.process_time()
        for _ in range(batches):
            caller(argv)
        short = (time.process_time() - start) / batches * 1e6
        redis_us = client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]
        start = time.process_time()
        for _ in range(batches):
            script(keys=keys, args=argv, client=client)
        slow = (time.process_time() - start) / batches * 1e6
        print(f"{size:5d} {redis_us:17.1f} {short:20.1f} {slow:16.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[0, 1, 10, 30])
    parser.add_argument("--batches", type=int, default=2000)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        microthreads.run(measure, f"redis://127.0.0.1:{port}/0", args.sizes, args.batches)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
