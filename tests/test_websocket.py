"""microthreads.websocket against the `websockets` library as a real client,
against its own client, and against hand-made frames on a raw socket.

The `websockets` clients are its blocking ones (websockets.sync), run in a
worker thread with ``run_in_thread`` while the hub serves: a client that
blocked the hub could never be answered.
"""

import struct
import tracemalloc
import urllib.request
import zlib

import pytest
from net_helpers import LIMIT, run
from tls_helpers import client_context, needs_openssl, server_context

import microthreads
from microthreads import net

websocket = pytest.importorskip("microthreads.websocket")
sync_client = pytest.importorskip("websockets.sync.client")
wsexc = pytest.importorskip("websockets.exceptions")


def serve(handler, **accept_options):
    """A StreamServer on 127.0.0.1 whose handler gets each accepted WebSocket;
    what the handlers saw: (``ws``, the handler's return value or error)."""
    seen = []

    def on_connection(conn):
        try:
            ws = websocket.accept(conn, **accept_options)
        except websocket.HandshakeError as exc:
            seen.append(("refused", exc.status))
            return
        try:
            seen.append((ws, handler(ws)))
        except Exception as exc:
            seen.append((ws, exc))

    server = net.StreamServer(("127.0.0.1", 0), on_connection).start()
    return server, f"ws://127.0.0.1:{server.address[1]}", seen


def echo(ws):
    for message in ws:
        ws.send(message)
    return ws.close_code


def in_thread(fn):
    """``fn()`` in a worker thread, the hub serving meanwhile; its value."""
    return microthreads.run_in_thread(fn)


def test_a_websockets_client_gets_text_and_binary_echoed_and_closes_with_1000():
    def main():
        server, url, seen = serve(echo)

        def client():
            with sync_client.connect(url + "/echo", open_timeout=LIMIT) as ws:
                ws.send("héllo")
                text = ws.recv(LIMIT)
                ws.send(b"\x00\xff")
                data = ws.recv(LIMIT)
            return text, data

        result = in_thread(client)
        microthreads.sleep(0.05)
        server.stop()
        return result, seen

    (text, data), seen = run(main)
    assert (text, data) == ("héllo", b"\x00\xff")
    [(ws, code)] = seen
    assert code == 1000 and ws.closed and ws.path == "/echo"


def test_a_fragmented_message_is_received_whole():
    def main():
        server, url, seen = serve(lambda ws: [ws.receive(), ws.receive(), ws.receive()])

        def client():
            with sync_client.connect(url, open_timeout=LIMIT) as ws:
                ws.send(["frag", "men", "ted"])
                ws.send([b"a", b"b"])

        in_thread(client)
        microthreads.sleep(0.05)
        server.stop()
        return seen

    [(_ws, messages)] = run(main)
    assert messages == ["fragmented", b"ab", None]        # None: the client closed


def test_a_ping_from_the_client_is_answered_while_the_server_receives():
    def main():
        server, url, _seen = serve(echo)

        def client():
            with sync_client.connect(url, open_timeout=LIMIT) as ws:
                return ws.ping(b"are you there").wait(LIMIT)

        answered = in_thread(client)
        server.stop()
        return answered

    assert run(main) is True


def test_the_server_closes_with_its_code_and_reason_and_the_client_sees_them():
    def main():
        server, url, seen = serve(lambda ws: ws.close(4000, "bye now"))

        def client():
            with sync_client.connect(url, open_timeout=LIMIT) as ws, \
                    pytest.raises(wsexc.ConnectionClosed) as info:
                ws.recv(LIMIT)
            return info.value.rcvd.code, info.value.rcvd.reason

        result = in_thread(client)
        server.stop()
        return result, seen

    (code, reason), [(ws, _)] = run(main)
    assert (code, reason) == (4000, "bye now")
    assert (ws.closed, ws.close_code, ws.close_reason) == (True, 4000, "bye now")


def test_a_message_over_the_limit_closes_with_1009():
    def main():
        server, url, seen = serve(echo, max_message=1000)

        def client():
            with sync_client.connect(url, open_timeout=LIMIT) as ws:
                ws.send("x" * 1000)
                first = ws.recv(LIMIT)
                ws.send("y" * 1001)
                with pytest.raises(wsexc.ConnectionClosedError) as info:
                    ws.recv(LIMIT)
            return len(first), info.value.rcvd.code

        result = in_thread(client)
        server.stop()
        return result, seen

    (first, code), [(_ws, server_code)] = run(main)
    assert (first, code, server_code) == (1000, 1009, 1009)


