"""TLS in microthreads.net, against the real openssl programs and against itself.

Certificates come from the session's ``certs`` fixture (conftest.py), made
at test time. A client and a server in one hub are themselves a test of
cooperation: if either side blocked the thread, the other could never answer.
"""

import logging
import socket
import ssl
import subprocess

import pytest
from net_helpers import LIMIT, run
from tls_helpers import OPENSSL, client_context, needs_openssl, server_context

import microthreads
from microthreads import net
from microthreads.net import socket as cosocket
from microthreads.net import ssl as mssl

pytestmark = needs_openssl

MiB = 1 << 20
#: 1 MiB as lines of 1 KiB: what the openssl s_server -rev mode reverses line by line.
LINES = [b"%07d " % i + b"abcdefghij" * 101 + b"uvwxy\n" for i in range(1024)]


def _openssl_s_server(certs, *extra):
    """``openssl s_server`` on a free port, reversing lines (-rev), for one client."""
    proc = subprocess.Popen([OPENSSL, "s_server", "-cert", certs.server, "-key",
                             certs.server_key, "-accept", "127.0.0.1:0", "-naccept", "1",
                             *extra], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    for line in proc.stdout:          # before the hub runs: blocking here is fine
        if line.startswith(b"ACCEPT"):
            return proc, int(line.rsplit(b":", 1)[1])
    proc.wait(LIMIT)
    pytest.fail("openssl s_server did not start")


def _echo(conn):
    for line in conn:
        conn.write(line)


def _ticker(gaps, period=0.01):
    """Ticks every ``period`` s, appending the time since the previous tick to ``gaps``."""
    hub = microthreads.get_hub()
    last = hub.clock()
    while True:
        microthreads.sleep(period)
        now = hub.clock()
        gaps.append(now - last)
        last = now


def test_connect_with_ssl_moves_a_mebibyte_each_way_with_openssl_s_server(certs):
    proc, port = _openssl_s_server(certs, "-rev")
    received = []

    def main():
        conn = net.connect(("127.0.0.1", port), timeout=LIMIT, ssl=client_context(certs))

        def reader():
            while len(received) < len(LINES):
                received.append(conn.recv_line())

        reading = microthreads.spawn(reader)
        conn.sendall(b"".join(LINES))           # both ways at once: s_server answers as it reads
        reading.join()
        conn.close()

    try:
        run(main)
    finally:
        proc.kill()
        proc.wait()
    assert received == [line[:-1][::-1] + b"\n" for line in LINES]
    assert sum(map(len, received)) == MiB


def test_openssl_s_client_moves_a_mebibyte_each_way_with_a_tls_stream_server(certs, tmp_path):
    sent = tmp_path / "sent"
    sent.write_bytes(b"".join(LINES))
    echoed = tmp_path / "echoed"

    def handler(conn):
        total = 0
        while total < MiB:
            data = conn.recv()
            if not data:
                break
            conn.write(data)
            total += len(data)
        conn.flush()

    def main():
        with net.StreamServer(("127.0.0.1", 0), handler, ssl=server_context(certs)) as server, \
                open(sent, "rb") as stdin, open(echoed, "wb") as stdout:
            # -quiet implies -ign_eof: s_client reads until the server closes
            client = subprocess.Popen(
                [OPENSSL, "s_client", "-quiet", "-verify_return_error", "-CAfile", certs.ca,
                 "-verify_hostname", "localhost", "-connect", f"127.0.0.1:{server.address[1]}"],
                stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL)
            try:
                assert microthreads.run_in_thread(client.wait, LIMIT) == 0
            finally:
                client.kill()
                client.wait()

    run(main)
    assert echoed.read_bytes() == sent.read_bytes()


def test_two_hundred_concurrent_handshakes_keep_a_ticker_ticking(certs):
    gaps, answers = [], []

    def client(server, i):
        conn = net.connect(server.address, timeout=LIMIT, ssl=client_context(certs))
        conn.sendall(b"hello %d\n" % i)
        answers.append(conn.recv_line())
        conn.close()

    def main():
        ticker = microthreads.spawn(_ticker, gaps)
        with net.StreamServer(("127.0.0.1", 0), _echo, ssl=server_context(certs),
                              backlog=256) as server:
            microthreads.joinall([microthreads.spawn(client, server, i) for i in range(200)])
            ticker.kill()               # counts only the ticks while the crowd was in flight

    run(main, seconds=60)
    assert sorted(answers) == sorted(b"hello %d\n" % i for i in range(200))
    # Each handshake takes several round trips, each a hub turn with the ticker's
    # timer due: a handshake that held the thread would leave no turn to tick in
    # (and, its server in the same hub, would never finish at all).
    assert len(gaps) >= 3


def test_a_client_stalling_mid_handshake_is_dropped_at_the_time_limit(certs, caplog):
    events = []

    def handler(conn):
        events.append("handler ran")
        _echo(conn)

    def main():
        hub = microthreads.get_hub()
        with net.StreamServer(("127.0.0.1", 0), handler, ssl=server_context(certs),
                              handshake_timeout=0.3) as server:
            staller = cosocket.create_connection(server.address)
            staller.sendall(b"\x16\x03\x01\x02\x00\x01")   # a ClientHello's first bytes
            started = hub.clock()
            conn = net.connect(server.address, timeout=LIMIT, ssl=client_context(certs))
            conn.sendall(b"still served\n")
            events.append(conn.recv_line())                # the staller holds nothing
            staller.settimeout(LIMIT)
            assert staller.recv(100) == b""                # dropped: EOF
            events.append(("dropped", hub.clock() - started >= 0.25))
            assert len(server.connections) == 1
            conn.close()

    with caplog.at_level(logging.DEBUG, logger="microthreads.net"):
        run(main)
    assert events == ["handler ran", b"still served\n", ("dropped", True)]
    failures = [r for r in caplog.records if "TLS handshake failed" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.DEBUG]
    assert "timed out" in failures[0].getMessage()


def test_a_plaintext_client_is_a_not_tls_error_it_can_be_answered_beside_a_tls_client(certs):
    errors = []

    def refused(conn, error):
        errors.append((type(error), error.first_bytes))
        assert error.answer(b"this port speaks TLS\n")

    def main():
        with net.StreamServer(("127.0.0.1", 0), _echo, ssl=server_context(certs),
                              on_handshake_error=refused) as server:
            plain = cosocket.create_connection(server.address, timeout=LIMIT)
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
            conn = net.connect(server.address, timeout=LIMIT, ssl=client_context(certs))
            conn.sendall(b"over TLS\n")
            assert conn.recv_line() == b"over TLS\n"
            assert plain.recv(100) == b"this port speaks TLS\n"
            assert plain.recv(100) == b""                  # then a clean close, no reset
            conn.close()

    run(main)
    assert errors == [(net.NotTLSError, b"GET /")]


def test_a_client_silent_past_the_hello_timeout_is_a_not_tls_error(certs):
    def main():
        hub = microthreads.get_hub()
        with net.listen(("127.0.0.1", 0), ssl=server_context(certs),
                        hello_timeout=0.05) as listener:
            silent = cosocket.create_connection(listener.address, timeout=LIMIT)
            started = hub.clock()
            with pytest.raises(net.NotTLSError, match=r"sent nothing in 0\.05 s") as caught:
                listener.accept()
            assert hub.clock() - started >= 0.04
            assert caught.value.first_bytes == b""
            assert not caught.value.answer(b"too late\n")   # accept() closed it
            assert silent.recv(100) == b""
            silent.close()

    run(main)


@pytest.mark.parametrize("name, reason", [
    ("other_name", "mismatch"),
    ("expired", "certificate has expired"),
    ("untrusted", "self-signed certificate"),
])
def test_a_certificate_the_client_refuses_raises_ssl_cert_verification_error(
        certs, caplog, name, reason):
    handled = []

    def main():
        with net.StreamServer(("127.0.0.1", 0), handled.append,
                              ssl=server_context(certs, name)) as server:
            with pytest.raises(ssl.SSLCertVerificationError) as caught:
                net.connect(server.address, timeout=LIMIT, ssl=client_context(certs))
            assert reason in caught.value.verify_message
            microthreads.sleep(0.05)                       # the server side notices

    with caplog.at_level(logging.DEBUG, logger="microthreads.net"):
        run(main)
    assert handled == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_wrong_hostname_against_openssl_s_server(certs):
    proc, port = _openssl_s_server(certs, "-rev")

    def main():
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            net.connect(("127.0.0.1", port), timeout=LIMIT, ssl=client_context(certs),
                        server_hostname="example.org")

    try:
        run(main)
    finally:
        proc.kill()
        proc.wait()


def _memory_tls(sock, context, server_side):
    """A handshake through an ``ssl.SSLObject`` pumped by hand over cooperative ``sock``:
    TLS whose records the test can cut anywhere. Returns the SSLObject and its
    outgoing BIO."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=server_side,
                           server_hostname=None if server_side else "localhost")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("EOF in handshake")
            incoming.write(data)
    sock.sendall(outgoing.read())
    return tls, outgoing


def _reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    sock.close()


def test_a_peer_resetting_mid_record_ends_its_connection_and_nothing_else(certs, caplog):
    """The half record is never delivered; the reset reads as the end (as an EOF
    without close_notify does: CPython reports both as SSLEOFError)."""
    events = []

    def handler(conn):
        try:
            for line in conn:
                events.append(line)
            events.append("end")
        except net.NetworkError:
            events.append("end")
            raise

    def main():
        with net.StreamServer(("127.0.0.1", 0), handler, ssl=server_context(certs)) as server:
            raw = cosocket.create_connection(server.address)
            tls, outgoing = _memory_tls(raw, client_context(certs), server_side=False)
            tls.write(b"one whole line\n")
            raw.sendall(outgoing.read())
            tls.write(b"a line cut in half\n")
            record = outgoing.read()
            raw.sendall(record[:len(record) // 2])
            microthreads.sleep(0.05)
            _reset(raw)
            other = net.connect(server.address, timeout=LIMIT, ssl=client_context(certs))
            other.sendall(b"others go on\n")
            other.close()
            microthreads.sleep(0.1)

    with caplog.at_level(logging.DEBUG, logger="microthreads.net"):
        run(main)
    assert events == [b"one whole line\n", "end", b"others go on\n", "end"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_server_resetting_mid_record_fails_the_client_with_network_error(certs):
    def main():
        with net.listen(("127.0.0.1", 0)) as listener:
            def server():
                sock, _peer = listener.accept_socket()
                raw = cosocket.socket(sock.family, sock.type, fileno=sock.detach())
                tls, outgoing = _memory_tls(raw, server_context(certs), server_side=True)
                tls.write(b"x" * 5000)
                record = outgoing.read()
                raw.sendall(record[:len(record) // 2])
                microthreads.sleep(0.05)
                _reset(raw)

            microthreads.spawn(server)
            conn = net.connect(listener.address, timeout=LIMIT, ssl=client_context(certs))
            with pytest.raises(net.NetworkError):
                conn.recv_exactly(5000)

    run(main)


def test_plaintext_buffered_in_the_ssl_object_is_read_without_waiting_for_the_socket(certs):
    """A 100-byte record read 10 bytes at a time: after the first read the socket
    is empty and the rest sits decrypted inside OpenSSL (pending())."""
    chunks = []

    def handler(conn):
        conn.sendall(bytes(range(100)))
        conn.wait_closed()

    def main():
        with net.StreamServer(("127.0.0.1", 0), handler, ssl=server_context(certs)) as server:
            conn = net.connect(server.address, timeout=2, ssl=client_context(certs))
            for _ in range(10):
                chunks.append(conn.recv(10))   # TimeoutError if it waited on the socket
            conn.close()

    run(main)
    assert b"".join(chunks) == bytes(range(100))


def test_shutdown_write_under_tls_raises_and_the_connection_goes_on(certs):
    """TLS has no half-close Python can send without losing the peer's data:
    NotImplementedError, and nothing happened to the connection."""
    def handler(conn):
        conn.sendall(conn.recv_line())

    def main():
        with net.StreamServer(("127.0.0.1", 0), handler, ssl=server_context(certs)) as server:
            conn = net.connect(server.address, timeout=LIMIT, ssl=client_context(certs))
            conn.write(b"one\n")
            with pytest.raises(NotImplementedError, match="TLS"):
                conn.shutdown_write()
            line = conn.recv_line()
            conn.close()
            return line

    assert run(main) == b"one\n"


def test_ssl_socket_handshake_send_recv_and_unwrap_cooperate(certs):
    """Both ends are microthreads.net.ssl sockets in one hub: neither may block."""
    events = []

    def server(listening):
        sock, _addr = listening.accept()
        tls = mssl.wrap_with(server_context(certs), sock, server_side=True)
        events.append(("server got", tls.recv(100)))
        tls.sendall(b"pong" * 1000)
        plain = tls.unwrap()
        events.append(("server plain", plain.recv(100)))
        plain.close()

    def main():
        listening = cosocket.create_server(("127.0.0.1", 0))
        listening.settimeout(LIMIT)
        serving = microthreads.spawn(server, listening)
        context = mssl.create_default_context(cafile=certs.ca)
        raw = cosocket.create_connection(listening.getsockname(), timeout=LIMIT)
        tls = context.wrap_socket(raw, server_hostname="localhost")
        assert isinstance(tls, mssl.SSLSocket)
        assert tls.version().startswith("TLS")
        tls.sendall(b"ping")
        data = b""
        while len(data) < 4000:
            data += tls.recv(65536)
        events.append(("client got", len(data)))
        plain = tls.unwrap()
        plain.sendall(b"in the clear")
        serving.join()
        plain.close()
        listening.close()

    run(main)
    assert events == [("server got", b"ping"), ("client got", 4000),
                      ("server plain", b"in the clear")]


def test_stdlib_ssl_on_a_cooperative_socket_raises_a_clear_error_and_keeps_the_socket(certs):
    def main():
        listening = cosocket.create_server(("127.0.0.1", 0))
        raw = cosocket.create_connection(listening.getsockname(), timeout=LIMIT)
        with pytest.raises(TypeError, match=r"microthreads\.net\.ssl"):
            client_context(certs).wrap_socket(raw, server_hostname="localhost")
        raw.sendall(b"still mine")                     # the descriptor was not taken
        peer, _addr = listening.accept()
        assert peer.recv(100) == b"still mine"
        for s in (peer, raw, listening):
            s.close()

    run(main)


def test_a_tls_socket_times_out_as_its_timeout_says(certs):
    def main():
        with net.StreamServer(("127.0.0.1", 0), lambda conn: conn.wait_closed(),
                              ssl=server_context(certs)) as server:
            raw = cosocket.create_connection(server.address, timeout=LIMIT)
            tls = mssl.wrap_with(client_context(certs), raw, server_hostname="localhost")
            tls.settimeout(0.1)
            with pytest.raises(socket.timeout):       # TimeoutError since Python 3.10
                tls.recv(10)
            tls.settimeout(0.0)
            with pytest.raises(ssl.SSLWantReadError):
                tls.recv(10)
            tls.close()

    run(main)


def test_a_tls_socket_wrapped_before_it_connects_handshakes_on_connect(certs):
    """As http.client and many clients do: wrap a fresh socket, then connect it
    (the cooperative connect once connected a second time: ValueError)."""
    def serve(conn):
        conn.sendall(conn.recv_line().upper())

    def main():
        with net.StreamServer(("127.0.0.1", 0), serve, ssl=server_context(certs)) as server:
            answers = []
            for connect in ("connect", "connect_ex"):
                tls = mssl.wrap_with(client_context(certs), cosocket.socket(),
                                     server_hostname="localhost")
                tls.settimeout(LIMIT)
                assert getattr(tls, connect)(server.address) in (None, 0)
                tls.sendall(b"hello\n")
                answers.append(tls.recv(100))
                tls.close()
            return answers

    assert run(main) == [b"HELLO\n", b"HELLO\n"]


def test_a_context_s_own_ssl_socket_class_gives_sockets_of_that_class_that_cooperate(certs):
    """SSLContext.sslsocket_class set to a user's subclass of the stdlib's SSLSocket
    (it used to be refused with a TypeError)."""
    class Counting(ssl.SSLSocket):
        sent = 0

        def sendall(self, data, flags=0):
            Counting.sent += len(data)
            return super().sendall(data, flags)

    def serve(conn):
        conn.sendall(conn.recv_line().upper())

    def main():
        with net.StreamServer(("127.0.0.1", 0), serve, ssl=server_context(certs)) as server:
            context = mssl.create_default_context(cafile=certs.ca)
            context.sslsocket_class = Counting
            raw = cosocket.create_connection(server.address, timeout=LIMIT)
            tls = context.wrap_socket(raw, server_hostname="localhost")
            tls.sendall(b"hello\n")
            answer = tls.recv(100)
            tls.close()
            return isinstance(tls, Counting), isinstance(tls, mssl.SSLSocket), answer

    assert run(main) == (True, True, b"HELLO\n")
    assert Counting.sent == 6
