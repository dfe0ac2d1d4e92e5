"""listen, connect, Listener and StreamServer: addresses, failures, serving many."""

import gc
import logging
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from net_helpers import ipv6_loopback_available, need_descriptors, run

import microthreads
from microthreads import net


def echo_lines(conn):
    for line in conn:
        conn.write(line)


# ------------------------------------------------------------------ listen and connect


def test_listening_on_port_zero_reports_the_port_it_got():
    def main():
        with net.listen(("127.0.0.1", 0)) as listener:
            return listener.address

    host, port = run(main)
    assert host == "127.0.0.1"
    assert port > 0


def test_connect_to_a_port_nobody_listens_on_raises_network_error():
    with socket.socket() as placeholder:         # a port of ours that does not listen
        placeholder.bind(("127.0.0.1", 0))
        address = placeholder.getsockname()

        def main():
            with pytest.raises(net.NetworkError) as info:
                net.connect(address, timeout=5)
            return info.value

        error = run(main)
    assert isinstance(error, ConnectionError)
    assert "refused" in str(error).lower()


def test_connect_to_a_listener_whose_backlog_is_full_times_out(virtual_clock):
    def main():
        with net.listen(("127.0.0.1", 0), backlog=0) as listener:   # never accepts
            fillers = []
            for _ in range(4):                   # the accept queue holds one: the rest wait
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(listener.address)
                fillers.append(filler)
            try:
                with pytest.raises(TimeoutError):
                    net.connect(listener.address, timeout=3)
                return virtual_clock.now()
            finally:
                for filler in fillers:
                    filler.close()

    assert run(main) == 3.0


def test_connect_to_a_unix_listener_whose_backlog_is_full_times_out(tmp_path, virtual_clock):
    path = str(tmp_path / "full.sock")

    def main():
        with net.listen(path, backlog=0) as listener:
            fillers = []
            while True:                          # until the kernel refuses another
                filler = socket.socket(socket.AF_UNIX)
                filler.setblocking(False)
                fillers.append(filler)
                if filler.connect_ex(listener.address):
                    break
            try:
                with pytest.raises(TimeoutError):
                    net.connect(path, timeout=2)
                return virtual_clock.now()
            finally:
                for filler in fillers:
                    filler.close()

    assert 2.0 <= run(main) <= 2.1


def test_connect_by_hostname_resolves_and_reaches_the_listener():
    def main():
        with net.listen(("127.0.0.1", 0)) as listener:
            server = microthreads.spawn(listener.accept)
            client = net.connect(("localhost", listener.address[1]), timeout=5)
            client.write(b"by name\n")
            line = server.get().recv_line()
            client.close()
            return line

    assert run(main) == b"by name\n"


def test_a_unix_socket_server_and_client_exchange_lines(tmp_path):
    path = str(tmp_path / "echo.sock")

    def main():
        server = net.StreamServer(path, echo_lines).start()
        try:
            client = net.connect(path)
            client.write(b"over unix\n")
            line = client.recv_line()
            client.close()
            return server.address, line
        finally:
            server.stop()

    assert run(main) == (path, b"over unix\n")
    assert not os.path.exists(path)              # the listener removed its socket file


