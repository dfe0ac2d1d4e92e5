"""The chat's web port (PROTOCOL.md, "The web page"): the page, and web members
over a WebSocket at /ws in one room with telnet members.

``python -m chat`` runs as a subprocess (chat_helpers); the web members are
the `websockets` library's blocking client, a real one.
"""

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from chat_helpers import GREETING, ROOT, TIMEOUT, chat_servers
from redis_helpers import RedisServer, needs_redis
from test_chat_protocol import push_until
from tls_helpers import client_context, needs_openssl

sync_client = pytest.importorskip("websockets.sync.client")
wsexc = pytest.importorskip("websockets.exceptions")
pytest.importorskip("microthreads.wsgi")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def web_server(start, *args, **flags):
    return start("--web-port", str(free_port()), *args, **flags)


class WebMember:
    """One web member: a `websockets` client at /ws; lines are its messages."""

    def __init__(self, server, scheme="ws", ssl=None, origin=None):
        self.ws = sync_client.connect(f"{scheme}://127.0.0.1:{server.web_port}/ws", ssl=ssl,
                                      origin=origin, open_timeout=TIMEOUT,
                                      server_hostname="localhost" if ssl else None)

    def line(self):
        message = self.ws.recv(TIMEOUT)
        assert isinstance(message, str)
        return message

    def expect(self, *lines):
        assert [self.line() for _ in lines] == list(lines)

    def say(self, text):
        self.ws.send(text)

    def join(self, handle):
        self.expect(GREETING)
        self.say(handle)
        self.expect(f"{handle} has joined the chat.")
        online = self.line()
        assert online.startswith("Online (")
        return online

    def close(self):
        self.ws.close()


def get(url, **kw):
    with urllib.request.urlopen(url, timeout=TIMEOUT, **kw) as answer:
        return answer.status, dict(answer.headers), answer.read()


def test_the_page_script_and_style_are_served_with_a_content_security_policy():
    with chat_servers() as start:
        server = web_server(start)
        base = f"http://127.0.0.1:{server.web_port}"
        status, headers, page = get(base + "/")
        _, js_headers, script = get(base + "/chat.js")
        _, css_headers, _css = get(base + "/chat.css")
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(base + "/nothing-here")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="/chat.js"' in page and b"<script>" not in page     # no inline script
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert js_headers["Content-Type"].startswith("text/javascript")
    assert css_headers["Content-Type"].startswith("text/css")
    assert b"innerHTML" not in script and b"textContent" in script
    assert missing.value.code == 404


def test_web_and_telnet_members_share_one_room_with_its_commands():
    with chat_servers() as start:
        server = web_server(start)
        alice = WebMember(server)
        assert alice.join("alice") == "Online (1): alice"
        bob = server.join("bob")
        assert bob.online == "Online (2): alice, bob"
        alice.expect("bob has joined the chat.")
        alice.say("<img src=x onerror=alert(1)>")
        line = "alice says: <img src=x onerror=alert(1)>"
        alice.expect(line)
        bob.expect(line)
        bob.say("/msg alice psst")
        bob.expect("[private to alice] psst")
        alice.expect("[private] bob: psst")
        alice.say("/nick alicia")
        alice.expect("alice is now known as alicia.")
        bob.expect("alice is now known as alicia.")
        alice.say("/me waves")
        bob.expect("* alicia waves")
        alice.expect("* alicia waves")
        alice.say("/who")
        alice.expect("Online (2): alicia, bob")
        alice.say("/quit")
        assert alice.line() == "Goodbye."
        bob.expect("alicia has left the chat.")
        with pytest.raises(wsexc.ConnectionClosed):
            alice.line()


def test_a_web_member_closing_its_socket_is_seen_leaving():
    with chat_servers() as start:
        server = web_server(start)
        bob = server.join("bob")
        alice = WebMember(server)
        alice.join("alice")
        bob.expect("alice has joined the chat.")
        alice.close()
        bob.expect("alice has left the chat.")


def test_web_input_is_filtered_as_telnet_input_and_the_handle_rules_hold():
    with chat_servers() as start:
        server = web_server(start)
        carol = server.join("carol")
        web = WebMember(server)
        web.expect(GREETING)
        web.say("CAROL")
        web.expect("That handle is already taken.", GREETING)
        web.say("dave")
        web.expect("dave has joined the chat.", "Online (2): carol, dave")
        carol.expect("dave has joined the chat.")
        web.say("a\x1b[2Jb\u202ec\nd")
        carol.expect("dave says: abcd")
        web.expect("dave says: abcd")
        web.say("x" * 5000)
        web.expect("Line too long (limit 4096 bytes).")


def test_an_origin_of_another_site_is_refused_and_the_page_s_own_accepted():
    with chat_servers() as start:
        server = web_server(start)
        with pytest.raises(wsexc.InvalidStatus) as refused:
            WebMember(server, origin="http://evil.example")
        member = WebMember(server, origin=f"http://127.0.0.1:{server.web_port}")
        member.expect(GREETING)
    assert refused.value.response.status_code == 403


def test_a_web_member_is_told_of_the_shutdown_and_closed_with_1001():
    with chat_servers() as start:
        server = web_server(start)
        web = WebMember(server)
        web.join("erin")
        server.send_signal(signal.SIGTERM)
        web.expect("Server is shutting down.")
        with pytest.raises(wsexc.ConnectionClosed) as closed:
            web.line()
        assert server.wait() == 0
    assert closed.value.rcvd.code == 1001


def test_web_members_count_against_max_clients():
    with chat_servers() as start:
        server = web_server(start, max_clients=1)
        first = WebMember(server)
        first.expect(GREETING)
        second = WebMember(server)
        second.expect("Server is full, try again later.")
        with pytest.raises(wsexc.ConnectionClosed):
            second.line()


