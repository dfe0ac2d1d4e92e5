"""Fault injection over real sockets, against a chat server subprocess and in-process.

Each chat fault runs against ``python -m chat`` (started by ``soak.ChatProcess``
on a free 127.0.0.1 port, stopped by its PID when the test ends, however it
ends), with members that read in threads. After each fault, ``recovered()``
checks what the issue asks: the server still serves a new client, every
other member got every line (each test checks the lines it made), and
nothing is left behind: the server's descriptors (``/proc/PID/fd``) and its
hub's live tasklets, timers and watched descriptors (``format_run_info()``,
asked for by SIGUSR1) are back to what they were before the first client,
and the server logged no error.

The runtime faults (a handler that raises, a tasklet killed while it holds a
Lock or waits in ``run_in_thread``) run in-process, and are checked through
``microthreads.format_run_info()``'s first line (``repr(get_hub())``).
"""

import logging
import re
import socket
import struct
import threading
import time

import pytest
import soak

import microthreads
from microthreads import net

#: Seconds any wait may take: generous, for a loaded 2-core machine. Nothing
#: here waits for time to pass; this only bounds how long a failure takes.
PATIENCE = 20.0
PROMPT = "What is your handle?"


# ------------------------------------------------------------ the chat side


class Member:
    """A blocking client whose lines a thread collects as they come.

    ``read=False`` reads nothing (a peer that stopped reading; ``log_in``
    still reads its way in); ``rcvbuf`` sets SO_RCVBUF before connecting;
    ``drip`` reads one byte per ``drip`` seconds once logged in. With
    ``login=True`` no thread reads until ``log_in()`` has read its way in.
    """

    def __init__(self, server, read=True, rcvbuf=None, drip=None, login=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(PATIENCE)
        self.sock.connect(server.address)
        self.handle = None
        self.lines = []
        self.eof = False
        self._rest = b""
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._reader = None
        self._mode = (read, drip)
        if read and not login:
            self.start_reading()

    def start_reading(self, drip=None):
        self._reader = threading.Thread(target=self._read, args=(drip,), daemon=True)
        self._reader.start()

    def _take(self, data):
        lines = (self._rest + data).split(b"\r\n")
        self._rest = lines.pop()
        if lines:
            with self._changed:
                self.lines.extend(line.decode("utf-8", "replace") for line in lines)
                self._changed.notify_all()

    def _read(self, drip):
        self.sock.settimeout(None)
        try:
            while not self._stop.is_set():
                data = self.sock.recv(1 if drip else 1 << 18)
                if not data:
                    break
                self._take(data)
                if drip:
                    self._stop.wait(drip)
        except OSError:
            pass
        with self._changed:
            self.eof = True
            self._changed.notify_all()

    def _read_until(self, predicate):
        """Without a reader thread: read here until a line passes ``predicate``."""
        while not any(predicate(x) for x in self.lines):
            data = self.sock.recv(4096)
            assert data, f"{self.handle}: closed while logging in; lines: {self.lines}"
            self._take(data)

    def wait_for(self, line, after=0):
        """The index of ``line`` among the lines received (from ``after`` on)."""
        at = [after]                             # scanned up to here: lines only grow

        def found():
            try:
                at[0] = self.lines.index(line, at[0])
                return True
            except ValueError:
                at[0] = max(at[0], len(self.lines))
                return False

        with self._changed:
            if self._changed.wait_for(lambda: found() or self.eof, PATIENCE) and found():
                return at[0]
        state = "closed" if self.eof else "no such line in time"
        raise AssertionError(f"{self.handle}: no {line!r} ({state}); last lines:"
                             f" {self.lines[-5:]}")

    def wait_eof(self):
        with self._changed:
            assert self._changed.wait_for(lambda: self.eof, PATIENCE), \
                f"{self.handle}: the server did not close the connection"

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def say(self, text):
        self.send(text.encode() + b"\n")

    def log_in(self, handle):
        """Read the prompt, send ``handle``, read up to the Online line; then
        read as the member was made to (in a thread, drop by drop, or not)."""
        self.handle = handle
        self._read_until(lambda x: x == PROMPT)
        self.say(handle)
        self._read_until(lambda x: x.startswith("Online ("))
        read, drip = self._mode
        if read or drip:
            self.start_reading(drip)
        return self

    def said(self, handle):
        """The texts ``handle`` said, as this member received them, in order."""
        prefix = f"{handle} says: "
        with self._changed:
            return [x[len(prefix):] for x in self.lines if x.startswith(prefix)]

    def count(self, line):
        with self._changed:
            return self.lines.count(line)

    def _stop_reading(self):
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RD)     # wakes the reader thread at once
        except OSError:
            pass
        if self._reader is not None:
            self._reader.join(PATIENCE)

    def close(self):
        self._stop_reading()
        self.sock.close()

    def reset(self):
        """Close with SO_LINGER 0: the server gets a reset (RST), not an EOF."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._stop_reading()
        self.sock.close()


class Room:
    """One chat server subprocess and the members connected to it."""

    def __init__(self, server):
        self.server = server
        self.members = []
        self.fds = server.fds()
        self.hub = server.hub()

    def connect(self, **options):
        member = Member(self.server, **options)
        self.members.append(member)
        return member

    def join(self, *handles, **options):
        """Members logged in one by one, each that reads having seen every later join."""
        joined = []
        for handle in handles:
            member = self.connect(login=True, **options).log_in(handle)
            for earlier in joined:
                if earlier._reader is not None:
                    earlier.wait_for(f"{handle} has joined the chat.")
            joined.append(member)
        return joined if len(joined) > 1 else joined[0]

    def recovered(self, *staying):
        """A newcomer is served and heard by ``staying``; then, every client gone,
        the server holds what it held before the first one, and logged no error."""
        newcomer = self.join("newcomer")
        newcomer.say("still serving")
        for member in (newcomer, *staying):
            member.wait_for("newcomer says: still serving")
        for member in self.members:
            member.close()
        fds, hub = self.server.settle(self.fds, self.hub, timeout=PATIENCE)
        assert fds == self.fds, f"descriptors: {self.fds} before, {fds} after"
        for key in ("tasklets", "timers", "fds"):
            assert hub[key] == self.hub[key], f"hub {key}: {self.hub} before, {hub} after"
        assert self.server.errors() == [], self.server.log()

    def close(self):
        for member in self.members:
            member.close()
        self.server.close()


@pytest.fixture
def chat():
    """``chat(*args, nofile=None)`` starts a chat server and returns its Room;
    every server started is stopped when the test ends, by its PID."""
    rooms = []

    def start(*args, nofile=None):
        server = soak.ChatProcess("--rate", "0", "--join-rate", "0", *args, nofile=nofile)
        rooms.append(server)
        server.start()
        room = Room(server)
        rooms[-1] = room
        return room

    try:
        yield start
    finally:
        for room in rooms:
            room.close()


def kernel_send_buffer_max():
    """The most a TCP socket's send buffer grows to (Linux tcp_wmem), in bytes."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 << 20