def test_listening_on_a_unix_path_replaces_a_stale_socket_file(tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()                                # the file stays behind

    def main():
        with net.listen(path) as listener:
            return listener.address

    assert run(main) == path


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback (::1) here")
def test_a_server_on_ipv6_loopback_serves_a_client():
    def main():
        server = net.StreamServer(("::1", 0), echo_lines).start()
        try:
            client = net.connect(server.address)
            client.write(b"over v6\n")
            line = client.recv_line()
            client.close()
            return server.address[0], client.peer[0], line
        finally:
            server.stop()

    assert run(main) == ("::1", "::1", b"over v6\n")


def test_closing_a_listener_wakes_a_tasklet_waiting_in_accept_with_network_error():
    def main():
        listener = net.listen(("127.0.0.1", 0))
        accepter = microthreads.spawn(listener.accept)
        microthreads.sleep(0)                    # it waits in accept now
        listener.close()
        accepter.join()
        return accepter.exception

    assert isinstance(run(main), net.NetworkError)


def test_accept_on_a_closed_listener_raises_network_error():
    def main():
        listener = net.listen(("127.0.0.1", 0))
        listener.close()
        listener.close()                         # idempotent
        with pytest.raises(net.NetworkError):
            listener.accept()

    run(main)


def test_connection_options_given_to_listen_apply_to_accepted_connections(virtual_clock):
    def main():
        with net.listen(("127.0.0.1", 0), timeout=4, on_full="close") as listener:
            _client = net.connect(listener.address)   # kept open: no EOF
            conn = listener.accept()
        with pytest.raises(TimeoutError):
            conn.recv_line()
        return conn.on_full, virtual_clock.now()

    assert run(main) == ("close", 4.0)


# ------------------------------------------------------------------ StreamServer


def test_a_stream_server_serves_500_concurrent_clients():
    need_descriptors(1100)
    clients = 500
    served = microthreads.Event()
    replies, live = [], []

    def client(server, i):
        conn = net.connect(server.address, timeout=5)
        try:
            conn.write(b"hello %d\n" % i)
            replies.append(conn.recv_line())
            if len(replies) == clients:
                live.append(len(server.connections))   # every handler alive at once
                served.set()
            served.wait()
        finally:
            conn.close()

    def main():
        server = net.StreamServer(("127.0.0.1", 0), echo_lines, backlog=1024).start()
        try:
            with microthreads.Group() as group:
                for i in range(clients):
                    group.spawn(client, server, i)
            microthreads.joinall(list(server.connections), timeout=5)
            assert not server.connections        # each saw its client's EOF and ended
        finally:
            server.stop()

    run(main, seconds=30)
    assert sorted(replies) == sorted(b"hello %d\n" % i for i in range(clients))
    assert live == [clients]


def test_a_handler_that_raises_is_logged_and_its_connection_closed(caplog):
    def handler(conn):
        conn.recv_line()
        raise ValueError("handler bug")

    def main():
        server = net.StreamServer(("127.0.0.1", 0), handler).start()
        try:
            client = net.connect(server.address)
            client.write(b"boom\n")
            return client.recv_line()            # b"": the server closed it
        finally:
            server.stop()

    with caplog.at_level(logging.DEBUG, logger="microthreads"):
        assert run(main) == b""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "handler for" in errors[0].getMessage()
    assert errors[0].exc_info[0] is ValueError


def test_a_handler_ending_in_network_error_is_not_logged_as_an_error(caplog):
    ended = microthreads.Event()

    def handler(conn):
        try:
            conn.recv_exactly(100)               # the client leaves before 100 bytes
        finally:
            ended.set()

    def main():
        server = net.StreamServer(("127.0.0.1", 0), handler).start()
        try:
            client = net.connect(server.address)
            client.write(b"short")
            client.close()
            ended.wait()
            microthreads.sleep(0)                # the handler's wrapper logs now
        finally:
            server.stop()

    with caplog.at_level(logging.DEBUG, logger="microthreads"):
        run(main)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("EOF after 5 of 100" in r.getMessage() for r in caplog.records
               if r.levelno == logging.DEBUG)


def test_clients_over_max_connections_get_the_refusal_line_and_are_closed():
    def refuse(conn):
        conn.write(b"server full\n")

    def main():
        server = net.StreamServer(("127.0.0.1", 0), echo_lines, max_connections=2,
                                  refuse=refuse).start()
        try:
            first, second = net.connect(server.address), net.connect(server.address)
            for conn in (first, second):         # both are being served
                conn.write(b"in\n")
                assert conn.recv_line() == b"in\n"
            third = net.connect(server.address)
            refused = third.recv_line(), third.recv_line()
            first.close()                        # room again: a new client is served
            while len(server.connections) > 1:
                microthreads.sleep(0.01)
            fourth = net.connect(server.address)
            fourth.write(b"in too\n")
            return refused, fourth.recv_line()
        finally:
            server.stop()

    assert run(main) == ((b"server full\n", b""), b"in too\n")


def test_stop_lets_handlers_finish_within_its_timeout_then_kills_the_rest(virtual_clock):
    events = []

    def handler(conn):
        seconds = float(conn.recv_line())
        try:
            microthreads.sleep(seconds)
            events.append(f"{seconds:g} s handler finished")
        except microthreads.TaskletExit:
            events.append(f"{seconds:g} s handler killed")
            raise

    def main():
        server = net.StreamServer(("127.0.0.1", 0), handler).start()
        clients = []
        for seconds in (1, 100):
            clients.append(net.connect(server.address))
            clients[-1].write(b"%d\n" % seconds)
        while len(server.connections) < 2:
            microthreads.sleep(0)
        microthreads.sleep(0.5)                  # both handlers are sleeping now
        server.stop(timeout=5)
        events.append(f"stopped at {virtual_clock.now():g}")
        with pytest.raises(net.NetworkError):
            net.connect(server.address)          # nobody listens any more
        return [client.recv(10) for client in clients]   # both were closed

    assert run(main) == [b"", b""]
    assert events == ["1 s handler finished", "100 s handler killed", "stopped at 5.5"]


def test_stop_without_timeout_kills_handlers_at_once():
    events = []

    def handler(conn):
        try:
            conn.recv_line()
        except microthreads.TaskletExit:
            events.append("killed")
            raise

    def main():
        server = net.StreamServer(("127.0.0.1", 0), handler).start()
        client = net.connect(server.address)
        while not server.connections:
            microthreads.sleep(0)
        microthreads.sleep(0)
        server.stop()
        events.append("stopped")
        return client.recv(10)

    assert run(main) == b""
    assert events == ["killed", "stopped"]


def test_serve_forever_returns_after_stop():
    events = []

    def main():
        server = net.StreamServer(("127.0.0.1", 0), echo_lines)

        def stopper():
            client = net.connect(server.address)
            client.write(b"served\n")
            events.append(client.recv_line())
            server.stop()

        microthreads.spawn_later(0.01, stopper)   # once serve_forever has started
        server.serve_forever()
        events.append("serve_forever returned")

    run(main)
    assert events == [b"served\n", "serve_forever returned"]


def test_a_handler_may_stop_its_own_server(virtual_clock):
    events = []

    def handler(conn):
        if conn.recv_line() == b"shutdown\n":
            server.stop(timeout=1)
            events.append("stop() returned in the handler")

    server = None

    def main():
        nonlocal server
        server = net.StreamServer(("127.0.0.1", 0), handler)
        idle = None

        def clients():
            nonlocal idle
            idle = net.connect(server.address)    # a second handler, left waiting
            admin = net.connect(server.address)
            admin.write(b"shutdown\n")

        microthreads.spawn_later(0.01, clients)
        server.serve_forever()
        events.append("serve_forever returned")
        return idle.recv(10)

    assert run(main) == b""                      # the other handler was ended too
    assert events == ["stop() returned in the handler", "serve_forever returned"]


def test_a_stopped_server_can_be_started_again():
    def main():
        server = net.StreamServer(("127.0.0.1", 0), echo_lines).start()
        server.stop()
        server.start()
        try:
            client = net.connect(server.address)
            client.write(b"again\n")
            return client.recv_line()
        finally:
            server.stop()

    assert run(main) == b"again\n"


# ------------------------------------------------------------------ fairness

FLOODER = textwrap.dedent("""
    import socket, sys, threading, time
    block = (b"x" * 63 + b"\\n") * 1024
    def flood():
        sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        try:
            while True:
                sock.sendall(block)
        except OSError:
            pass
    for _ in range(2):
        threading.Thread(target=flood, daemon=True).start()
    time.sleep(8)                                # then stop: a starved hub gets to see it
""")


def test_two_flooding_peers_cannot_starve_a_third_connection():
    flood_lines = {}
    flooding = microthreads.Semaphore(0)

    def handler(conn):
        for line in conn:
            if line == b"ping\n":
                conn.write(b"pong\n")
            else:
                count = flood_lines.get(conn, 0)
                flood_lines[conn] = count + 1
                if count == 10_000:
                    flooding.release()

    def main():
        server = net.StreamServer(("127.0.0.1", 0), handler).start()
        flooder = subprocess.Popen([sys.executable, "-c", FLOODER, str(server.address[1])])
        try:
            flooding.acquire()                   # both floods are pouring in
            flooding.acquire()
            before = sum(flood_lines.values())
            client = net.connect(server.address, timeout=5)
            for _ in range(20):
                client.write(b"ping\n")
                assert client.recv_line() == b"pong\n"
            during = sum(flood_lines.values()) - before
            still = flooder.poll() is None
            client.close()
            return during, still
        finally:
            flooder.kill()
            flooder.wait(5)
            server.stop()

    during, still_flooding = run(main, seconds=20)
    assert still_flooding                        # the answers came while the floods went on
    assert during > 0


# ------------------------------------------------------------------ EMFILE

EMFILE_SERVER = textwrap.dedent("""
    import logging, resource, socket, sys
    import microthreads
    from microthreads import net
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    listener = net.Listener(socket.socket(fileno=int(sys.argv[1])))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), hard))
    server = None
    def handler(conn):
        for line in conn:
            if line == b"quit\\n":
                server.stop()
                return
            conn.write(line)
    def main():
        global server
        server = net.StreamServer(listener, handler)
        server.serve_forever()
    microthreads.run(main)
    print("server stopped", flush=True)
""")


def test_accept_out_of_descriptors_closes_the_excess_clients_and_recovers():
    def echoed(conn):
        """True if the server echoes a line; False if it closed the connection."""
        try:
            conn.write(b"hi\n")
            return conn.recv_line() == b"hi\n"
        except net.NetworkError:
            return False

    with socket.create_server(("127.0.0.1", 0), backlog=64) as listening:
        address = listening.getsockname()
        listening.set_inheritable(True)
        server = subprocess.Popen(
            [sys.executable, "-c", EMFILE_SERVER, str(listening.fileno()), "40"],
            pass_fds=[listening.fileno()], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def main():
        served = []
        while True:                              # until the server runs out of descriptors
            conn = net.connect(address, timeout=5)
            conn.timeout = 5                     # a hang fails the test instead
            if not echoed(conn):
                break
            served.append(conn)
            assert len(served) < 40
        excess = [net.connect(address, timeout=5) for _ in range(5)]
        for conn in excess:
            conn.timeout = 5
            assert not echoed(conn)              # closed, not left hanging
        for conn in served[:5]:                  # free descriptors in the server
            conn.close()
        for _ in range(100):                     # it recovers by itself, soon
            conn = net.connect(address, timeout=5)
            conn.timeout = 5
            if echoed(conn):
                break
            microthreads.sleep(0.05)
        else:
            pytest.fail("the server never served again after descriptors were freed")
        conn.write(b"quit\n")
        return len(served)

    try:
        served = run(main, seconds=30)
        out, err = server.communicate(timeout=10)
    finally:
        server.kill()
        server.wait()
    assert served > 10
    assert out == b"server stopped\n"
    warnings = [line for line in err.decode().splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, err.decode()      # once per burst
    assert "Too many open files" in warnings[0]


def test_an_accept_flood_yields_so_handlers_run_before_the_backlog_is_drained():
    # Issue 19, item 8: the accept loop never yielded while accept() kept
    # succeeding, so a backlog of connections was drained in one run of the
    # hub before any handler (or any other tasklet) ran.
    clients = 200
    seen_at_start = []
    served = []

    def handler(conn):
        seen_at_start.append(len(server.connections))
        conn.sendall(b"hi\n")
        served.append(1)

    server = net.StreamServer(("127.0.0.1", 0), handler, backlog=clients + 16)

    def main():
        server.start()
        socks = []
        try:
            for _ in range(clients):                 # all queued before the server runs
                sock = socket.socket()
                sock.connect(server.address)          # loopback: completes in the backlog
                socks.append(sock)
            while len(served) < clients:
                microthreads.sleep(0.001)
        finally:
            for sock in socks:
                sock.close()
            server.stop()

    microthreads.run(main)
    assert len(seen_at_start) == clients
    # the first handler ran after one batch of accepts, not after the whole flood
    assert seen_at_start[0] <= net.server.ACCEPT_BUDGET < clients


def test_an_unknown_connection_option_is_refused_where_it_is_given(monkeypatch):
    unraisable = []                                # what __del__ methods would print
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(TypeError, match="unknown Connection option 'max_ouput'"):
        net.StreamServer(("127.0.0.1", 0), echo_lines, max_ouput=10)
    with pytest.raises(TypeError, match="unknown Connection option 'tiemout'"):
        net.listen(("127.0.0.1", 0), tiemout=1)

    def main():
        with net.listen(("127.0.0.1", 0)) as listener, \
                pytest.raises(TypeError, match="unknown Connection option 'bogus'"):
            net.connect(listener.address, bogus=True)

    microthreads.run(main)
    gc.collect()
    assert unraisable == []


def test_a_connection_whose_construction_failed_is_dropped_silently(monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    a, b = socket.socketpair()
    try:
        with pytest.raises(ValueError, match="on_full"):
            net.Connection(a, on_full="explode")
        gc.collect()
    finally:
        a.close()
        b.close()
    assert unraisable == []
