"""UDP: DatagramServer, and cooperative recvfrom/sendto on microthreads.net.socket."""

import contextvars
import logging

import pytest
from net_helpers import ipv6_loopback_available, run

import microthreads
from microthreads import net
from microthreads.net import DatagramServer, NetworkError
from microthreads.net import socket as coop


def udp_client(family=coop.AF_INET, timeout=5.0):
    """A cooperative UDP socket with a time limit on every wait (real seconds)."""
    sock = coop.socket(family, coop.SOCK_DGRAM)
    sock.settimeout(timeout)
    return sock


def echo_server(host="127.0.0.1", **options):
    server = None

    def echo(data, address):
        server.sendto(data, address)

    server = DatagramServer((host, 0), echo, **options)
    return server


def test_an_echo_round_trip():
    def main():
        with echo_server() as server, udp_client() as client:
            client.sendto(b"hello", server.address)
            return client.recvfrom(100), server.address

    (data, source), address = run(main)
    assert data == b"hello" and source == address and address[1] != 0


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1) here")
def test_an_echo_round_trip_over_ipv6():
    def main():
        with echo_server("::1") as server, udp_client(coop.AF_INET6) as client:
            client.sendto(b"over six", server.address)
            data, source = client.recvfrom(100)
            return data, source[:2], server.address[:2]

    data, source, address = run(main)
    assert data == b"over six" and source == address and address[0] == "::1"


def test_recvfrom_parks_the_tasklet_while_others_run_and_returns_data_and_sender():
    ticks = []

    def ticker():
        for n in range(3):
            ticks.append(n)
            microthreads.sleep(0.01)

    def main():
        with udp_client() as receiver, udp_client() as sender:
            receiver.bind(("127.0.0.1", 0))
            sender.bind(("127.0.0.1", 0))
            waiting = microthreads.spawn(receiver.recvfrom, 100)
            microthreads.spawn(ticker).join()          # the wait blocked nobody
            assert not waiting.dead
            assert sender.sendto(b"ping", receiver.getsockname()) == 4
            return waiting.get(), sender.getsockname()

    (data, source), address = run(main)
    assert ticks == [0, 1, 2] and data == b"ping" and source == address


def test_recvfrom_with_a_timeout_raises_socket_timeout_when_nothing_comes(virtual_clock):
    def main():
        with udp_client(timeout=3) as sock:
            sock.bind(("127.0.0.1", 0))
            with pytest.raises(coop.timeout):
                sock.recvfrom(100)
            return virtual_clock.now()

    assert microthreads.run(main) == 3.0


def test_ten_thousand_datagrams_from_ten_flow_controlled_senders_all_served():
    """Each sender keeps at most WINDOW datagrams unacknowledged, so the server's
    receive buffer cannot overflow. Should loopback drop one all the same, its
    sender times out that ack and goes on: the bound below absorbs it, and a
    stall fails the test through its time limit instead of hanging."""
    senders, each, window = 10, 1000, 8
    received = {}

    def count_and_ack(data, address):
        sender, seq = data.split(b":")
        received.setdefault(int(sender), set()).add(int(seq))
        server.sendto(seq, address)

    server = DatagramServer(("127.0.0.1", 0), count_and_ack)

    def sender(n):
        acked = 0
        with udp_client(timeout=1.0) as sock:
            for start in range(0, each, window):
                for seq in range(start, start + window):
                    sock.sendto(b"%d:%d" % (n, seq), server.address)
                for _ in range(window):
                    try:
                        sock.recvfrom(64)
                    except coop.timeout:
                        break                       # lost: the next burst goes on
                    acked += 1
        return acked

    def main():
        server.start()
        try:
            tasklets = [microthreads.spawn(sender, n) for n in range(senders)]
            return [t.get() for t in tasklets]
        finally:
            server.stop()

    acked = run(main, seconds=60)
    assert "tasklets=0" in microthreads.format_run_info()   # no handler left, idle or busy
    total = sum(len(seqs) for seqs in received.values())
    assert total >= 0.98 * senders * each and sum(acked) >= 0.98 * senders * each
    assert set(received) == set(range(senders))
    assert all(seqs <= set(range(each)) for seqs in received.values())