def more_than_the_kernel_holds():
    """Lines of 1 KB adding up to more than a reader's kernel buffers can hold."""
    return numbered((kernel_send_buffer_max() + (2 << 20)) // 1006, width=1000)


def numbered(count, width=0, start=0):
    return [f"{n:05d} {'x' * width}".rstrip() for n in range(start, start + count)]


def flood(talker, lines, readers, chunk=200):
    """``talker`` says ``lines``, ``chunk`` at a time, each chunk once every one of
    ``readers`` has received the one before: however slow this process is,
    readers that keep reading stay within the kernel's buffers."""
    for start in range(0, len(lines), chunk):
        part = lines[start:start + chunk]
        talker.send("".join(x + "\n" for x in part))
        for reader in readers:
            reader.wait_for(f"{talker.handle} says: {part[-1]}")


# ------------------------------------------------------------ chat faults


def test_resets_in_the_middle_of_a_broadcast_cost_the_others_no_line(chat):
    room = chat()
    talker, alice, bob = room.join("talker", "alice", "bob")
    victims = room.join(*[f"victim{n}" for n in range(8)], read=False, rcvbuf=4096)
    sent = []
    stop = threading.Event()

    def talk():                              # broadcasts go on all through the resets
        while not stop.is_set() or len(sent) < 2000:
            batch = numbered(100, width=200, start=len(sent))
            sent.extend(batch)
            flood(talker, batch, [alice])

    sender = threading.Thread(target=talk, daemon=True)
    sender.start()
    alice.wait_for("talker says: 00200 " + "x" * 200)
    for victim in victims:                   # reset, with unread output piled up
        victim.reset()
    for victim in victims:
        alice.wait_for(f"{victim.handle} has left the chat.")
    stop.set()
    sender.join(PATIENCE)
    for member in (talker, alice, bob):
        member.wait_for(f"talker says: {sent[-1]}")
        assert member.said("talker") == sent
        for victim in victims:
            assert member.count(f"{victim.handle} has left the chat.") == 1
    room.recovered(talker, alice, bob)


def test_a_peer_that_half_closes_has_its_lines_delivered_and_leaves_once(chat):
    room = chat()
    alice = room.join("alice")
    half = room.join("half")
    alice.wait_for("half has joined the chat.")
    half.say("one")
    half.say("two")
    half.sock.shutdown(socket.SHUT_WR)           # EOF after its lines; it still reads
    alice.wait_for("half has left the chat.")
    assert alice.said("half") == ["one", "two"]
    assert alice.lines.index("half says: two") < alice.lines.index("half has left the chat.")
    half.wait_eof()                              # the server closes its side too
    at_prompt = room.connect()
    at_prompt.wait_for(PROMPT)
    at_prompt.sock.shutdown(socket.SHUT_WR)      # half-closes before logging in
    at_prompt.wait_eof()
    room.recovered(alice)
    assert alice.count("half has left the chat.") == 1


def test_a_reader_of_one_byte_a_second_is_dropped_and_the_others_get_every_line(chat):
    room = chat("--max-backlog", "65536")
    talker, alice = room.join("talker", "alice")
    room.join("slow", drip=1.0, rcvbuf=4096)       # reads a byte a second
    for member in (talker, alice):
        member.wait_for("slow has joined the chat.")
    # enough to fill the kernel's buffers toward the slow reader (Linux grows a
    # send buffer up to tcp_wmem's maximum) and then the server's own 64 KiB bound
    lines = more_than_the_kernel_holds()
    flood(talker, lines, [talker, alice])
    for member in (talker, alice):
        member.wait_for("slow has left the chat.")
        member.wait_for(f"talker says: {lines[-1]}")
        assert member.said("talker") == lines
        assert member.count("slow has left the chat.") == 1
    assert "output backlog over 65536 bytes" in room.server.log()
    room.recovered(talker, alice)


def test_a_reader_that_falls_behind_within_the_bound_gets_every_line_later(chat):
    room = chat("--max-backlog", str(64 << 20))
    talker, alice = room.join("talker", "alice")
    paused = room.join("paused", read=False, rcvbuf=4096)
    alice.wait_for("paused has joined the chat.")
    queued_before = room.server.hub()["queued"]
    lines = more_than_the_kernel_holds()
    flood(talker, lines, [talker, alice])
    paused.start_reading()                       # now it reads: everything comes, in order
    paused.wait_for(f"talker says: {lines[-1]}")
    assert paused.said("talker") == lines
    assert room.server.hub()["queued"] > queued_before    # the server's own queue held some
    room.recovered(talker, alice, paused)


def test_a_line_sent_one_byte_at_a_time_arrives_whole_and_once(chat):
    room = chat()
    alice = room.join("alice")
    dribbler = room.connect()
    dribbler.wait_for(PROMPT)
    dribbler.handle = "drip"
    text = "héllo, wörld ✓ split at every byte"
    for byte in f"drip\r\n{text}\r\n".encode():
        dribbler.send(bytes([byte]))             # TCP_NODELAY: one segment each
        time.sleep(0.002)
    alice.wait_for("drip has joined the chat.")
    alice.wait_for(f"drip says: {text}")
    dribbler.wait_for(f"drip says: {text}")
    assert alice.said("drip") == [text]
    room.recovered(alice)


def test_peers_that_connect_and_vanish_leave_nothing_behind(chat):
    room = chat()
    alice = room.join("alice")
    for n in range(10):
        room.connect(read=False).close()                    # connect, close
        room.connect(read=False).reset()                    # connect, reset
        half_handle = room.connect(read=False)
        half_handle.send(b"gho")                            # half a handle, then gone
        half_handle.reset()
        at_prompt = room.connect()
        at_prompt.wait_for(PROMPT)                          # read the prompt, then gone
        at_prompt.close()
        ghost = room.connect()
        ghost.wait_for(PROMPT)
        ghost.say(f"ghost{n}")                              # log in and vanish at once
        ghost.reset()
    # a ghost may have vanished before or after the server read its handle:
    # either way its join and its leave come to the others as a pair
    alice.say("after the ghosts")
    alice.wait_for("alice says: after the ghosts")
    for n in range(10):
        joined = alice.count(f"ghost{n} has joined the chat.")
        if joined:
            alice.wait_for(f"ghost{n} has left the chat.")
        assert alice.count(f"ghost{n} has left the chat.") == joined <= 1
    room.recovered(alice)


def test_the_server_survives_emfile_under_a_low_descriptor_limit(chat):
    room = chat(nofile=24)
    spare = 24 - room.fds                        # descriptors left for clients
    crowd = [room.connect() for _ in range(spare + 20)]
    served = shed = 0
    for member in crowd:                         # each is served, or closed without a word
        with member._changed:
            member._changed.wait_for(lambda m=member: m.lines or m.eof, PATIENCE)
        served += bool(member.lines)
        shed += member.eof and not member.lines
    assert 0 < served <= spare and served + shed == len(crowd)
    log = room.server.log()
    assert re.search(r"accept on 127\.0\.0\.1:\d+: Too many open files", log), log
    for member in crowd:
        member.close()
    room.members.clear()
    room.recovered()


# ------------------------------------------------------------ runtime faults


def hub_counts():
    """``{"tasklets", "ready", "timers", "fds"}`` of this thread's hub, read from the
    first line of ``format_run_info()``."""
    return soak.hub_counts(microthreads.format_run_info())


def test_a_handler_that_raises_ends_its_connection_only_and_is_logged_once(caplog):
    def handler(conn):
        for line in conn:
            if line == b"boom\n":
                raise ValueError("the handler broke")
            conn.write(b"echo " + line)

    def main():
        server = net.StreamServer(("127.0.0.1", 0), handler).start()
        good, bad = net.connect(server.address), net.connect(server.address)
        bad.sendall(b"hello\nboom\nnever read\n")
        assert bad.recv_line() == b"echo hello\n"
        assert bad.recv_line() == b""                        # closed by the server
        good.sendall(b"still there?\n")
        assert good.recv_line() == b"echo still there?\n"   # the others go on
        third = net.connect(server.address)                  # and new ones are served
        third.sendall(b"new\n")
        assert third.recv_line() == b"echo new\n"
        for conn in (good, bad, third):
            conn.close()
        server.stop()

    before = hub_counts()
    with caplog.at_level(logging.ERROR):
        microthreads.run(microthreads.with_timeout, PATIENCE, main)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "ValueError: the handler broke" in caplog.text
    assert errors[0].exc_info is not None                    # with its traceback
    assert hub_counts() == before                            # no tasklet, timer or fd left


def test_a_tasklet_killed_while_it_holds_a_lock_hands_it_to_the_next_in_line():
    events = []
    lock = microthreads.Lock()

    def holder():
        with lock:
            events.append("holder has it")
            microthreads.sleep(60)
            events.append("holder woke")                     # never: it is killed

    def waiter(name):
        with lock:
            events.append(f"{name} has it")

    def main():
        first = microthreads.spawn(holder)
        others = [microthreads.spawn(waiter, name) for name in ("second", "third")]
        microthreads.sleep(0)
        first.kill()
        microthreads.joinall(others)

    before = hub_counts()
    microthreads.run(microthreads.with_timeout, PATIENCE, main)
    assert events == ["holder has it", "second has it", "third has it"]
    assert not lock.locked()
    assert hub_counts() == before                            # its 60 s sleep is gone too


def test_a_tasklet_killed_just_after_the_lock_was_handed_to_it_passes_it_on():
    events = []
    lock = microthreads.Lock()

    def waiter(name):
        with lock:
            events.append(f"{name} has it")

    def main():
        lock.acquire()
        second, third = (microthreads.spawn(waiter, n) for n in ("second", "third"))
        microthreads.sleep(0)                                # both wait in line
        lock.release()                                       # handed to second ...
        second.kill()                                        # ... which dies first
        microthreads.joinall([second, third])

    before = hub_counts()
    microthreads.run(microthreads.with_timeout, PATIENCE, main)
    assert events == ["third has it"]
    assert not lock.locked()
    assert hub_counts() == before


def test_a_tasklet_killed_while_it_waits_in_run_in_thread_ends_at_once_and_leaves_nothing():
    job_done = threading.Event()
    release_job = threading.Event()
    results = []

    def job():
        release_job.wait(PATIENCE)
        job_done.set()
        return "late result"

    def waiting():
        results.append(microthreads.run_in_thread(job))      # never appended: killed

    def main():
        tasklet = microthreads.spawn(waiting)
        microthreads.sleep(0.01)
        tasklet.kill()                                       # blocks until it has ended
        assert tasklet.dead and not job_done.is_set()        # the thread is still at work
        release_job.set()

    before = hub_counts()
    microthreads.run(microthreads.with_timeout, PATIENCE, main)
    hub = microthreads.get_hub()
    deadline = time.monotonic() + PATIENCE
    while hub.tick(0.05) and time.monotonic() < deadline:    # the job's wake-up, dropped
        pass
    assert job_done.is_set() and results == []
    assert not hub.tick(0)                                   # nothing left at all
    assert hub_counts() == before


def test_a_thread_job_that_ends_after_its_waiter_timed_out_does_not_wake_its_next_wait():
    job_done = threading.Event()

    def job():
        time.sleep(0.2)
        job_done.set()

    def main():
        event = microthreads.Event()

        def set_after_the_job():
            while not job_done.is_set():
                microthreads.sleep(0.01)
            microthreads.sleep(0.05)                         # the job's wake-up has come
            event.set()

        try:
            with microthreads.Timeout(0.01):
                microthreads.run_in_thread(job)
        except microthreads.Timeout:
            pass
        microthreads.spawn(set_after_the_job)
        return event.wait()                                  # True only when really set

    assert microthreads.run(microthreads.with_timeout, PATIENCE, main) is True
