"""microthreads.net.socket: stdlib-style blocking socket code, run cooperatively."""

import os
import socket as std_socket
import sys

import pytest
from net_helpers import run

import microthreads
from microthreads import net
from microthreads.net import socket


def test_a_stdlib_style_server_and_client_talk_in_one_thread():
    """Plain blocking code, unchanged but for the import: both ends in one OS thread."""
    def serve(listening):
        conn, _address = listening.accept()
        with conn, conn.makefile("rb") as reader:
            for line in reader:
                conn.sendall(line.upper())
                if line == b"bye\n":
                    return

    def main():
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(("127.0.0.1", 0))
        listening.listen(5)
        server = microthreads.spawn(serve, listening)
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.connect(listening.getsockname())
        answers = []
        with client, client.makefile("rb") as reader:
            for line in (b"hello\n", b"world\n", b"bye\n"):
                client.sendall(line)
                answers.append(reader.readline())
        server.get()
        listening.close()
        return answers

    assert run(main) == [b"HELLO\n", b"WORLD\n", b"BYE\n"]


def test_create_connection_reaches_a_server_and_recv_returns_what_was_sent():
    def main():
        listening = socket.create_server(("127.0.0.1", 0))
        accepter = microthreads.spawn(listening.accept)
        client = socket.create_connection(listening.getsockname(), timeout=5)
        conn, _address = accepter.get()
        conn.sendall(b"x" * 300_000)             # more than one recv's worth
        conn.close()
        received = []
        while True:
            data = client.recv(65536)
            if not data:
                break
            received.append(data)
        client.close()
        listening.close()
        return len(b"".join(received)), isinstance(client, std_socket.socket)

    assert run(main) == (300_000, True)


def test_create_connection_by_hostname_resolves_localhost():
    def main():
        listening = socket.create_server(("127.0.0.1", 0))
        accepter = microthreads.spawn(listening.accept)
        client = socket.create_connection(("localhost", listening.getsockname()[1]), timeout=5)
        conn, _address = accepter.get()
        client.sendall(b"hi")
        data = conn.recv(10)
        for sock in (client, conn, listening):
            sock.close()
        return data

    assert run(main) == b"hi"


def test_recv_past_settimeout_raises_socket_timeout(virtual_clock):
    def main():
        left, right = socket.socketpair()
        left.settimeout(2.5)
        with pytest.raises(socket.timeout):
            left.recv(10)
        right.sendall(b"late")                   # the socket is still usable
        data = left.recv(10)
        left.close()
        right.close()
        return virtual_clock.now(), data

    assert run(main) == (2.5, b"late")


def test_accept_past_settimeout_raises_socket_timeout(virtual_clock):
    def main():
        listening = socket.create_server(("127.0.0.1", 0))
        listening.settimeout(1)
        with pytest.raises(socket.timeout):
            listening.accept()
        listening.close()
        return virtual_clock.now()

    assert run(main) == 1.0


def test_sendall_past_settimeout_raises_socket_timeout_when_the_peer_does_not_read(
        virtual_clock):
    def main():
        left, right = socket.socketpair()
        left.settimeout(3)
        with pytest.raises(socket.timeout):
            left.sendall(b"s" * (16 << 20))      # far more than the kernel buffers
        left.close()
        right.close()
        return virtual_clock.now()

    assert run(main) == 3.0


def test_an_accepted_socket_takes_the_default_timeout_not_the_listeners():
    def main():
        listening = socket.create_server(("127.0.0.1", 0))
        listening.settimeout(7)
        client = socket.create_connection(listening.getsockname())
        conn, _address = listening.accept()
        timeouts = listening.gettimeout(), conn.gettimeout(), conn.getblocking()
        for sock in (client, conn, listening):
            sock.close()
        return timeouts

    assert run(main) == (7.0, None, True)          # as the stdlib's accept()


def test_a_non_blocking_socket_raises_blocking_io_error_when_nothing_is_there():
    def main():
        left, right = socket.socketpair()
        left.setblocking(False)
        with pytest.raises(BlockingIOError):
            left.recv(10)
        blocking = left.getblocking(), left.gettimeout()
        left.close()
        right.close()
        return blocking

    assert run(main) == (False, 0.0)