def test_the_web_port_is_off_with_0_and_named_in_the_log_otherwise():
    with chat_servers() as start:
        quiet = start()                         # the helpers pass --web-port 0
        loud = web_server(start)
    assert "chat page on" not in quiet.log_text()
    assert f"chat page on http://127.0.0.1:{loud.web_port}/" in loud.log_text()


@needs_openssl
def test_over_tls_the_page_is_https_and_the_socket_wss(certs):
    with chat_servers() as start:
        server = web_server(start, tls_cert=certs.server, tls_key=certs.server_key)
        context = client_context(certs)
        status, headers, _page = get(f"https://localhost:{server.web_port}/", context=context)
        web = WebMember(server, scheme="wss", ssl=context)
        web.join("frank")
    assert status == 200 and "Content-Security-Policy" in headers
    assert f"chat page on https://127.0.0.1:{server.web_port}/" in server.log_text()


@pytest.fixture
def redis():
    """A redis-server of the test's own (stopped after it)."""
    server = RedisServer()
    yield server
    server.stop()


@needs_redis
@pytest.mark.slow
def test_a_federated_room_carries_web_members_across_nodes(redis):
    with chat_servers() as start:
        a = web_server(start, redis=redis.url)
        b = start(redis=redis.url)
        web = WebMember(a)
        web.join("wendy")
        tom = b.join("tom")
        assert tom.online == "Online (2): wendy, tom"
        web.expect("tom has joined the chat.")
        tom.say("hello, browser")
        web.expect("tom says: hello, browser")
        web.say("/msg tom hi across")
        web.expect("[private to tom] hi across")
        tom.expect("tom says: hello, browser", "[private] wendy: hi across")
        web.close()
        tom.expect("wendy has left the chat.")


@needs_redis
@pytest.mark.slow
def test_workers_serve_one_web_port_the_supervisor_holds(redis):
    with chat_servers() as start:
        supervisor = web_server(start, redis=redis.url, workers=2, rate=0, join_rate=0)
        port = supervisor.web_port
        supervisor.wait_for_log(rf"chat page of the workers on http://127.0.0.1:{port}/")
        for worker in range(2):     # each worker serves that port, not one of its own
            supervisor.wait_for_log(rf"worker {worker} pid \d+ INFO chat: chat page on"
                                    rf" http://127.0.0.1:{port}/")
        tom = supervisor.join("tom")
        members = []
        for index in range(16):     # the kernel spreads them over both workers
            members.append(WebMember(supervisor))
            members[-1].join(f"web{index}")
            tom.expect(f"web{index} has joined the chat.")
            joined = {int(worker) for worker in re.findall(
                r"worker (\d) pid \d+ INFO chat: web\d+ joined", supervisor.log_text())}
            if joined == {0, 1}:
                break
        assert joined == {0, 1}, "every web member joined the same worker"
        tom.say("hello, browsers")
        tom.expect("tom says: hello, browsers")   # the room's order: tom's line first
        members[0].say("hello, telnet")           # (said at once, two workers race to Redis)
        tom.expect("web0 says: hello, telnet")
        said = ["tom says: hello, browsers", "web0 says: hello, telnet"]
        for member in members:
            lines = [member.line()]
            while lines[-1] != said[-1]:        # after the later members' joins
                lines.append(member.line())
            assert lines[-2:] == said
            member.close()


def test_a_supervisor_whose_web_port_is_taken_exits_at_once():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "chat", "--host", "127.0.0.1", "--port", "0", "--workers", "2",
             "--redis", "redis://127.0.0.1:1/0", "--web-port", str(port)], cwd=ROOT,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "worker 0 started" not in done.stderr


def slow_web_member(port, handle):
    """A web member that logs in and then never reads, its receive buffer tiny:
    a raw socket speaking just enough WebSocket (RFC 6455's example key; the
    handle as one masked text frame, the zero mask)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    deadline = time.monotonic() + TIMEOUT
    while b"\r\n\r\n" not in head and time.monotonic() < deadline:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 "), head
    name = handle.encode()
    sock.sendall(bytes([0x81, 0x80 | len(name)]) + b"\0\0\0\0" + name)
    return sock


def test_a_web_member_that_never_reads_is_dropped_by_backlog_and_seen_leaving():
    with chat_servers() as start:
        server = web_server(start, rate=0, max_line=65536, max_backlog=65536)
        talker, watcher = server.room("talker", "watcher")
        slow = slow_web_member(server.web_port, "slow")
        try:
            for client in (talker, watcher):
                client.expect("slow has joined the chat.")
            numbers, others = push_until(talker, [talker, watcher], "slow has left the chat.",
                                         limit_bytes=64 << 20)
            for client in (talker, watcher):
                assert others[client] == ["slow has left the chat."]
                assert numbers[client] == list(range(len(numbers[client])))
            server.wait_for_log(r"slow left \(output backlog over 65536 bytes")
        finally:
            slow.close()


def test_a_web_member_is_held_to_the_rate_and_the_login_timeout():
    with chat_servers() as start:
        server = web_server(start, rate=1, login_timeout=1)
        web = WebMember(server)
        web.join("rita")                         # the handle took a token of the burst of 2
        for n in range(6):
            web.say(f"line {n}")
        got = [web.line()]
        while got[-1] != "You are sending too fast; slow down.":
            got.append(web.line())
        assert got[:-1] == [f"rita says: line {n}" for n in range(len(got) - 1)]
        assert len(got) - 1 < 6                 # some were dropped over the rate
        server.wait_for_log(r"over its rate \(--rate 1\): lines dropped")   # as for telnet
        idle = WebMember(server)
        idle.expect(GREETING, "Login timed out.")
        with pytest.raises(wsexc.ConnectionClosed):
            idle.line()
