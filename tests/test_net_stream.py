"""Connection: reading lines and bytes, bounded output, closing, timeouts."""

import os
import socket

import pytest
from net_helpers import (
    connected_pair,
    connection_and_socket,
    received,
    reset,
    run,
    socketpair_connections,
)

import microthreads
from microthreads import net

MiB = 1 << 20


# ------------------------------------------------------------------ bytes


def test_a_mebibyte_sent_each_way_comes_back_intact():
    payload = os.urandom(MiB)

    def echo(conn):
        while True:
            data = conn.recv(65536)
            if not data:
                conn.shutdown_write()
                return
            conn.sendall(data)

    def main():
        client, server = connected_pair()
        microthreads.spawn(echo, server)

        def send_all():
            client.sendall(payload)
            client.shutdown_write()

        microthreads.spawn(send_all)
        parts = []
        while True:
            data = client.recv(65536)
            if not data:
                break
            parts.append(data)
        client.close()
        return b"".join(parts)

    assert run(main) == payload


def test_recv_exactly_raises_network_error_when_eof_comes_mid_message():
    def main():
        conn, raw = connection_and_socket()
        raw.sendall(b"abc")
        raw.close()
        with pytest.raises(net.NetworkError, match="EOF after 3 of 10 bytes"):
            conn.recv_exactly(10)

    run(main)


def test_recv_returns_the_bytes_recv_line_had_buffered_first():
    def main():
        conn, raw = connection_and_socket()
        raw.sendall(b"line\nrest of it")
        raw.close()
        return conn.recv_line(), conn.recv(4), conn.recv(100), conn.recv(100)

    assert run(main) == (b"line\n", b"rest", b" of it", b"")


# ------------------------------------------------------------------ lines


def test_a_line_split_over_many_sends_arrives_whole():
    def main():
        conn, raw = connection_and_socket()

        def trickle():
            for piece in (b"he", b"l", b"lo wo", b"rld", b"\nnext\n"):
                raw.sendall(piece)
                microthreads.sleep(0)         # each piece is a separate read

        microthreads.spawn(trickle)
        return conn.recv_line(), conn.recv_line()

    assert run(main) == (b"hello world\n", b"next\n")


def test_many_lines_in_one_send_come_out_one_by_one():
    lines = [b"line %d\n" % i for i in range(1000)]

    def main():
        conn, raw = connection_and_socket()
        raw.sendall(b"".join(lines))
        return [conn.recv_line() for _ in lines]

    assert run(main) == lines


def test_a_last_line_without_newline_is_returned_as_it_is_at_eof():
    def main():
        conn, raw = connection_and_socket()
        raw.sendall(b"first\nlast words")
        raw.close()
        return conn.recv_line(), conn.recv_line(), conn.recv_line()

    assert run(main) == (b"first\n", b"last words", b"")


def test_iterating_a_connection_yields_its_lines_until_eof():
    def main():
        conn, raw = connection_and_socket()
        raw.sendall(b"a\nbb\nccc")
        raw.close()
        return list(conn)

    assert run(main) == [b"a\n", b"bb\n", b"ccc"]


def test_an_overlong_line_raises_line_too_long_and_reading_resumes_at_the_next_line():
    def main():
        conn, raw = connection_and_socket()
        raw.sendall(b"short\n" + b"x" * 100 + b"\nafter\n")
        first = conn.recv_line(limit=50)
        with pytest.raises(net.LineTooLong):
            conn.recv_line(limit=50)
        return first, conn.recv_line(limit=50)

    assert run(main) == (b"short\n", b"after\n")


def test_a_line_longer_than_the_limit_is_refused_before_its_end_arrives_then_skipped():
    def main():
        conn, raw = connection_and_socket()
        raw.sendall(b"y" * 200_000)                # no newline yet: refused already
        with pytest.raises(net.LineTooLong):
            conn.recv_line(limit=1000)

        def rest_of_the_line():
            for _ in range(10):
                raw.sendall(b"y" * 100_000)
                microthreads.sleep(0)
            raw.sendall(b"y\nnext line\n")

        microthreads.spawn(rest_of_the_line)
        return conn.recv_line(limit=1000)

    assert run(main) == b"next line\n"


