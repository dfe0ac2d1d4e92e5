"""redis-py on cooperative sockets: a Redis round trip parks one tasklet.

``--redis redis://HOST:PORT`` names one Redis, or any node of a Redis
Cluster: ``connect`` asks it (``INFO cluster``) and returns a
``redis.Redis`` or a ``redis.cluster.RedisCluster`` accordingly, both on
``CooperativeConnection``. A room's keys share one hash tag, so on a
cluster every call goes to the one master holding the room's slot;
redis-py follows MOVED (a slot that moved) and finds the new master after
a failover.

What redis-py would otherwise do that must not happen on the hub: its
retries back off with ``time.sleep``, so they are off (the link and the
reader retry themselves, with ``microthreads.sleep``); and its cluster
client sleeps 0.25 s (``time.sleep``) before re-raising ``CLUSTERDOWN``,
so ``CooperativeConnection`` turns ``CLUSTERDOWN`` and ``TRYAGAIN`` replies
into ``ClusterBusy``, a ConnectionError, which redis-py handles by
refreshing its map of the cluster, without sleeping.
"""

from __future__ import annotations

from typing import Any, Sequence

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.connection import Connection as _RedisConnection
from redis.connection import SSLConnection as _RedisSSLConnection
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.retry import Retry
from redis.utils import HIREDIS_AVAILABLE

from microthreads.net import socket as cosocket
from microthreads.net import ssl as cossl

from . import url as _url


class ClusterBusy(redis.ConnectionError):
    """A cluster node answered CLUSTERDOWN or TRYAGAIN (a failover or a
    resharding under way): like a lost connection, try again later."""


#: What a lost, unreachable or failing-over Redis raises; the link and the
#: reader retry on these (a ReadOnlyError: a master just demoted to replica).
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError, ClusterError,
              RedisClusterException, ReadOnlyError)

Client = redis.Redis | RedisCluster


