"""A peer that vanishes without a word (a pulled cable) is dropped, for real.

The test makes its own network namespace joined to this one by a veth pair
(root and ``ip`` needed; skipped with the reason otherwise), serves the chat
on this side's address of the pair, logs a member in from inside the
namespace, then takes the namespace's end of the link down: no FIN, no
reset, nothing more from it. With ``--keepalive 2`` and a 3 s stall limit
(TCP_USER_TIMEOUT), the server's first probe goes out 2 s after the last
traffic and the connection is dropped at the next keepalive timer (~7 s):
the member is announced as leaving. With the old settings (60 s idle, 5
probes 10 s apart) it held its handle for up to 110 s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time

import pytest
from chat_helpers import chat_servers

GHOST = """
import socket, sys, time
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
sock.makefile("rb").readline()                      # What is your handle?
sock.sendall(b"ghost\\r\\n")
print(sock.makefile("rb").readline().decode().strip(), flush=True)
time.sleep(60)                                      # silent; killed by the test
"""


def run(*command):
    subprocess.run(command, check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def namespace_behind_a_veth():
    """Yields (namespace, its link, this side's address, its address); removes all."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2's ip to make a network namespace")
    pid = os.getpid()
    name, here, there = f"mtka{pid}", f"mtka{pid}h", f"mtka{pid}t"
    # a /30 of 10.200.0.0/13 per process, so parallel runs do not collide
    base = 0x0AC80000 + ((pid << 2) & 0x7FFFC)
    host, peer = (f"{(base + n) >> 24}.{((base + n) >> 16) & 255}.{((base + n) >> 8) & 255}."
                  f"{(base + n) & 255}" for n in (1, 2))
    try:
        run("ip", "netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot make a network namespace here: {exc}")
    try:
        run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
        run("ip", "link", "set", there, "netns", name)
        run("ip", "addr", "add", f"{host}/30", "dev", here)
        run("ip", "link", "set", here, "up")
        run("ip", "netns", "exec", name, "ip", "addr", "add", f"{peer}/30", "dev", there)
        run("ip", "netns", "exec", name, "ip", "link", "set", there, "up")
        yield name, there, host, peer
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


@pytest.mark.slow
def test_a_member_whose_link_is_cut_is_dropped_within_keepalive_and_the_stall_limit():
    with namespace_behind_a_veth() as (name, link, host, _peer), chat_servers() as start:
        server = start("--host", host, keepalive=2, stall_timeout=3.0)
        ghost = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", GHOST,
                                  host, str(server.port)], stdout=subprocess.PIPE, text=True)
        try:
            assert ghost.stdout.readline().strip() == "ghost has joined the chat."
            run("ip", "netns", "exec", name, "ip", "link", "set", link, "down")
            cut = time.monotonic()
            server.wait_for_log(r"ghost left \(", timeout=15)
            assert time.monotonic() - cut < 15
        finally:
            ghost.kill()
            ghost.wait(5)