def test_a_line_of_exactly_the_limit_is_accepted():
    def main():
        conn, raw = connection_and_socket()
        raw.sendall(b"z" * 9 + b"\n")
        return conn.recv_line(limit=10)

    assert run(main) == b"z" * 9 + b"\n"


# ------------------------------------------------------------------ peer failures


def test_a_reset_by_the_peer_raises_network_error_in_recv_line():
    def main():
        conn, raw = connection_and_socket()
        reset(raw)
        with pytest.raises(net.NetworkError):
            conn.recv_line()

    run(main)


def test_a_reset_by_the_peer_wakes_a_waiting_reader_with_network_error():
    def main():
        conn, raw = connection_and_socket()
        microthreads.spawn(reset, raw)
        with pytest.raises(net.NetworkError):
            conn.recv(100)

    run(main)


def test_sending_to_a_peer_that_reset_raises_network_error():
    def main():
        conn, raw = connection_and_socket()
        reset(raw)
        with pytest.raises(net.NetworkError):
            for _ in range(100):                 # the first send may still be taken
                conn.sendall(b"x" * 65536)

    run(main)


def test_half_close_by_the_peer_gives_eof_while_the_other_direction_still_works():
    def main():
        conn, raw = connection_and_socket()
        raw.sendall(b"question\n")
        raw.shutdown(socket.SHUT_WR)
        assert conn.recv_line() == b"question\n"
        assert conn.recv_line() == b""
        conn.sendall(b"answer\n")
        raw.setblocking(True)
        raw.settimeout(5)
        assert raw.recv(100) == b"answer\n"

    run(main)


def test_shutdown_write_sends_eof_after_queued_output_and_reading_goes_on():
    def main():
        client, server = connected_pair()
        server.write(b"bye\n")
        server.shutdown_write()
        assert client.recv_line() == b"bye\n"
        assert client.recv_line() == b""
        client.sendall(b"still here\n")
        return server.recv_line()

    assert run(main) == b"still here\n"


# ------------------------------------------------------------------ closing


def test_close_wakes_a_tasklet_waiting_in_recv_line_with_network_error():
    events = []

    def main():
        _client, server = connected_pair()

        def reader():
            try:
                server.recv_line()
            except net.NetworkError:
                events.append("reader got NetworkError")

        tasklet = microthreads.spawn(reader)
        microthreads.sleep(0)                    # the reader is waiting now
        server.close()
        events.append("closed")
        tasklet.join()

    run(main)
    assert events == ["closed", "reader got NetworkError"]


def test_close_wakes_a_tasklet_waiting_in_recv_with_network_error():
    def main():
        _client, server = connected_pair()
        tasklet = microthreads.spawn(server.recv, 100)
        microthreads.sleep(0)
        server.close()
        tasklet.join()
        return tasklet.exception

    assert isinstance(run(main), net.NetworkError)


def test_close_wakes_a_writer_waiting_for_room_with_network_error(virtual_clock):
    def main():
        server, _client = socketpair_connections(buffer=4096, max_output=65536, on_full="wait")

        def writer():
            while True:
                server.write(b"w" * 65536)

        tasklet = microthreads.spawn(writer)
        microthreads.sleep(1)                    # it parks for room meanwhile
        assert not tasklet.dead
        server.close()
        tasklet.join()
        return tasklet.exception

    assert isinstance(run(main), net.NetworkError)


def test_a_second_reader_on_the_same_connection_gets_a_clear_runtime_error():
    def main():
        client, server = connected_pair()
        first = microthreads.spawn(server.recv_line)
        microthreads.sleep(0)
        with pytest.raises(RuntimeError, match="one reader at a time"):
            server.recv_line()
        client.sendall(b"for the first\n")
        return first.get()

    assert run(main) == b"for the first\n"


def test_every_operation_after_close_raises_network_error():
    def main():
        _client, server = connected_pair()
        server.close()
        server.close()                           # idempotent
        for operation in (lambda: server.recv(10), server.recv_line,
                          lambda: server.send(b"x"), lambda: server.sendall(b"x"),
                          lambda: server.write(b"x")):
            with pytest.raises(net.NetworkError):
                operation()
        return server.closed

    assert run(main) is True


