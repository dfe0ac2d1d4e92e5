"""redis-py on cooperative sockets: a Redis round trip parks one tasklet."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection as _RedisConnection
from redis.retry import Retry

from microthreads.net import socket as cosocket

from . import url as _url

#: What a lost or unreachable Redis raises; the link and the reader retry.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, OSError)


class CooperativeConnection(_RedisConnection):
    """redis-py's TCP Connection over ``microthreads.net.socket``.

    Only ``_connect`` changes: the socket it returns is the cooperative one,
    whose ``recv``/``sendall``/``connect`` park the calling tasklet and honour
    ``settimeout``, which is all redis-py's parser and writer use.
    """

    def _connect(self):
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


def redis_client(url: str) -> redis.Redis:
    """A redis-py client on cooperative sockets, for one tasklet's use.

    Raises ValueError for a URL it cannot use. redis-py's own retries are
    off (its backoff sleeps with ``time.sleep``, which would stop the hub):
    the link and the reader retry themselves.
    """
    _url.check(url)
    pool = redis.ConnectionPool.from_url(
        url, connection_class=CooperativeConnection, socket_timeout=5.0,
        socket_connect_timeout=2.0, socket_keepalive=True, decode_responses=True,
        retry=Retry(NoBackoff(), 0))
    return redis.Redis(connection_pool=pool)
