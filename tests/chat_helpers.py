"""Shared helpers for the chat service's end-to-end tests.

``chat_servers()`` starts ``python -m chat`` as a subprocess on a free port
(``--port 0``; the port is read from the ``chat listening on 127.0.0.1:PORT``
log line) and stops every server it started when the block ends, by its PID,
even when the test failed. ``Client`` is a small blocking client with a
timeout on every wait: it reads the server's output as events, each a text
line (checked to be UTF-8 ending in CRLF) or a telnet negotiation reply
(``IAC WONT x`` / ``IAC DONT x``), in the order they came.

``Client.sync()`` is the tool that replaces sleeps: it sends ``IAC DO
TIMING-MARK`` and waits for ``IAC WONT TIMING-MARK``. The server answers
after it has read everything sent before, and queues the answer behind all
the output it queued for this client before; so after a sync, every line
that earlier events sent to this client has been received.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque

#: Seconds to wait for an expected line: generous, for a loaded 2-core machine.
TIMEOUT = 10.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTENING = re.compile(r"chat listening on [0-9.]+:(\d+) ")   # --host may name another address
WEB_LISTENING = re.compile(r"chat page on https?://[0-9.]+:(\d+)/")

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
NOP, IP, AYT, GA = 241, 244, 246, 249
ECHO, SUPPRESS_GO_AHEAD, TIMING_MARK, TERMINAL_TYPE, NAWS = 1, 3, 6, 24, 31

GREETING = "What is your handle?"
#: The answers to an invalid handle, one per rule it breaks (PROTOCOL.md, Session 3).
EMPTY_HANDLE = ("Invalid handle: it is empty; use 1 to 32 letters, digits, '_', '-' or '.':"
                " letters of one script (Latin may go with Chinese, Japanese or Korean),"
                " digits of one kind.")
LONG_HANDLE = "Invalid handle: longer than 32 characters."
MISPLACED_MARK = ("Invalid handle: a combining mark must follow a letter or digit, at most 3"
                  " on one, not the same twice in a row.")


def not_allowed(shown):
    """The answer to a handle with a character not allowed, ``shown`` as the
    server shows it: ``'!' (U+0021)``, or ``U+200B`` for one not printable."""
    return f"Invalid handle: {shown} is not allowed; use letters, digits, '_', '-' or '.'."


def mixed_scripts(*names):
    """The answer to a handle whose letters mix the scripts ``names``."""
    listed = f"{', '.join(names[:-1])} and {names[-1]}"
    return (f"Invalid handle: it mixes the {listed} scripts; use letters of one script"
            " (Latin may go with Chinese, Japanese or Korean).")


def variant(shown, plain):
    """The answer to a compatibility variant (fullwidth, mathematical) of ``plain``."""
    return f"Invalid handle: {shown} is a variant of '{plain}': type '{plain}' itself."


INVALID = not_allowed("' ' (U+0020)")        # a handle with a space in it
TAKEN = "That handle is already taken."


def iac(*codes):
    """Telnet bytes: ``iac(DO, ECHO)`` is ``IAC DO ECHO``."""
    return bytes((IAC, *codes))


class ServerProcess:
    """One ``python -m chat`` subprocess; see ``chat_servers``."""

    def __init__(self, args):
        # no web port unless asked for (--web-port N later on the line wins)
        self.args = [sys.executable, "-m", "chat", "--host", "127.0.0.1", "--port", "0",
                     "--web-port", "0", *args]
        self.clients = []
        self.log = []                       # stderr lines, as they come
        self._log_changed = threading.Condition()
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, encoding="utf-8", errors="replace")
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read_log, daemon=True,
                                        name=f"chat log {self.pid}")
        self._reader.start()
        try:
            match = self.wait_for_log(LISTENING)
        except BaseException:
            self.stop()                     # it never listened: do not leave it running
            raise
        self.port = int(match.group(1))
        self.web_port = None
        if "--web-port" in args and args[args.index("--web-port") + 1] != "0":
            self.web_port = int(self.wait_for_log(WEB_LISTENING).group(1))

    def _read_log(self):
        for line in self.proc.stderr:
            with self._log_changed:
                self.log.append(line.rstrip("\n"))
                self._log_changed.notify_all()
        with self._log_changed:
            self.log.append(None)           # EOF: the process is gone
            self._log_changed.notify_all()

    def wait_for_log(self, pattern, timeout=TIMEOUT):
        """The first match of ``pattern`` (a regex) in a log line, waiting for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._log_changed:
            while True:
                for line in self.log:
                    if line is None:
                        raise AssertionError(f"the server exited ({self.proc.poll()}) before"
                                             f" logging {regex.pattern!r}:\n{self.log_text()}")
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the server did not log {regex.pattern!r} within"
                                         f" {timeout} s:\n{self.log_text()}")
                self._log_changed.wait(left)

    def log_text(self):
        return "\n".join(line for line in self.log if line is not None)

    # ------------------------------------------------------------ clients

    def connect(self, **options):
        """A new ``Client`` to this server (closed at the end of the test)."""
        client = Client(self.port, **options)
        self.clients.append(client)
        return client

    def join(self, handle, **options):
        """A new client logged in as ``handle``; the join and Online lines read."""
        client = self.connect(name=handle, **options)
        client.expect(GREETING)
        client.say(handle)
        client.expect(f"{handle} has joined the chat.")
        client.online = client.line()
        assert client.online.startswith("Online ("), client.online
        return client

    def room(self, *handles, **options):
        """Clients logged in as ``handles``, in order, each having read every join line."""
        clients = []
        for handle in handles:
            newcomer = self.join(handle, **options)
            for client in clients:
                client.expect(f"{handle} has joined the chat.")
            clients.append(newcomer)
        return clients

    # ------------------------------------------------------------ lifetime

    def send_signal(self, signum):
        self.proc.send_signal(signum)       # by PID: this process only

    def wait(self, timeout=TIMEOUT):
        """The exit status, waiting at most ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not exit within {timeout} s:\n"
                                 f"{self.log_text()}") from None

    def stop(self):
        """Close the clients and stop the process (SIGTERM, then SIGKILL)."""
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        self.proc.stderr.close()

    def check_log(self):
        """No traceback, error or critical line: ordinary disconnects are not errors."""
        bad = [line for line in self.log if line is not None and
               ("Traceback" in line or " ERROR " in line or " CRITICAL " in line)]
        assert not bad, f"the server logged errors:\n{self.log_text()}"


def _flag(name, value):
    return [f"--{name.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else
            str(value)]


@contextlib.contextmanager
def chat_servers():
    """Yields ``start(*args, **flags)``, which starts a server and returns its
    ``ServerProcess``; ``start(max_clients=3)`` passes ``--max-clients 3``.
    Every server started is stopped when the block ends, and its log checked
    for errors."""
    servers = []

    def start(*args, **flags):
        argv = list(args)
        for name, value in flags.items():
            argv += _flag(name, value)
        server = ServerProcess(argv)
        servers.append(server)
        return server

    failed = True
    try:
        yield start
        failed = False
    finally:
        for server in servers:
            server.stop()
    if not failed:
        for server in servers:
            server.check_log()


class Client:
    """A blocking TCP client to the chat server; every wait has a timeout.

    ``rcvbuf`` sets SO_RCVBUF before connecting (a tiny one makes a slow
    reader). Lines are returned without their CRLF; the server's output is
    checked as it is read: UTF-8 lines each ending in CRLF, and between
    them only 3-byte negotiation replies.
    """

    def __init__(self, port, *, rcvbuf=None, timeout=TIMEOUT, name="client"):
        self.name = name
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()         # every byte received, for raw checks
        self._buf = bytearray()             # received, not yet made into events
        self._events = deque()              # ("line", str) or ("iac", bytes)
        self._eof = False
        self.online = None

    def __repr__(self):
        return f"<Client {self.name} :{self.port}>"

    # ------------------------------------------------------------ sending

    def send(self, data):
        """Send ``data`` (bytes, or str as UTF-8) as it is."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def say(self, text):
        """Send one line, as ``text`` and CRLF."""
        self.send(text.encode("utf-8") + b"\r\n")

    # ------------------------------------------------------------ receiving

    def _parse(self):
        buf = self._buf
        while buf:
            if buf[0] == IAC:
                if len(buf) < 3:
                    return
                self._events.append(("iac", bytes(buf[:3])))
                del buf[:3]
                continue
            end = buf.find(b"\n")
            stop = buf.find(b"\xff")
            if end < 0 or 0 <= stop < end:
                assert stop < 0, f"{self}: IAC inside a text line: {bytes(buf[:200])!r}"
                return
            raw = bytes(buf[:end + 1])
            del buf[:end + 1]
            assert raw.endswith(b"\r\n") and b"\r" not in raw[:-2], \
                f"{self}: a line not ending in a single CRLF: {raw[:200]!r}"
            self._events.append(("line", raw[:-2].decode("utf-8")))   # strict UTF-8

    def _receive(self, deadline):
        """Read more into the event queue; False at EOF."""
        if self._eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        data = self.sock.recv(1 << 16)
        if not data:
            self._eof = True
            assert not self._buf, f"{self}: EOF inside a line: {bytes(self._buf[:200])!r}"
            return False
        self.received += data
        self._buf += data
        self._parse()
        return True

    def event(self, timeout=None):
        """The next event, ``("line", text)`` or ``("iac", bytes)``; None at EOF."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while not self._events:
                if not self._receive(deadline):
                    return None
        except TimeoutError:
            raise AssertionError(f"{self}: nothing within {timeout or self.timeout} s;"
                                 f" unfinished input: {bytes(self._buf[-200:])!r}") from None
        return self._events.popleft()

    def line(self, timeout=None):
        """The next line, without its CRLF; AssertionError at EOF or on a negotiation."""
        event = self.event(timeout)
        assert event is not None, f"{self}: connection closed where a line was expected"
        kind, value = event
        assert kind == "line", f"{self}: got {value!r} where a line was expected"
        return value

    def lines(self, count, timeout=None):
        return [self.line(timeout) for _ in range(count)]

    def expect(self, *lines):
        """The next lines are exactly ``lines``."""
        got = []
        for _ in lines:
            got.append(self.line())
            assert got == list(lines[:len(got)]), f"{self}: got {got}, expected {list(lines)}"

    def lines_until(self, last, limit=100000, timeout=None, skip_replies=False):
        """Lines up to and including ``last`` (at most ``limit`` of them).

        ``skip_replies``: negotiation replies on the way are dropped, not an error.
        """
        got = []
        for _ in range(limit):
            event = self.event(timeout)
            assert event is not None, f"{self}: closed before {last!r}; last lines: {got[-5:]}"
            if event[0] == "iac" and skip_replies:
                continue
            assert event[0] == "line", f"{self}: got {event[1]!r} where a line was expected"
            got.append(event[1])
            if got[-1] == last:
                return got
        raise AssertionError(f"{self}: no {last!r} in {limit} lines; last ones: {got[-5:]}")

    def reply(self, timeout=None):
        """The next event, which must be a negotiation reply; its bytes."""
        event = self.event(timeout)
        assert event is not None, f"{self}: connection closed where a reply was expected"
        kind, value = event
        assert kind == "iac", f"{self}: got line {value!r} where a negotiation was expected"
        return value

    def sync(self, timeout=None):
        """Round trip: ``IAC DO TIMING-MARK`` answered by ``IAC WONT TIMING-MARK``.

        Lines received meanwhile stay queued for ``line()``; other replies too.
        """
        self.send(iac(DO, TIMING_MARK))
        deadline = time.monotonic() + (timeout or self.timeout)
        answer = iac(WONT, TIMING_MARK)
        while True:
            for index, event in enumerate(self._events):
                if event == ("iac", answer):
                    del self._events[index]
                    return
            try:
                alive = self._receive(deadline)
            except TimeoutError:
                alive = None
            assert alive, f"{self}: no WONT TIMING-MARK ({'EOF' if alive is False else 'timeout'})"

    def pending(self):
        """The events received and not yet taken."""
        return list(self._events)

    def expect_nothing_more(self):
        """Nothing was sent to this client but what was already read (a sync proves it)."""
        self.sync()
        assert not self._events, f"{self}: unexpected {list(self._events)}"

    def expect_closed(self, timeout=None):
        """The server closes the connection next: no more events, then EOF."""
        event = self.event(timeout)
        assert event is None, f"{self}: got {event} where the connection should close"

    def drain_until_closed(self, timeout=None):
        """Every line left before the server closes the connection."""
        got = []
        while True:
            event = self.event(timeout)
            if event is None:
                return got
            if event[0] == "line":
                got.append(event[1])

    # ------------------------------------------------------------ ending

    def reset(self):
        """Close with SO_LINGER 0: the server gets a reset, not an EOF."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()


def check_online_pages(*servers):
    """102 members join, in turn on each of ``servers`` (one room): the last
    one's Online line lists the first 100 and says how many more; ``/who 2``
    lists the rest, and a page that is not a number is refused. Returns the
    last member's client."""
    handles = [f"m{number:03}" for number in range(101)] + ["last"]
    members = [servers[index % len(servers)].join(handle)
               for index, handle in enumerate(handles)]
    last = members[-1]
    assert last.online == f"Online (102): {', '.join(handles[:100])}, and 2 more (/who 2)"
    last.say("/who 2")
    last.expect("Online (102), from 101: m100, last")
    last.say("/who")
    last.expect(last.online)
    last.say("/who two")
    last.expect("Usage: /who [page]")
    return last