def test_wait_closed_returns_when_the_peer_goes_away_without_stealing_its_lines():
    events = []

    def main():
        client, server = connected_pair()

        def reader():
            for line in server:
                events.append(line)

        def watcher():
            server.wait_closed()
            events.append("lost")

        tasklets = [microthreads.spawn(reader), microthreads.spawn(watcher)]
        client.sendall(b"one\ntwo\n")
        client.close()
        microthreads.joinall(tasklets)

    run(main)
    assert events == [b"one\n", b"two\n", "lost"]


def test_wait_closed_returns_false_when_its_timeout_passes(virtual_clock):
    def main():
        _client, server = connected_pair()
        return server.wait_closed(timeout=3), virtual_clock.now()

    assert run(main) == (False, 3.0)


# ------------------------------------------------------------------ timeouts


def test_recv_raises_timeout_error_past_the_connection_timeout(virtual_clock):
    def main():
        _client, server = connected_pair(timeout=2)
        with pytest.raises(TimeoutError):
            server.recv_line()
        return virtual_clock.now(), server.closed

    assert run(main) == (2.0, False)


def test_a_timeout_on_one_recv_leaves_the_connection_usable():
    def main():
        client, server = connected_pair(timeout=0.05)
        with pytest.raises(TimeoutError):
            server.recv_line()
        client.sendall(b"late\n")
        return server.recv_line()

    assert run(main) == b"late\n"


# ------------------------------------------------------------------ writing


def test_write_with_an_empty_queue_sends_at_once_without_a_switch():
    switches = []

    def main():
        a, b = socket.socketpair()
        b.setblocking(False)
        conn = net.Connection(a)
        hook = microthreads.hooks.on_switch(lambda previous, following: switches.append(1))
        try:
            conn.write(b"no switch\n")
        finally:
            microthreads.hooks.remove(hook)
        arrived = received(b)                    # already there: the send was done
        conn.close()
        b.close()
        return arrived, conn.pending_output

    assert run(main) == (b"no switch\n", 0)
    assert switches == []


def test_write_queues_what_the_socket_does_not_take_and_the_hub_sends_it_in_order():
    chunks = [bytes([65 + i % 26]) * 100_000 for i in range(40)]   # 4 MB

    def main():
        client, server = connected_pair(max_output=64 * MiB)
        for chunk in chunks:
            server.write(chunk)                  # never waits under the bound
        queued = server.pending_output
        got = client.recv_exactly(len(chunks) * 100_000)
        return queued, got

    queued, got = run(main)
    assert queued > 0
    assert got == b"".join(chunks)


def test_flush_waits_until_queued_output_has_been_sent():
    def main():
        client, server = connected_pair(max_output=64 * MiB)
        server.write(b"f" * (8 * MiB))
        assert server.pending_output > 0
        reader = microthreads.spawn(client.recv_exactly, 8 * MiB)
        flushed = server.flush()
        return flushed, server.pending_output, len(reader.get())

    assert run(main) == (True, 0, 8 * MiB)


def test_flush_returns_false_when_its_timeout_passes_first(virtual_clock):
    def main():
        _client, server = connected_pair(max_output=64 * MiB)
        server.write(b"f" * (16 * MiB))          # more than the kernel buffers
        return server.flush(timeout=4), virtual_clock.now()

    assert run(main) == (False, 4.0)