def test_a_handler_that_raises_is_logged_once_and_the_server_goes_on(caplog):
    server = None

    def handler(data, address):
        if data == b"bad":
            raise ValueError("bad datagram")
        server.sendto(data.upper(), address)

    def main():
        nonlocal server
        with DatagramServer(("127.0.0.1", 0), handler) as server, udp_client() as client:
            client.sendto(b"bad", server.address)
            client.sendto(b"good", server.address)
            return client.recvfrom(100)[0]

    with caplog.at_level(logging.ERROR):
        assert run(main) == b"GOOD"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info[0] is ValueError
    assert "datagram handler" in errors[0].getMessage()


def test_a_handler_that_blocks_holds_only_its_own_datagram():
    release = microthreads.Event()
    events = []
    server = None

    def handler(data, address):
        if data == b"slow":
            events.append("slow waits")
            release.wait()
            events.append("slow done")
        server.sendto(data, address)

    def main():
        nonlocal server
        with DatagramServer(("127.0.0.1", 0), handler) as server, udp_client() as client:
            client.sendto(b"slow", server.address)
            for n in range(3):
                client.sendto(b"fast %d" % n, server.address)
                events.append(client.recvfrom(100)[0])
            release.set()
            events.append(client.recvfrom(100)[0])

    run(main)
    assert events == ["slow waits", b"fast 0", b"fast 1", b"fast 2", "slow done", b"slow"]


def test_at_most_max_handlers_run_at_once():
    running, most = 0, 0
    server = None

    def handler(data, address):
        nonlocal running, most
        running += 1
        most = max(most, running)
        microthreads.sleep(0.01)
        running -= 1
        server.sendto(data, address)

    def main():
        nonlocal server
        with DatagramServer(("127.0.0.1", 0), handler, max_handlers=2) as server, \
                udp_client() as client:
            for n in range(6):
                client.sendto(b"%d" % n, server.address)
            return sorted(client.recvfrom(100)[0] for _ in range(6))

    assert run(main) == [b"0", b"1", b"2", b"3", b"4", b"5"]
    assert most == 2


def test_stop_from_a_handler_ends_serve_forever_and_sendto_then_fails():
    server = None

    def handler(data, address):
        server.sendto(b"bye", address)
        server.stop()

    def main():
        nonlocal server
        server = DatagramServer(("127.0.0.1", 0), handler)
        server.start()
        address = server.address
        with udp_client() as client:
            microthreads.spawn(client.sendto, b"stop", address)
            server.serve_forever()                    # returns once a handler stopped it
            reply = client.recvfrom(100)[0]
        with pytest.raises(NetworkError):
            server.sendto(b"late", address)
        return reply

    assert run(main) == b"bye"


def test_it_serves_on_a_socket_it_is_given():
    sock = net.socket.socket(net.socket.AF_INET, net.socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()
    server = None

    def main():
        nonlocal server
        server = DatagramServer(sock, lambda data, peer: server.sendto(data[::-1], peer))
        with server, udp_client() as client:
            client.sendto(b"abc", address)
            return client.recvfrom(10)[0], server.address

    assert run(main) == (b"cba", address)
    assert sock.fileno() == -1                       # closed by stop()


def test_each_handler_runs_in_a_fresh_copy_of_the_servers_context():
    request = contextvars.ContextVar("request", default="unset")
    server = None

    def handler(data, address):
        seen = request.get()
        request.set(data)                            # must not leak to the next datagram
        server.sendto(seen.encode(), address)

    def main():
        nonlocal server
        request.set("server")
        with DatagramServer(("127.0.0.1", 0), handler) as server, udp_client() as client:
            replies = []
            for n in range(3):                         # one at a time: the same handler tasklet
                client.sendto(b"%d" % n, server.address)
                replies.append(client.recvfrom(100)[0])
            return replies

    assert run(main) == [b"server"] * 3