def test_timeouts_and_blocking_follow_the_stdlib_rules():
    """SOCK_NONBLOCK makes a non-blocking socket; settimeout takes numbers only;
    setblocking on a closed descriptor fails; as the stdlib socket's."""
    nonblocking = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    assert (nonblocking.gettimeout(), nonblocking.getblocking()) == (0.0, False)
    for bad, error in (("", TypeError), ("1", TypeError), (-1, ValueError),
                       (float("nan"), ValueError)):
        with pytest.raises(error):
            nonblocking.settimeout(bad)
    nonblocking.settimeout(True)
    assert nonblocking.gettimeout() == 1.0
    closed = socket.socket()
    os.close(closed.fileno())
    with pytest.raises(OSError):
        closed.setblocking(True)
    closed.detach()                              # its descriptor is gone already
    nonblocking.close()


def test_recvmsg_into_and_sendmsg_take_generators_even_when_they_must_wait():
    def main():
        left, right = socket.socketpair()
        buffer = bytearray(5)
        microthreads.spawn_later(0.01, right.sendmsg, (part for part in [b"he", b"llo"]))
        nbytes = left.recvmsg_into(view for view in [memoryview(buffer)])[0]
        left.close()
        right.close()
        return nbytes, bytes(buffer)

    assert run(main) == (5, b"hello")


RECEIVES = {
    "recv": lambda sock: sock.recv(10),
    "recv_into": lambda sock: _into(sock.recv_into),
    "recvfrom": lambda sock: sock.recvfrom(10)[0],
    "recvfrom_into": lambda sock: _into(lambda buf: sock.recvfrom_into(buf)[0]),
    "recvmsg": lambda sock: sock.recvmsg(10)[0],
    "recvmsg_into": lambda sock: _into(lambda buf: sock.recvmsg_into([buf])[0]),
}


def _into(receive):
    buffer = bytearray(10)
    return bytes(buffer[:receive(buffer)])


@pytest.mark.parametrize("method", sorted(RECEIVES))
def test_every_receive_method_parks_the_tasklet_until_data_comes(method):
    events = []

    def main():
        left, right = socket.socketpair()
        reader = microthreads.spawn(lambda: events.append(RECEIVES[method](right)))
        microthreads.sleep(0)                    # the reader waits; the hub is free
        events.append("reader is waiting")
        left.sendall(b"data")
        reader.get()
        left.close()
        right.close()

    run(main)
    assert events == ["reader is waiting", b"data"]


def _fill(sock):
    """Send until the socket's buffers are full (MSG_DONTWAIT: never waits)."""
    sent = 0
    with pytest.raises(BlockingIOError):
        while True:
            sent += sock.send(b"x" * 65536, socket.MSG_DONTWAIT)
    return sent


SENDS = {
    "send": lambda sock, data: sock.send(data),
    "sendall": lambda sock, data: sock.sendall(data),
    "sendmsg": lambda sock, data: sock.sendmsg([data]),
}


@pytest.mark.parametrize("method", sorted(SENDS))
def test_every_send_method_parks_the_tasklet_while_the_buffers_are_full(method):
    events = []

    def main():
        left, right = socket.socketpair()
        queued = _fill(left)
        writer = microthreads.spawn(lambda: events.append(SENDS[method](left, b"last") or 4))
        microthreads.sleep(0)
        events.append("writer is waiting")
        received = 0
        while received < queued + 4:
            received += len(right.recv(1 << 20))
        writer.get()
        left.close()
        right.close()

    run(main)
    assert events == ["writer is waiting", 4]


def test_msg_dontwait_raises_blocking_io_error_on_a_blocking_socket():
    def main():
        left, right = socket.socketpair()       # timeout None: the calls would wait
        with pytest.raises(BlockingIOError):
            right.recv(10, socket.MSG_DONTWAIT)
        with pytest.raises(BlockingIOError):
            right.recv_into(bytearray(10), 0, socket.MSG_DONTWAIT)
        _fill(left)                               # send with MSG_DONTWAIT, until full
        with pytest.raises(BlockingIOError):
            left.sendall(b"more", socket.MSG_DONTWAIT)
        left.close()
        right.close()
        return left.gettimeout()

    assert run(main) is None


def test_socketpair_gives_two_connected_cooperative_sockets():
    events = []

    def main():
        left, right = socket.socketpair()

        def reader():
            events.append(right.recv(10))

        tasklet = microthreads.spawn(reader)
        microthreads.sleep(0)                    # the reader waits; the hub is free
        events.append("reader is waiting")
        left.sendall(b"pair")
        tasklet.join()
        left.close()
        right.close()
        return type(left) is socket.socket

    assert run(main) is True
    assert events == ["reader is waiting", b"pair"]


