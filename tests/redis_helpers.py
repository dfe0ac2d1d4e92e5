"""Throwaway Redis servers for the federation tests: one ``redis-server``, or a
local Redis Cluster of three masters and three replicas.

``python tests/redis_helpers.py CHAT-ARGS`` (``make run-cluster CLUSTER=1``)
starts a local Redis Cluster, then ``python -m chat --redis URL CHAT-ARGS``
on it; when the chat stops (Ctrl-C), so does the cluster.

Every server listens on 127.0.0.1 on a free port, keeps nothing on disk
(``--save ''``, ``--appendonly no``; a cluster node's ``nodes.conf`` goes to
a temporary directory), and is stopped by its PID, never by name. Every wait
is for a condition, polled, with a generous deadline for a loaded machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

try:
    import redis
except ImportError:             # the tests that need it skip, saying why
    redis = None

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
#: For a test module: skip, saying why, without redis-server or redis-py.
needs_redis = pytest.mark.skipif(REDIS_SERVER is None or redis is None,
                                 reason="needs the redis-server binary and redis-py: run `make"
                                        " system-deps` (Debian's redis-server) and install"
                                        " '.[test]' (redis>=5)")
#: Seconds to wait for a server to start or a cluster to settle.
PATIENCE = 30.0
#: A cluster node this long unreachable is failed; its replica is promoted
#: about a second later (election delay 0.5-1 s).
NODE_TIMEOUT_MS = 1000
#: The hash slots of Redis Cluster.
SLOTS = 16384


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_cluster_port():
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port + 10000 > 65535:
                continue
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise AssertionError("no free port pair (port, port + 10000) on 127.0.0.1")


def _wait(condition, what, timeout=PATIENCE, interval=0.05):
    """Poll ``condition()`` until it is true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(interval)


class RedisServer:
    """A ``redis-server`` on loopback, no persistence; stopped by its PID.

    ``start()`` starts it (again, on the same port, with ``args``) and waits
    until it answers PING; ``stop()`` ends it with SIGTERM (SIGKILL after
    10 s); ``kill()`` with SIGKILL, at once.
    """

    def __init__(self, port=None, args=(), cwd=None):
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.args = list(args)
        self.cwd = cwd
        self.proc = None
        self.start()

    def client(self, **options):
        options.setdefault("socket_timeout", 2)
        options.setdefault("socket_connect_timeout", 2)
        return redis.Redis(port=self.port, **options)

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", *self.args], cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)           # Ctrl-C is for the chat, not for it
        client = self.client(socket_timeout=1, socket_connect_timeout=1)
        try:
            # ours, not another process on a port that was free a moment ago
            _wait(lambda: self.proc.poll() is None and client.ping()
                  and client.info("server")["process_id"] == self.proc.pid,
                  f"redis-server did not start on {self.port}")
        except AssertionError:
            self.stop()
            raise
        finally:
            client.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)    # in case a test left it stopped
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def kill(self):
        """SIGKILL, by PID: it says goodbye to nobody."""
        self.proc.kill()
        self.proc.wait(10)

    def restart(self):
        """Stop it and start it again on the same port: everything in it is lost."""
        self.stop()
        self.start()


class RedisCluster:
    """A local Redis Cluster: three masters and three replicas on loopback.

    Made with ``redis-cli --cluster create ... --cluster-replicas 1``, with
    ``cluster-node-timeout`` at NODE_TIMEOUT_MS so that a killed master's
    replica takes over within a few seconds. ``url`` names one node (any node
    will do for a client that discovers the cluster). ``stop()`` stops every
    node and removes the directory of their ``nodes.conf`` files.
    """

    def __init__(self, masters=3, replicas=1):
        self.dir = tempfile.mkdtemp(prefix="chat-redis-cluster-")
        self.nodes = {}                      # port -> RedisServer
        try:
            for _ in range(masters * (1 + replicas)):
                port = _free_cluster_port()
                self.nodes[port] = RedisServer(port, cwd=self.dir, args=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    "--dir", self.dir])
            subprocess.run(
                [REDIS_CLI, "--cluster", "create",
                 *(f"127.0.0.1:{port}" for port in self.nodes),
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, timeout=PATIENCE)
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        self.url = f"redis://127.0.0.1:{next(iter(self.nodes))}"

    # ------------------------------------------------------------ what it looks like

    def _any_client(self):
        for node in self.nodes.values():
            if node.alive():
                return node.client(decode_responses=True)
        raise AssertionError("every node of the cluster is down")

    def masters(self, node=None):
        """Port -> the slot ranges it serves, as ``node`` (a live one by default) sees it."""
        client = node.client(decode_responses=True) if node else self._any_client()
        try:
            layout = {}
            for start, end, master, *_replicas in client.execute_command("CLUSTER SLOTS"):
                layout.setdefault(int(master[1]), []).append((start, end))
            return layout
        finally:
            client.close()

    def master_of(self, key):
        """The port of the master serving ``key``'s slot."""
        client = self._any_client()
        try:
            slot = client.execute_command("CLUSTER KEYSLOT", key)
        finally:
            client.close()
        for port, ranges in self.masters().items():
            if any(start <= slot <= end for start, end in ranges):
                return port
        raise AssertionError(f"slot {slot} of {key!r} is served by nobody")

    def replica_port(self):
        """The port of a live replica (a node that serves no slots itself)."""
        masters = self.masters()
        for port, node in self.nodes.items():
            if node.alive() and port not in masters:
                return port
        raise AssertionError("no live replica")

    def _healthy(self):
        """Every live node: cluster_state ok, all slots served; every live
        replica's link to its master up (so a failover loses nothing old)."""
        for node in self.nodes.values():
            if not node.alive():
                continue
            client = node.client(decode_responses=True)
            try:
                info = client.cluster("info")
                if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != SLOTS:
                    return False
                replication = client.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
            finally:
                client.close()
        return True

    def wait_healthy(self):
        _wait(self._healthy, "the Redis Cluster did not become healthy")

    # ------------------------------------------------------------ faults

    def kill_master(self, port):
        """SIGKILL the master on ``port`` (by PID) and wait until every live
        node sees a replica serving its slots and the cluster is healthy."""
        self.nodes[port].kill()
        _wait(lambda: all(port not in self.masters(node) for node in self.nodes.values()
                          if node.alive()) and self._healthy(),
              f"no replica took over the slots of {port}")

    def restart(self, port):
        """Start the node on ``port`` again from its nodes.conf: it rejoins
        (a former master comes back as a replica of whoever took over)."""
        self.nodes[port].start()
        self.wait_healthy()

    def stop(self):
        for node in self.nodes.values():
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv):
    cluster = RedisCluster()
    try:
        print(f"Redis Cluster of 6 nodes on 127.0.0.1 ports {sorted(cluster.nodes)}; chat on"
              f" --redis {cluster.url}", flush=True)
        chat = subprocess.Popen([sys.executable, "-m", "chat", "--redis", cluster.url, *argv])
        try:
            return chat.wait()
        except KeyboardInterrupt:       # the chat got SIGINT too: it stops gracefully
            return chat.wait()
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