class _ClusterBusyReplies:
    """``read_response`` raises ClusterBusy for CLUSTERDOWN and TRYAGAIN
    (see the module's docstring); mixed into both connection classes."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except (ClusterDownError, TryAgainError) as exc:
            raise ClusterBusy(str(exc)) from exc


class CooperativeConnection(_ClusterBusyReplies, _RedisConnection):
    """redis-py's TCP Connection over ``microthreads.net.socket``.

    ``_connect`` returns the cooperative socket, whose ``recv``/``recv_into``
    /``sendall``/``connect`` park the calling tasklet and honour
    ``settimeout``, which is all redis-py's parsers (hiredis's too) and
    writer use. ``read_response`` raises ClusterBusy for CLUSTERDOWN and
    TRYAGAIN (see the module's docstring).
    """

    def _connect(self) -> Any:
        sock = cosocket.create_connection((self.host, self.port),
                                          timeout=self.socket_connect_timeout)
        try:
            sock.setsockopt(cosocket.IPPROTO_TCP, cosocket.TCP_NODELAY, 1)
            if self.socket_keepalive:
                sock.setsockopt(cosocket.SOL_SOCKET, cosocket.SO_KEEPALIVE, 1)
                for option, value in self.socket_keepalive_options.items():
                    sock.setsockopt(cosocket.IPPROTO_TCP, option, value)
            sock.settimeout(self.socket_timeout)
        except OSError:
            sock.close()
            raise
        return sock


class CooperativeSSLConnection(_ClusterBusyReplies, _RedisSSLConnection):
    """redis-py's TLS Connection (``rediss://``) over ``microthreads.net.ssl``.

    The TCP part is CooperativeConnection's. redis-py builds its stdlib
    context inside the method that wraps the socket (and the stdlib ``ssl``
    refuses a cooperative socket), so that method is replaced: a cooperative
    context made from the same ``ssl_*`` options (CA file, path or data,
    ``ssl_cert_reqs``, ``ssl_check_hostname``, client certificate and key,
    minimum version, ciphers). OCSP checks are not supported.
    """

    def _connect(self) -> Any:
        sock = CooperativeConnection._connect(self)  # type: ignore[arg-type]  # same fields
        try:
            return self._wrap_socket_with_ssl(sock)
        except BaseException:
            sock.close()
            raise

    def _wrap_socket_with_ssl(self, sock: Any) -> Any:
        context = cossl.create_default_context(cafile=self.ca_certs, capath=self.ca_path,
                                               cadata=self.ca_data)
        context.check_hostname = bool(self.check_hostname)   # before a CERT_NONE
        context.verify_mode = self.cert_reqs
        if self.certfile or self.keyfile:
            context.load_cert_chain(self.certfile, self.keyfile, self.certificate_password)
        if getattr(self, "ssl_min_version", None) is not None:
            context.minimum_version = self.ssl_min_version
        if getattr(self, "ssl_ciphers", None):
            context.set_ciphers(self.ssl_ciphers)
        return context.wrap_socket(sock, server_hostname=self.host)


_OPTIONS: dict[str, Any] = dict(socket_timeout=5.0, socket_connect_timeout=2.0,
                                socket_keepalive=True, decode_responses=True)


def check(url: str) -> None:
    """Raise ValueError unless ``url`` is one ``connect`` can use (no I/O)."""
    _url.check(url)


def connect(url: str) -> Client:
    """A client for one tasklet's use: a RedisCluster if the server at
    ``url`` is a cluster node, else a Redis. Talks to it (call it from a
    tasklet); raises one of REDIS_DOWN if it cannot be reached, ValueError
    for a URL it cannot use (a cluster has no database but 0).
    """
    check(url)
    tls = url.startswith("rediss://")
    single = redis.Redis(connection_pool=redis.ConnectionPool.from_url(
        url, connection_class=CooperativeSSLConnection if tls else CooperativeConnection,
        retry=Retry(NoBackoff(), 0), **_OPTIONS))
    try:
        if not int(single.info("cluster").get("cluster_enabled", 0)):
            return single
    except BaseException:
        single.close()
        raise
    single.close()
    if tls:     # redis-py's cluster client would wrap it in the stdlib's blocking ssl
        raise ValueError(f"rediss:// to a Redis Cluster is not supported: {_url.redact(url)}")
    try:
        return RedisCluster(url=url, connection_class=CooperativeConnection,
                            retry=Retry(NoBackoff(), 0), **_OPTIONS)
    except RedisClusterException as exc:
        if "db" in str(exc):
            raise ValueError(f"a Redis Cluster has only database 0: {_url.redact(url)}") from exc
        raise


class LazyClient:
    """``connect(url)`` on first use, for one tasklet: ``get()`` raises what
    ``connect`` raises, and asks again next time."""

    def __init__(self, url: str) -> None:
        check(url)
        self.url = url
        self._client: Client | None = None

    def get(self) -> Client:
        if self._client is None:
            self._client = connect(self.url)
        return self._client


if HIREDIS_AVAILABLE:
    import hiredis

    def _pack(conn: Any, args: tuple[Any, ...]) -> list[bytes]:
        return [hiredis.pack_command(args)]
else:                                   # pragma: no cover - the redis extra brings hiredis
    def _pack(conn: Any, args: tuple[Any, ...]) -> list[bytes]:
        packed: list[bytes] = conn.pack_command(*args)
        return packed


class ScriptCaller:
    """``call(args)``: EVALSHA of ``script`` with ``keys`` on ``lazy``'s
    client, for one tasklet, the short way when it can.

    The short way: one connection kept for good, the command packed in one
    piece, the reply read by the connection's parser. redis-py's way
    (``Script.__call__``: a pool checkout, command lookup and reply
    callbacks on every call) costs the writer nearly twice the CPU per
    batch; it was a fifth of a worker's Python time. redis-py's way still
    makes the first call and the one after any failure: it loads the script
    where Redis lacks it (NOSCRIPT), and on a cluster it follows a slot that
    moved (MOVED) and refreshes its map of the masters after an error, which
    the short way does not try to. A NOSCRIPT or MOVED reply (the script did
    not run) goes again that way at once; any other failure is raised.
    """

    def __init__(self, lazy: LazyClient, script: Script, keys: Sequence[str]) -> None:
        self._lazy = lazy
        self._script = script
        self._keys = list(keys)
        self._pool: Any = None
        self._conn: Any = None              # kept; None: redis-py's way next

    def __call__(self, args: Sequence[Any]) -> Any:
        conn = self._conn
        if conn is None:
            client = self._lazy.get()
            reply = self._script(keys=self._keys, args=args, client=client)
            self._keep(client)
            return reply
        keys = self._keys
        try:
            conn.send_packed_command(_pack(conn, ("EVALSHA", self._script.sha, len(keys),
                                                  *keys, *args)), check_health=False)
            return conn.read_response()
        except (NoScriptError, AskError):   # it did not run; MovedError is an AskError
            self._let_go()
            return self(args)
        except BaseException:               # redis-py closed it if it was broken
            self._let_go()
            raise

    def _keep(self, client: Client) -> None:
        """Take a connection to the master of the keys' slot, for good; if
        that fails, redis-py's way goes on (the call's reply is in hand)."""
        try:
            if isinstance(client, RedisCluster):
                client = client.get_redis_connection(
                    client.get_node_from_key(self._keys[0]))  # type: ignore[no-untyped-call]
            self._pool = client.connection_pool
            self._conn = self._pool.get_connection()
        except REDIS_DOWN:
            self._conn = None

    def _let_go(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn)