def test_on_full_wait_parks_the_writer_until_the_reader_drains(virtual_clock):
    events = []
    total = MiB

    def main():
        server, client = socketpair_connections(buffer=4096, max_output=256 * 1024,
                                                on_full="wait")

        def writer():
            for _ in range(total // 65536):
                server.write(b"w" * 65536)
            events.append("writer done")

        tasklet = microthreads.spawn(writer)
        microthreads.sleep(1)                    # the reader is not reading yet
        events.append(f"writer parked: {not tasklet.dead}")
        events.append(f"backlog bounded: {server.pending_output <= 256 * 1024 + 65536}")
        data = client.recv_exactly(total)
        events.append("reader drained")
        tasklet.join()
        return data

    assert run(main) == b"w" * total
    assert events == ["writer parked: True", "backlog bounded: True", "writer done",
                      "reader drained"]


def test_on_full_close_closes_and_raises_network_error_without_blocking():
    events = []

    def main():
        server, _client = socketpair_connections(buffer=4096, max_output=256 * 1024,
                                                on_full="close")
        microthreads.spawn(events.append, "another tasklet ran")
        with pytest.raises(net.NetworkError, match="backlog"):
            for _ in range(100):                 # 6 MB: far past the buffer and the bound
                server.write(b"c" * 65536)
        events.append("write raised")
        assert server.closed
        assert "backlog" in server.close_reason
        server.wait_closed()                     # already lost: no wait

    run(main)
    assert events == ["write raised", "another tasklet ran"]   # no switch inside write()


def test_stall_timeout_closes_a_connection_whose_output_does_not_move(virtual_clock):
    def main():
        server, _client = socketpair_connections(buffer=4096, stall_timeout=5)
        server.write(b"s" * MiB)                 # the client never reads
        server.wait_closed()
        return virtual_clock.now(), server.closed, server.close_reason

    now, closed, reason = run(main)
    assert closed
    assert "stalled" in reason
    assert 5.0 <= now <= 10.0


def test_stall_timeout_spares_a_connection_whose_output_moves_slowly(virtual_clock):
    total = MiB

    def main():
        server, client = socketpair_connections(buffer=4096, stall_timeout=5)
        server.write(b"m" * total)
        got = 0
        while got < total:
            microthreads.sleep(2)                # slow, but under the stall timeout
            got += len(client.recv(32 * 1024))
        return got, server.closed

    assert run(main, seconds=1000) == (total, False)


def test_send_and_sendall_go_after_queued_write_output():
    def main():
        client, server = connected_pair(max_output=64 * MiB)
        server.write(b"q" * (8 * MiB))
        reader = microthreads.spawn(client.recv_exactly, 8 * MiB + 5)
        server.sendall(b"tail!")
        return reader.get()[-6:]

    assert run(main) == b"qtail!"


def test_a_connection_made_from_a_socketpair_reads_and_writes():
    def main():
        a, b = socket.socketpair()
        left, right = net.Connection(a), net.Connection(b)
        left.write(b"ping\n")
        line = right.recv_line()
        left.close()
        return line, right.recv_line()

    assert run(main) == (b"ping\n", b"")




def test_a_connection_dropped_without_close_leaves_its_descriptor_number_clean():
    def main():
        a, b = socket.socketpair()
        dropped = net.Connection(a)
        del a                                    # the Connection holds the only reference
        microthreads.spawn(b.sendall, b"one\n")
        assert dropped.recv_line() == b"one\n"   # it waited: its descriptor is registered
        number = dropped.fileno()
        del dropped                              # no close(): the socket's finalizer closes
        b.close()
        a, b = socket.socketpair()               # a new file under the same number
        if b.fileno() == number:
            a, b = b, a
        assert a.fileno() == number
        fresh = net.Connection(a)
        microthreads.spawn(b.sendall, b"two\n")
        line = fresh.recv_line()                 # waits: a stale registration would hang
        fresh.close()
        b.close()
        return line

    assert run(main, seconds=5) == b"two\n"


# ------------------------------------------------------------------ the eager budget


def test_charging_a_budgets_worth_of_work_yields_once_to_the_other_tasklets():
    events = []

    def main():
        conn, raw = connection_and_socket()
        microthreads.spawn(events.append, "the other ran")
        conn.charge(net.stream.EAGER_BUDGET - 1)
        events.append("under the budget")
        conn.charge(1)
        events.append("the budget spent")
        conn.charge(net.stream.EAGER_BUDGET - 1)
        events.append("a fresh budget")
        conn.close()
        raw.close()

    run(main)
    assert events == ["under the budget", "the other ran", "the budget spent", "a fresh budget"]


def test_set_keepalive_sets_the_probes_and_the_user_timeout_on_the_socket():
    def main():
        conn, raw = connection_and_socket()
        conn.set_keepalive(7, 5, 3, user_timeout=2.5)
        with socket.fromfd(conn.fileno(), socket.AF_INET, socket.SOCK_STREAM) as same:
            options = [same.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                       *(same.getsockopt(socket.IPPROTO_TCP, option) for option in
                         (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT,
                          socket.TCP_USER_TIMEOUT))]
        conn.close()
        raw.close()
        return options

    if not hasattr(socket, "TCP_USER_TIMEOUT"):
        pytest.skip("no TCP_USER_TIMEOUT on this platform")
    assert run(main) == [1, 7, 5, 3, 2500]