def _deflated_frame(data):
    """A client's binary frame of ``data`` under permessage-deflate (RSV1 set,
    the all-zero mask key, a 16- or 64-bit length)."""
    squeezer = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = squeezer.compress(data) + squeezer.flush(zlib.Z_SYNC_FLUSH)
    payload = payload[:-4]                                   # RFC 7692 7.2.1
    length = struct.pack("!BH", 0x80 | 126, len(payload)) if len(payload) < 1 << 16 \
        else struct.pack("!BQ", 0x80 | 127, len(payload))
    return bytes([0x80 | 0x40 | 0x2]) + length + b"\0\0\0\0" + payload


def test_a_compressed_bomb_closes_with_1009_without_being_inflated():
    limit = 64 * 1024
    bomb = _deflated_frame(bytes(64 * 1024 * 1024))          # 64 MiB of zeros in ~64 KiB

    def main():
        server, _url, seen = serve(echo, compression=True, max_message=limit)
        conn, head = _raw_upgrade(server.address[1],
                                  b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        tracemalloc.start()
        try:
            conn.sendall(bomb)
            frame = conn.recv_exactly(4)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        server.stop()
        return head, frame, peak, seen

    head, frame, peak, [(_ws, code)] = run(main)
    assert b"permessage-deflate" in head
    assert frame[0] == 0x88 and struct.unpack("!H", frame[2:4])[0] == 1009 and code == 1009
    assert peak < 4 * 1024 * 1024, peak      # about 0.7 MiB; inflated whole it was 200 MiB


def test_compressed_messages_up_to_the_limit_pass_whole_and_one_byte_more_closes_with_1009():
    limit = 300_000

    def main():
        server, url, seen = serve(echo, compression=True, max_message=limit)
        ws = websocket.connect(url, compression=True, max_message=limit)
        ws.send(b"ab" * 50 + bytes(limit - 100))             # one read inflates past 64 KiB
        ws.send("z" * 1000)
        got = [ws.receive(), ws.receive()]
        ws.send(bytes(limit + 1))
        after = ws.receive()
        server.stop()
        return got, after, ws.close_code, seen

    got, after, code, [(_ws, server_code)] = run(main)
    assert got == [b"ab" * 50 + bytes(limit - 100), "z" * 1000]
    assert after is None and code == server_code == 1009


def _masked_frame(opcode, payload):
    """A client frame, FIN set, masked with the all-zero key (so unchanged)."""
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def _raw_upgrade(port, extra=b""):
    """A stdlib-free raw client: a microthreads Connection that sent an upgrade
    request and read the 101 answer's head; (conn, head)."""
    conn = net.connect(("127.0.0.1", port), timeout=LIMIT)
    conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += conn.recv_line()
    return conn, head


def test_invalid_utf8_in_a_text_message_closes_with_1007():
    def main():
        server, _url, seen = serve(echo)
        conn, head = _raw_upgrade(server.address[1])
        conn.sendall(_masked_frame(0x1, b"ok\xff"))
        frame = conn.recv_exactly(4)
        conn.recv_exactly(frame[1] - 2)                      # the reason
        rest = conn.recv()
        server.stop()
        return head, frame, rest, seen

    head, frame, rest, [(ws, code)] = run(main)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head   # RFC 6455's example
    assert frame[0] == 0x88 and struct.unpack("!H", frame[2:4])[0] == 1007
    assert rest == b""                                       # then the server closed
    assert code == 1007 and ws.close_code == 1007


def test_a_protocol_error_closes_with_1002():
    def main():
        server, _url, seen = serve(echo)
        conn, _head = _raw_upgrade(server.address[1])
        conn.sendall(bytes([0x80 | 0x3, 0x80]) + b"\0\0\0\0")   # reserved opcode 3
        frame = conn.recv_exactly(4)
        server.stop()
        return frame, seen

    frame, [(_ws, code)] = run(main)
    assert struct.unpack("!H", frame[2:4])[0] == 1002 and code == 1002


def test_a_message_read_with_a_protocol_error_behind_it_is_answered_before_the_close():
    def main():
        server, _url, seen = serve(echo)
        conn, _head = _raw_upgrade(server.address[1])
        conn.sendall(_masked_frame(0x1, b"first") + bytes([0x80 | 0x3, 0x80]) + b"\0\0\0\0")
        answer = b""
        while data := conn.recv():
            answer += data
        server.stop()
        return answer, seen

    answer, [(_ws, code)] = run(main)
    assert answer.startswith(b"\x81\x05first\x88")           # the echo, then the close
    assert struct.unpack("!H", answer[9:11])[0] == 1002 and code == 1002


def test_an_origin_from_another_host_is_refused_with_403_and_the_same_host_is_accepted():
    def main():
        server, url, seen = serve(echo)
        port = server.address[1]

        def client(origin):
            try:
                with sync_client.connect(url, origin=origin, open_timeout=LIMIT) as ws:
                    ws.send("hi")
                    return ws.recv(LIMIT)
            except wsexc.InvalidStatus as exc:
                return exc.response.status_code

        evil = in_thread(lambda: client("http://evil.example"))
        same = in_thread(lambda: client(f"http://127.0.0.1:{port}"))
        microthreads.sleep(0.05)
        server.stop()
        return evil, same, seen

    evil, same, seen = run(main)
    assert (evil, same) == (403, "hi")
    assert seen[0] == ("refused", "403 Forbidden")


def test_an_allowed_origins_list_admits_only_those():
    checks = [websocket.origin_allowed(origin, "chat.example:8080", ["https://chat.example"])
              for origin in ("https://chat.example", "https://CHAT.example:443",
                             "http://chat.example", "https://chat.example:8080", None)]
    assert checks == [True, True, False, False, True]
    assert websocket.origin_allowed("http://anything", "x", ["*"])
    assert websocket.origin_allowed("http://h:80", "h", None)
    assert not websocket.origin_allowed("null", "h", None)


def test_a_plain_http_request_gets_426_and_the_handler_a_handshake_error():
    def main():
        server, _url, seen = serve(echo)
        conn = net.connect(server.address, timeout=LIMIT)
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while data := conn.recv():
            answer += data
        server.stop()
        return answer, seen

    answer, seen = run(main)
    assert answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert seen == [("refused", "426 Upgrade Required")]


def test_permessage_deflate_is_agreed_when_offered_and_asked_for():
    def main():
        server, url, _seen = serve(echo, compression=True)

        def client():
            with sync_client.connect(url, open_timeout=LIMIT) as ws:   # offers deflate
                ws.send("squeeze " * 1000)
                return ws.recv(LIMIT), ws.response.headers.get("Sec-WebSocket-Extensions")

        result = in_thread(client)
        server.stop()
        return result

    message, agreed = run(main)
    assert message == "squeeze " * 1000 and agreed.startswith("permessage-deflate")


def test_without_compression_deflate_is_not_agreed():
    def main():
        server, url, _seen = serve(echo)

        def client():
            with sync_client.connect(url, open_timeout=LIMIT) as ws:
                return ws.response.headers.get("Sec-WebSocket-Extensions")

        result = in_thread(client)
        server.stop()
        return result

    assert run(main) is None


def test_its_own_client_echoes_sees_the_close_and_receive_returns_none_after():
    def main():
        server, url, seen = serve(echo)
        ws = websocket.connect(url + "/x?y=1", compression=True)
        ws.send("one")
        ws.send(b"two")
        got = [ws.receive(), ws.receive()]
        ws.close(1001, "going")
        after = ws.receive()
        microthreads.sleep(0.05)
        server.stop()
        return got, after, ws.close_code, seen

    got, after, code, [(server_ws, server_code)] = run(main)
    assert got == ["one", b"two"] and after is None and code == 1001
    assert server_code == 1001 and server_ws.path == "/x?y=1"


def test_send_after_close_raises_connection_closed():
    def main():
        server, url, _seen = serve(echo)
        ws = websocket.connect(url)
        ws.close()
        server.stop()
        with pytest.raises(websocket.ConnectionClosed):
            ws.send("late")
        return ws.closed

    assert run(main) is True


def test_a_receive_timeout_raises_timeout_error_and_leaves_it_open(virtual_clock):
    def main():
        server, url, _seen = serve(echo)
        ws = websocket.connect(url)
        with pytest.raises(TimeoutError):
            ws.receive(timeout=30)
        ws.send("still here")
        message = ws.receive()
        ws.close()
        server.stop()
        return message

    assert run(main, seconds=100) == "still here"


def test_a_slow_reader_is_dropped_when_its_backlog_passes_the_bound():
    def main():
        sent = []

        def flood(ws):
            try:
                for _ in range(4000):                 # 64 MiB at most; a bug fails, not hangs
                    ws.send(b"z" * 16384)
                    sent.append(1)
            except websocket.ConnectionClosed:
                return ws.close_code

        server, url, seen = serve(flood, max_output=65536, on_full="close")
        reader = websocket.connect(url)               # never reads
        while not seen:
            microthreads.sleep(0.01)
        server.stop()
        reader.connection.close()
        return len(sent), seen

    count, [(ws, code)] = run(main)
    assert code == 1006 and ws.closed and count < 4000
    assert "backlog" in ws.close_reason


def test_a_keepalive_ping_without_a_pong_closes_with_1011(virtual_clock):
    def main():
        server, _url, seen = serve(lambda ws: ws.receive(), ping_interval=10, ping_timeout=5)
        conn, _head = _raw_upgrade(server.address[1])    # answers no ping
        while not seen:
            microthreads.sleep(1)
        frames = conn.recv()
        server.stop()
        return virtual_clock.now(), frames, seen

    now, frames, [(ws, result)] = run(main, seconds=100)
    assert result is None and ws.close_code == 1011
    assert 15 <= now < 20
    assert frames.startswith(b"\x89\x09keepalive")       # the ping, then the close
    assert b"\x88" in frames


def test_a_keepalive_ping_answered_keeps_the_websocket_open(virtual_clock):
    def main():
        server, url, seen = serve(lambda ws: ws.receive(), ping_interval=10, ping_timeout=5)
        ws = websocket.connect(url)
        got = []
        reader = microthreads.spawn(lambda: got.append(ws.receive()))   # answers pings
        microthreads.sleep(60)
        ws.send("done")
        microthreads.sleep(1)
        ws.close()
        reader.join()
        server.stop()
        return seen

    [(_ws, result)] = run(main, seconds=200)
    assert result == "done"


def test_a_prepared_broadcast_reaches_every_socket_in_order():
    def broadcast():
        sockets = []

        def keep(ws):
            sockets.append(ws)
            return ws.receive()

        server, url, _seen = serve(keep, compression=True)
        clients = [websocket.connect(url), websocket.connect(url, compression=True)]
        while len(sockets) < 2:
            microthreads.sleep(0.01)
        prepared = websocket.Prepared(["a", b"b", "c"])
        for ws in sockets:
            ws.send_prepared(prepared)
        got = [[client.receive() for _ in range(3)] for client in clients]
        for client in clients:
            client.close()
        server.stop()
        return got

    assert run(broadcast) == [["a", b"b", "c"]] * 2


@needs_openssl
def test_wss_with_its_own_client_and_a_websockets_client(certs):
    def main():
        seen = []

        def on_connection(conn):
            ws = websocket.accept(conn)
            seen.append(ws)
            echo(ws)

        server = net.StreamServer(("127.0.0.1", 0), on_connection,
                                  ssl=server_context(certs)).start()
        url = f"wss://localhost:{server.address[1]}/"
        ws = websocket.connect(url, ssl=client_context(certs))
        ws.send("secret")
        mine = ws.receive()
        ws.close()

        def client():
            with sync_client.connect(url, ssl=client_context(certs), open_timeout=LIMIT) as c:
                c.send("also")
                return c.recv(LIMIT)

        theirs = in_thread(client)
        server.stop()
        return mine, theirs

    assert run(main) == ("secret", "also")


def test_connect_refuses_a_url_that_is_not_ws():
    with pytest.raises(ValueError):
        microthreads.run(websocket.connect, "http://127.0.0.1:1/")


def wsgi_app(seen):
    """A WSGI app: /ws upgrades and echoes; a refused upgrade gets the
    HandshakeError's answer; anything else a page."""
    def app(environ, start_response):
        if environ["PATH_INFO"] != "/ws":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"a page\n"]
        try:
            ws = websocket.accept(environ)
        except websocket.HandshakeError as exc:
            seen.append(exc.status)
            start_response(exc.status, exc.headers)
            return [exc.body]
        seen.append(echo(ws))
        return []
    return app