def test_connect_to_a_closed_port_raises_connection_refused():
    with std_socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        address = placeholder.getsockname()

        def main():
            client = socket.socket()
            with pytest.raises(ConnectionRefusedError):
                client.connect(address)
            client.close()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address, timeout=5)

        run(main)


def test_closing_a_socket_wakes_a_tasklet_blocked_in_recv_with_network_error():
    def main():
        left, right = socket.socketpair()
        tasklet = microthreads.spawn(left.recv, 10)
        microthreads.sleep(0)
        left.close()
        tasklet.join()
        right.close()
        return tasklet.exception

    assert isinstance(run(main), net.NetworkError)


def test_getaddrinfo_runs_off_the_hub_while_other_tasklets_go_on():
    events = []

    def main():
        microthreads.spawn(events.append, "another tasklet ran")
        infos = socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)
        events.append("resolved")
        return infos

    infos = run(main)
    assert events == ["another tasklet ran", "resolved"]   # it ran during the lookup
    assert infos == std_socket.getaddrinfo("localhost", 80, std_socket.AF_INET,
                                           std_socket.SOCK_STREAM)


def test_gethostbyname_runs_off_the_hub_while_other_tasklets_go_on():
    events = []

    def main():
        microthreads.spawn(events.append, "another tasklet ran")
        address = socket.gethostbyname("localhost")
        events.append("resolved")
        return address

    assert run(main) == std_socket.gethostbyname("localhost")
    assert events == ["another tasklet ran", "resolved"]


def test_sendfile_sends_a_file_without_blocking_the_hub(tmp_path):
    path = tmp_path / "payload"
    payload = bytes(range(256)) * 16384          # 4 MiB: more than the socket takes at once
    path.write_bytes(payload)

    def main():
        left, right = socket.socketpair()
        left.settimeout(5)                       # the stdlib's own wait would end here
        reader = microthreads.spawn(lambda: b"".join(iter(lambda: right.recv(65536), b"")))
        with open(path, "rb") as file:
            sent = left.sendfile(file)
        left.close()
        data = reader.get()
        right.close()
        return sent, data

    sent, data = run(main)
    assert sent == len(payload)
    assert data == payload


def test_the_module_re_exports_the_stdlib_names_it_does_not_replace():
    assert socket.AF_INET == std_socket.AF_INET
    assert socket.SOL_SOCKET == std_socket.SOL_SOCKET
    assert socket.timeout is std_socket.timeout
    assert socket.gaierror is std_socket.gaierror
    assert socket.inet_aton is std_socket.inet_aton
    assert socket.SocketType is socket.socket
    assert issubclass(socket.socket, std_socket.socket)


def test_a_star_import_gives_the_stdlib_names_with_the_cooperative_ones_in_place():
    names = {}
    exec("from microthreads.net.socket import *", names)
    assert set(std_socket.__all__) <= set(names)
    assert names["socket"] is socket.socket
    assert names["create_connection"] is socket.create_connection


def test_a_socket_dropped_without_close_leaves_its_descriptor_number_clean():
    def main():
        dropped, peer = socket.socketpair()
        microthreads.spawn(peer.sendall, b"one")
        assert dropped.recv(10) == b"one"        # it waited: its descriptor is registered
        number = dropped.fileno()
        del dropped                              # no close(): the finalizer closes it
        peer.close()
        fresh, peer = socket.socketpair()        # new files under the same numbers
        if peer.fileno() == number:
            fresh, peer = peer, fresh
        assert fresh.fileno() == number
        microthreads.spawn(peer.sendall, b"two")
        data = fresh.recv(10)                    # waits: a stale registration would hang
        fresh.close()
        peer.close()
        return data

    assert run(main, seconds=5) == b"two"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="all_errors came with Python 3.11")
def test_create_connection_with_all_errors_raises_every_address_s_error():
    def main():
        bound = std_socket.socket()                # bound, never listening: refuses
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        with pytest.raises(ExceptionGroup) as caught:  # noqa: F821  (3.11+)
            socket.create_connection(("127.0.0.1", port), timeout=5, all_errors=True)
        bound.close()
        return [type(error) for error in caught.value.exceptions]

    assert run(main) == [ConnectionRefusedError]
