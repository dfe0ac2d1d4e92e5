"""The federation over TLS: ``--redis rediss://...`` against a real
``redis-server --tls-port`` (Debian's build has TLS), through
``microthreads.net.ssl``. Certificates are made at test time."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from chat_helpers import ROOT, chat_servers
from redis_helpers import RedisServer, free_port, needs_redis

pytestmark = [pytest.mark.slow, needs_redis]


@pytest.fixture
def tls_redis(certs):
    """``(rediss URL, server)``: a redis-server with a TLS port trusted through the test CA."""
    tls_port = free_port()
    try:
        server = RedisServer(args=["--tls-port", str(tls_port), "--tls-cert-file", certs.server,
                                   "--tls-key-file", certs.server_key, "--tls-ca-cert-file",
                                   certs.ca, "--tls-auth-clients", "no"])
    except AssertionError:
        pytest.skip("this redis-server does not start with --tls-port (built without TLS?)")
    yield f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={certs.ca}", server
    server.stop()


def test_two_nodes_federate_over_rediss(tls_redis):
    url, server = tls_redis
    with chat_servers() as start:
        a, b = start(redis=url, rate=0), start(redis=url, rate=0)
        alice = a.join("alice")
        bob = b.join("bob")
        assert bob.online == "Online (2): alice, bob"
        alice.expect("bob has joined the chat.")
        alice.say("hello over TLS")
        bob.expect("alice says: hello over TLS")
        bob.say("/quit")
        bob.expect("Goodbye.")
        bob.expect_closed()
        alice.expect("alice says: hello over TLS", "bob has left the chat.")
    # the room really went through the TLS port: its keys are in this Redis
    assert server.client().keys("*")


def test_rediss_to_an_untrusted_certificate_says_why_at_start_and_exits_2(tls_redis):
    url, _server = tls_redis
    untrusted = url.split("?")[0]             # the system CAs do not know the test CA
    proc = subprocess.run([sys.executable, "-m", "chat", "--port", "0", "--web-port", "0",
                           "--redis", untrusted], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert re.search(r"cannot reach the room's Redis at rediss://.*certificate verify failed",
                     proc.stderr), proc.stderr
    assert "chat listening" not in proc.stderr
