"""redis-py on cooperative sockets: a Redis round trip parks one tasklet."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection as _RedisConnection
from redis.connection import SSLConnection as _RedisSSLConnection
from redis.retry import Retry

from microthreads.net import socket as cosocket
from microthreads.net import ssl as cossl

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


class CooperativeSSLConnection(_RedisSSLConnection):
    """redis-py's TLS Connection (``rediss://``) over ``microthreads.net.ssl``.

    The TCP part is CooperativeConnection's. redis-py builds its stdlib
    context inside the method that wraps the socket (and the stdlib ``ssl``
    refuses a cooperative socket), so that method is replaced: a cooperative
    context made from the same ``ssl_*`` options (CA file, path or data,
    ``ssl_cert_reqs``, ``ssl_check_hostname``, client certificate and key,
    minimum version, ciphers). OCSP checks are not supported.
    """

    _connect_tcp = CooperativeConnection._connect

    def _connect(self):
        sock = self._connect_tcp()
        try:
            return self._wrap_socket_with_ssl(sock)
        except BaseException:
            sock.close()
            raise

    def _wrap_socket_with_ssl(self, sock):
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


def redis_client(url: str) -> redis.Redis:
    """A redis-py client on cooperative sockets, for one tasklet's use.

    Raises ValueError for a URL it cannot use. redis-py's own retries are
    off (its backoff sleeps with ``time.sleep``, which would stop the hub):
    the link and the reader retry themselves.
    """
    _url.check(url)
    tls = url.startswith("rediss://")
    pool = redis.ConnectionPool.from_url(
        url, connection_class=CooperativeSSLConnection if tls else CooperativeConnection,
        socket_timeout=5.0,
        socket_connect_timeout=2.0, socket_keepalive=True, decode_responses=True,
        retry=Retry(NoBackoff(), 0))
    return redis.Redis(connection_pool=pool)