def test_on_wsgi_server_a_websockets_client_upgrades_and_pages_are_served_beside():
    wsgi = pytest.importorskip("microthreads.wsgi")

    def main():
        seen = []
        server = wsgi.WSGIServer(("127.0.0.1", 0), wsgi_app(seen)).start()
        port = server.address[1]

        def client():
            with sync_client.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=LIMIT,
                                     origin=f"http://127.0.0.1:{port}") as ws:
                ws.send("over wsgi")
                first = ws.recv(LIMIT)
                ws.send(b"\x01" * 70000)                  # more than one read
                second = ws.recv(LIMIT)
            try:
                sync_client.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=LIMIT,
                                    origin="https://elsewhere.example")
            except wsexc.InvalidStatus as exc:
                refused = exc.response.status_code
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=LIMIT) as page:
                body = page.read()
            return first, len(second), refused, body

        result = in_thread(client)
        microthreads.sleep(0.05)
        server.stop()
        return result, seen

    (first, size, refused, body), seen = run(main)
    assert (first, size, refused, body) == ("over wsgi", 70000, 403, b"a page\n")
    assert seen == [1000, "403 Forbidden"]


def test_accept_from_an_environ_without_the_upgrade_hook_is_a_runtime_error():
    with pytest.raises(RuntimeError, match=r"microthreads\.upgrade"):
        websocket.accept({"REQUEST_METHOD": "GET", "PATH_INFO": "/"})
