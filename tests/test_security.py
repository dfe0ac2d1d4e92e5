"""Security review of the chat service, one test per claim (issue 7).

Every test talks to a real ``python -m chat`` subprocess on 127.0.0.1 over
real sockets (chat_helpers starts it on a free port and stops it, and every
client, at the end of the test, even on failure) and asserts the exact lines
each member receives. Waits are bounded by generous timeouts; nothing asserts
how fast something happened.

The claims: a member cannot forge another member's line; cannot pass for
another member where the handle rules forbid it (what they do not forbid is
written down in those tests' docstrings); cannot exhaust the server's memory
through its input, its output or the login queue; cannot starve the others by
flooding; and the server listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import unicodedata

import pytest
from attacks import MARKS, NEWLINES, NOPS, Flood, Pinger, reconnect_storm
from chat_helpers import (
    GREETING,
    MISPLACED_MARK,
    TAKEN,
    TIMEOUT,
    chat_servers,
    mixed_scripts,
    not_allowed,
    variant,
)

FULL = "Server is full, try again later."
TIMED_OUT = "Login timed out."
TOO_FAST = "You are sending too fast; slow down."
TOO_LONG = "Line too long (limit 4096 bytes)."


@pytest.fixture
def chat_server():
    """``chat_server(**flags)`` starts a server; all are stopped after the test."""
    with chat_servers() as start:
        yield start


def needs_proc(pid):
    if not os.path.exists(f"/proc/{pid}/status"):
        pytest.skip("needs Linux's /proc")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as file:
        return int(re.search(r"VmRSS:\s+(\d+) kB", file.read()).group(1))


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# ------------------------------------------------------------------ forging a line


def test_a_member_cannot_forge_a_line_with_an_embedded_cr_lf_or_telnet_cr_nul(chat_server):
    """A bare CR is removed (it would return the cursor to the start of the
    line and let the rest overwrite the sender's handle); LF and CR NUL end
    the line, so what follows is a new line of the sender's, with its prefix."""
    alice, bob = chat_server().room("alice", "bob")
    alice.send(b"hi\rbob says: I owe alice 100\r\n")
    alice.send(b"hi\nbob says: forged by LF\r\n")
    alice.send(b"hi\r\0bob says: forged by CR NUL\r\n")
    for client in (alice, bob):
        client.expect("alice says: hibob says: I owe alice 100",
                      "alice says: hi", "alice says: bob says: forged by LF",
                      "alice says: hi", "alice says: bob says: forged by CR NUL")
        client.expect_nothing_more()


def test_a_member_cannot_forge_a_line_with_nel_or_the_unicode_line_and_paragraph_separators(
        chat_server):
    """NEL (U+0085, a C1 control), LINE SEPARATOR (U+2028) and PARAGRAPH
    SEPARATOR (U+2029) are all removed, like CR and LF: a terminal ignores
    the last two, but a client that splits lines by Unicode's rules (Python's
    ``str.splitlines``, JavaScript's multiline regexes) would show what comes
    after them as a line of its own, without the sender's prefix."""
    alice, bob = chat_server().room("alice", "bob")
    for separator in ("\u0085", "\u2028", "\u2029"):
        alice.say(f"hi{separator}bob says: forged")
    for client in (alice, bob):
        for _ in range(3):
            line = client.line()
            assert line == "alice says: hibob says: forged", repr(line)
            assert line.splitlines() == [line]
        client.expect_nothing_more()


def test_a_member_cannot_forge_a_line_with_escape_sequences(chat_server):
    """Cursor movement, line erasing, colours, OSC and the C1 forms of CSI
    are removed whole: no ESC (nor any C0 but TAB, nor C1) byte from a
    member's text reaches anyone, so an earlier line cannot be rewritten."""
    alice, bob = chat_server().room("alice", "bob")
    alice.send(b"\x1b[1A\x1b[2K\rbob says: cursor up, erase line\r\n"
               b"\x1b[8mhidden\x1b[0m\x1b[1G\x1b[Kbob says: conceal, column 1\r\n"
               b"\x1b]8;;http://evil/\x1b\\link\x1b]8;;\x1b\\ bob says: osc\r\n"
               b"\x1bcbob says: full reset\r\n"
               + "\u009bAbob says: C1 CSI\r\n".encode())
    for client in (alice, bob):
        client.expect("alice says: bob says: cursor up, erase line",
                      "alice says: hiddenbob says: conceal, column 1",
                      "alice says: link bob says: osc",
                      "alice says: bob says: full reset",
                      "alice says: bob says: C1 CSI")
        client.expect_nothing_more()
        text = re.sub(rb"\xff[\xfb-\xfe].", b"", bytes(client.received)).decode()  # no IAC
        assert not re.search(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]", text)


def test_a_line_starting_with_another_members_handle_and_says_is_prefixed_with_the_senders_own(
        chat_server):
    """Every message, action and private message carries the sender's own
    handle first; nothing a member types can take that place."""
    alice, bob, carol = chat_server().room("alice", "bob", "carol")
    alice.say("bob says: I owe alice 100")
    alice.say("/me bob says: hi")
    alice.say("/msg carol bob says: secret")
    for client in (alice, bob, carol):
        client.expect("alice says: bob says: I owe alice 100", "* alice bob says: hi")
    alice.expect("[private to carol] bob says: secret")
    carol.expect("[private] alice: bob says: secret")
    for client in (alice, bob, carol):
        client.expect_nothing_more()


# ------------------------------------------------------------------ impersonation


def test_a_member_cannot_take_a_handle_that_differs_only_by_case(chat_server):
    """Handles are compared after ``str.casefold()``, at login and at /nick:
    'BOB', 'Bob', and 'STRASSE' against 'straße' are all taken."""
    server = chat_server()
    bob, ada = server.room("bob", "straße")
    for typed in ("BOB", "Bob", "STRASSE", "Strasse"):
        client = server.connect()
        client.expect(GREETING)
        client.say(typed)
        client.expect(TAKEN, GREETING)
        client.close()
    bob.say("/nick STRASSE")
    ada.say("/nick BOB")
    bob.expect(TAKEN)
    ada.expect(TAKEN)
    for client in (bob, ada):
        client.expect_nothing_more()


def test_a_member_cannot_take_a_handle_that_differs_only_by_unicode_normalisation(
        chat_server):
    """A handle is kept in NFC, so 'José' typed decomposed (e + U+0301, NFD)
    is the same handle as 'José' precomposed, and is taken; the join line
    shows the NFC form, never the bytes as typed."""
    server = chat_server()
    composed = "José"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    (jose,) = server.room(composed)
    client = server.connect()
    client.expect(GREETING)
    client.say(decomposed)
    client.expect(TAKEN, GREETING)
    client.say(decomposed.upper())
    client.expect(TAKEN, GREETING)
    jose.expect_nothing_more()


def test_a_member_cannot_mix_scripts_or_hide_characters_in_a_handle(chat_server):
    """Prevented: a handle whose letters come from more than one script
    (UTS #39 Highly Restrictive, so 'paul' with a Cyrillic a U+0430, or with
    a MATHEMATICAL SANS-SERIF SMALL P, is refused), and any invisible
    character (ZERO WIDTH SPACE, ZERO WIDTH JOINER), more than three
    combining marks on one letter, space, symbol or control; and the
    Hangul fillers, letters that draw nothing (issue 19, item 6: '李ㅤ'
    joined beside '李', and 'ㅤ' alone made '* ㅤ bob waves')."""
    server = chat_server()
    (paul,) = server.room("paul")
    client = server.connect()
    client.expect(GREETING)
    for typed, answer in (
            ("p\u0430ul", mixed_scripts("Latin", "Cyrillic")),             # Cyrillic a
            ("\U0001d5c9aul", variant("'\U0001d5c9' (U+1D5C9)", "p")),     # MATHEMATICAL p
            ("pa\u200bul", not_allowed("U+200B")),                         # ZERO WIDTH SPACE
            ("pa\u200dul", not_allowed("U+200D")),                         # ZERO WIDTH JOINER
            ("paul\u0338\u0336\u0335\u0334", MISPLACED_MARK),   # marks four high on one letter
            ("pa\u00a0ul", not_allowed("U+00A0")),                         # NO-BREAK SPACE
            ("pa ul", not_allowed("' ' (U+0020)")),
            ("\u674e\u3164", not_allowed("U+3164")),   # HANGUL FILLER beside Han
            ("\u3164", not_allowed("U+3164")),          # the Hangul fillers alone
            ("\u115f", not_allowed("U+115F")),
            ("\u1160", not_allowed("U+1160")),
            ("\uffa0", not_allowed("U+FFA0"))):
        client.say(typed)
        client.expect(answer, GREETING)
    paul.expect_nothing_more()


def test_look_alike_handles_are_taken_and_fullwidth_ones_invalid(chat_server):
    """Issue 18: a handle is taken when its UTS #39 skeleton (case-folded)
    equals a present member's: the all-Cyrillic U+0440 U+043E U+0440 looks
    like the Latin 'pop', 'rn' like 'm', '0' like 'O'. A fullwidth 'paul'
    (U+FF50 U+FF41 U+FF55 U+FF4C) is invalid: NFKC changes it. Before, each
    of these joined beside the handle it imitates."""
    server = chat_server()
    pop, m, bob = server.room("pop", "m", "BOB")
    client = server.connect()
    client.expect(GREETING)
    for typed in ("\u0440\u043e\u0440", "rn", "b0b"):
        client.say(typed)
        client.expect(TAKEN, GREETING)
    client.say("\uff50\uff41\uff55\uff4c")
    client.expect(variant("'\uff50' (U+FF50)", "p"), GREETING)
    client.say("paul")
    client.expect("paul has joined the chat.")
    for member in (pop, m, bob):
        member.expect("paul has joined the chat.")
        member.expect_nothing_more()


# ------------------------------------------------------------------ memory


def test_a_32_mib_line_without_a_newline_keeps_the_servers_memory_small(chat_server):
    """Input is bounded: the server holds at most ``--max-line`` bytes of an
    unfinished line plus one read buffer, so a 32 MiB line with no newline
    grows its RSS by far less than the line; the sender is told once and its
    session goes on."""
    server = chat_server()
    needs_proc(server.pid)
    alice, bob = server.room("alice", "bob")
    before = rss_kib(server.pid)
    chunk = b"m" * (1 << 20)
    for _ in range(32):
        alice.send(chunk)
    alice.sync()                                    # the server has read all 32 MiB
    growth = rss_kib(server.pid) - before
    assert growth < 8 * 1024, f"the server grew by {growth} KiB reading one 32 MiB line"
    alice.send(b"\r\nback\r\n")
    alice.expect(TOO_LONG)
    for client in (alice, bob):
        client.expect("alice says: back")
        client.expect_nothing_more()


def test_a_member_that_never_reads_is_dropped_past_max_backlog_and_the_sender_is_unaffected(
        chat_server):
    """Output is bounded: a member whose unsent output passes
    ``--max-backlog`` is disconnected (the others see it leave), while the
    member sending gets every one of its own lines, in order, and goes on."""
    backlog = 65536
    server = chat_server(rate=0, max_line=65536, max_backlog=backlog)
    talker, watcher = server.room("talker", "watcher")
    server.join("sink", rcvbuf=4096)                # never reads from here on
    for client in (talker, watcher):
        client.expect("sink has joined the chat.")
    payload = "x" * 50000
    seen = {talker: [], watcher: []}
    left = {talker: [], watcher: []}
    number = 0
    while not left[watcher]:
        assert number < 2000, "sink was never dropped (100 MB sent)"
        talker.say(f"{number} {payload}")
        for client in (talker, watcher):
            while len(seen[client]) <= number:
                line = client.line()
                if line.startswith("talker says: "):
                    seen[client].append(int(line.split()[2]))
                else:
                    left[client].append(line)
        number += 1
    for client in (talker, watcher):
        if not left[client]:
            left[client].append(client.line())
        assert left[client] == ["sink has left the chat."]
        assert seen[client] == list(range(number))
    talker.say("still here")
    for client in (talker, watcher):
        client.expect("talker says: still here")
        client.expect_nothing_more()
    server.wait_for_log(rf"sink left \(output backlog over {backlog} bytes")


def test_connections_at_the_login_prompt_count_toward_max_clients_so_a_flood_is_refused(
        chat_server):
    """The login queue is bounded: connections that never log in take places
    under ``--max-clients`` like members do, so once the places are taken a
    flood of connections is each told the full line and closed, and the
    server's open files stay bounded; the member already in goes on."""
    max_clients = 8
    server = chat_server(max_clients=max_clients)      # login timeout 60 s: no race
    needs_proc(server.pid)
    (alice,) = server.room("alice")
    baseline = open_fds(server.pid)
    waiting = []
    for _ in range(max_clients - 1):
        client = server.connect()
        client.expect(GREETING)
        waiting.append(client)
    for _ in range(50):
        client = server.connect()
        client.expect(FULL)
        client.expect_closed()
        client.close()
    assert open_fds(server.pid) <= baseline + max_clients - 1
    alice.say("still here")
    alice.expect("alice says: still here")
    alice.expect_nothing_more()


def test_connections_that_never_log_in_are_each_told_login_timed_out_and_closed(
        chat_server):
    """Each connection still at the prompt after ``--login-timeout`` gets
    ``Login timed out.`` and is closed, freeing its place and its file; a
    member already in is not affected."""
    max_clients = 8
    server = chat_server(max_clients=max_clients, login_timeout=1)
    needs_proc(server.pid)
    (alice,) = server.room("alice")
    baseline = open_fds(server.pid)
    waiting = [server.connect() for _ in range(max_clients - 1)]
    for client in waiting:
        client.expect(GREETING, TIMED_OUT)
        client.expect_closed()
    assert open_fds(server.pid) <= baseline
    alice.expect_nothing_more()
    dave = server.join("dave")
    assert dave.online == "Online (2): alice, dave"
    alice.expect("dave has joined the chat.")


def test_a_connection_dribbling_its_handle_is_still_timed_out(chat_server):
    """The login timeout bounds the whole login, not each read: a client that
    sends one byte of a handle at a time, never a newline, is timed out."""
    server = chat_server(login_timeout=1)
    client = server.connect()
    client.expect(GREETING)
    deadline = time.monotonic() + TIMEOUT
    while TIMED_OUT.encode() not in client.received and time.monotonic() < deadline:
        client.send(b"a")                       # one byte, never a newline
        client.sock.settimeout(0.2)
        try:
            data = client.sock.recv(4096)
        except TimeoutError:
            continue
        assert data, f"closed without a word after {bytes(client.received)!r}"
        client.received += data
    assert bytes(client.received).endswith(f"{TIMED_OUT}\r\n".encode()), client.received
    client.sock.settimeout(TIMEOUT)
    try:
        rest = client.sock.recv(4096)
    except ConnectionResetError:                # a byte of ours was unread at the close
        rest = b""
    assert rest == b"", rest


# ------------------------------------------------------------------ flooding


def test_a_flooder_at_full_speed_cannot_starve_another_members_lines(chat_server):
    """With the default rate limit (20 lines a second, burst 40), a member
    sending lines as fast as the socket takes them gets only its burst and
    rate through; another member's lines still reach everyone, each within a
    generous timeout (nothing here asserts how fast), and in order."""
    server = chat_server()
    flooder, watcher = server.room("flooder", "watcher")
    stop, flooding = threading.Event(), threading.Event()
    block = b"".join(b"flood %d\r\n" % i for i in range(2000))

    def flood():
        flooder.sock.settimeout(1.0)
        while not stop.is_set():
            try:
                flooder.sock.sendall(block)
            except TimeoutError:
                continue                        # the server is behind: try again
            except OSError:
                return
            flooding.set()

    thread = threading.Thread(target=flood, daemon=True, name="flooder")
    started = time.monotonic()
    thread.start()
    # the pings go while the flood is on: on a loaded machine the thread may
    # start after all three went, and then it is never told
    assert flooding.wait(10)
    flooded = 0
    try:
        for number in range(3):
            watcher.say(f"ping {number}")
            got = watcher.lines_until(f"watcher says: ping {number}", limit=10000)[:-1]
            others = [line for line in got if not line.startswith("flooder says: ")]
            assert others == [], others
            flooded += len(got)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    # at most a full bucket (40) and then 20 a second, plus a line of slack
    assert flooded <= 40 + 20 * (time.monotonic() - started) + 1, flooded
    flooder.lines_until(TOO_FAST, limit=10000)      # it was told, and read nothing else


@pytest.mark.slow
@pytest.mark.parametrize(("payload", "rate"), [(NEWLINES, 20), (NOPS, 20),
                                              (MARKS.encode() + b"\r\n", 0)],
                         ids=["bare newlines", "IAC NOP pairs", "4 KB combining-mark handles"])
def test_reads_packed_with_lines_or_telnet_commands_cannot_stall_the_others(chat_server,
                                                                            payload, rate):
    """Issue 19, items 1 and 2. Four clients at the login prompt send 16 KiB
    reads of bare newlines (16,384 lines each), of ``IAC NOP`` (8,192
    commands each), or handles of 2,000 combining marks in reverse canonical
    order (with ``--rate 0``, as four times as many connections would get
    through at the default rate) for 3 s; a member pings itself every 0.1 s
    meanwhile. Before the
    fix the server framed and checked every line of a read, parsed every
    command, and yielded only every 64 reads, and put every handle in NFC
    (quadratic here) before checking its length: the member's echoes came
    back after seconds, so at most one or two arrived while the attack ran.
    Now lines past the rate limit are dropped unframed, each line or command
    counts toward the yield, and an over-long handle is refused before
    normalising: at least 6 of
    the ~30 echoes must arrive while the attack is still under way (an
    average round trip under 0.5 s, a wide margin over the ~10 ms seen)."""
    server = chat_server(rate=rate)
    (watcher,) = server.room("watcher")
    pinger = Pinger(watcher, interval=0.1)
    with Flood(server.port, payload, attackers=4) as attack:
        pinger.start()
        time.sleep(3.0)                         # the attack's length, not a wait for an event
        ended = attack.stop()
    pinger.stop()
    assert attack.sent >= 1 << 20               # 64 reads' worth: it did flood
    assert pinger.echoed_between(attack.started, ended) >= 6, pinger.latencies


def test_a_reconnect_storm_joins_at_the_join_rate_and_the_watchers_lines_stay_few(
        chat_server):
    """Issue 19, item 3. One client joins, quits and reconnects as fast as it
    can for 2 s. Before the fix each session joined: 1,400 a second, two
    lines each for every member. Now an address gets 10 logins, then one a
    second (``Too many logins from your address...`` to the rest): at most
    10 + 1 * 2 s + 1 sessions, and a watcher gets only their joined/left
    lines. The watcher was not limited: its own line still comes back."""
    server = chat_server()
    (watcher,) = server.room("watcher")
    started = time.monotonic()
    sessions = reconnect_storm(server.port, 2.0)
    limit = 10 + 1 * (time.monotonic() - started) + 1
    assert 1 <= sessions <= limit
    watcher.say("after the storm")
    got = watcher.lines_until("watcher says: after the storm")
    storm_lines = [line for line in got if line.startswith("storm")]
    assert len(storm_lines) == len(got) - 1 <= 2 * limit, got


def test_a_reconnect_takes_over_the_rate_bucket_its_last_session_emptied(chat_server):
    """Issue 19, item 3: lines. With ``--rate 1`` (burst 2) a session spends
    both tokens on its handle and ``/quit``; reconnecting at once, its handle
    line finds the bucket as it was left, and is refused as too fast (it
    would pass after a second's refill). Before the fix every connection
    started with a fresh burst."""
    server = chat_server(rate=1)
    first = server.join("alice")
    first.say("/quit")
    first.expect("Goodbye.")
    first.expect_closed()
    again = server.connect()
    again.expect(GREETING)
    again.say("alice")
    again.expect(TOO_FAST)


# ------------------------------------------------------------------ listening address


def listening_sockets(pid):
    """(address, port) of every listening TCP socket the process holds, from
    /proc/PID/fd and /proc/net/tcp{,6}; the address as hex, as the kernel
    writes it (0100007F is 127.0.0.1, 00000000 is 0.0.0.0)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as file:
            next(file)
            for row in file:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and inode in inodes:   # TCP_LISTEN
                    address, port = local.split(":")
                    found.append((address, int(port, 16)))
    return found


def test_the_server_listens_on_127_0_0_1_by_default(chat_server, monkeypatch):
    """Started without ``--host``, the server logs and listens on 127.0.0.1
    only: its one listening socket, as the kernel lists it, is 127.0.0.1 on
    the port it logged, not 0.0.0.0 nor any IPv6 address."""
    popen = subprocess.Popen

    def without_host(args, *rest, **options):
        args = list(args)
        at = args.index("--host")
        del args[at:at + 2]
        return popen(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", without_host)
    server = chat_server()
    monkeypatch.undo()
    assert "--host" not in server.proc.args
    needs_proc(server.pid)
    assert listening_sockets(server.pid) == [("0100007F", server.port)]
    server.wait_for_log(rf"chat listening on 127\.0\.0\.1:{server.port} ")
    (alice,) = server.room("alice")
    assert alice.sock.getpeername() == ("127.0.0.1", server.port)
