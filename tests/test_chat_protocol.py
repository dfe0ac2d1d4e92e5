"""The chat service over real sockets, one test per rule of PROTOCOL.md.

Each test starts its own ``python -m chat`` on a free port of 127.0.0.1
(stopped at the end of the test, even on failure) and talks to it with the
blocking ``Client`` of chat_helpers, asserting the exact lines. Nothing
sleeps: where a test must know that the server has read something, the
client does a telnet TIMING-MARK round trip (``Client.sync``).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from chat_helpers import (
    AYT,
    DO,
    DONT,
    ECHO,
    EMPTY_HANDLE,
    GA,
    GREETING,
    IAC,
    INVALID,
    IP,
    LONG_HANDLE,
    MISPLACED_MARK,
    NAWS,
    NOP,
    ROOT,
    SB,
    SE,
    SUPPRESS_GO_AHEAD,
    TAKEN,
    TERMINAL_TYPE,
    TIMEOUT,
    TIMING_MARK,
    WILL,
    WONT,
    chat_servers,
    check_online_pages,
    iac,
    mixed_scripts,
    not_allowed,
    variant,
)

import microthreads


@pytest.fixture
def chat_server():
    """``chat_server(**flags)`` starts a server; all are stopped after the test."""
    with chat_servers() as start:
        yield start


@pytest.fixture(scope="module")
def shared_server():
    """One server with the default flags for the many handle cases, which leave
    it as they found it: empty (a valid handle quits again). Their many short
    sessions from one address would be a reconnect storm to the per-address
    limits (chat/limits.py, tested in test_security.py): those are off."""
    with chat_servers() as start:
        yield start(join_rate=0, rate=0)


# ------------------------------------------------------------------ transport


def test_a_new_connection_gets_the_seed_greeting_as_a_utf8_crlf_line_and_no_negotiation(
        chat_server):
    client = chat_server().connect()
    client.expect(GREETING)
    client.sync()
    assert bytes(client.received) == b"What is your handle?\r\n" + iac(WONT, TIMING_MARK)


def test_the_server_logs_the_address_it_listens_on(chat_server):
    server = chat_server()
    assert re.search(rf"chat listening on 127\.0\.0\.1:{server.port}\b", server.log_text())


@pytest.mark.parametrize("flags, idle", [({}, 30), ({"keepalive": 7}, 7)],
                         ids=["default", "--keepalive 7"])
def test_tcp_keepalive_is_on_for_every_connection(chat_server, flags, idle):
    """The kernel's keepalive timer runs on the server's end of every idle
    connection, due within ``--keepalive`` seconds (30 by default; it was 60)."""
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("needs Linux's /proc/net/tcp to see the server's socket timers")
    server = chat_server(**flags)
    member = server.join("alice")
    prompt = server.connect()
    prompt.expect(GREETING)
    member.sync()
    prompt.sync()
    for client in (member, prompt):
        timer, due = server_socket_timer(server.port, client.port)
        assert timer == "02", client                    # keepalive
        assert idle - TIMEOUT <= due <= idle, (client, due)


def server_socket_timer(server_port, client_port):
    """The timer /proc/net/tcp shows for the server's end of a connection once
    it is idle, and in how many seconds it is due: "00" none, "02" keepalive
    ("01", retransmit, until the client has acknowledged everything: waited
    out, at most TIMEOUT seconds)."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    deadline = time.monotonic() + TIMEOUT
    while True:
        with open("/proc/net/tcp") as table:
            rows = [line.split() for line in table]
        timers = [row[5].split(":") for row in rows if row[1:3] == [local, remote]]
        assert len(timers) == 1, f"no single server socket for :{client_port}: {timers}"
        timer, due = timers[0]
        if timer != "01" or time.monotonic() > deadline:
            return timer, int(due, 16) / 100            # in USER_HZ (1/100 s)
        time.sleep(0.01)                     # a delayed ACK is due within 200 ms


# ------------------------------------------------------------------ handles


@pytest.mark.parametrize("typed, handle", [
    ("a", "a"),
    ("x" * 32, "x" * 32),
    ("  alice \t", "alice"),
    ("josé_1.2-3", "josé_1.2-3"),
    ("jose\u0301", "jos\u00e9"),
    ("Παύλος", "Παύλος"),
    ("пауль", "пауль"),
    ("山田たろう", "山田たろう"),
    ("١٢٣", "١٢٣"),
], ids=["one-char", "32-chars", "stripped", "latin-with-_.-", "nfc", "greek", "all-cyrillic",
        "han-with-hiragana", "arabic-indic-digits"])
def test_a_valid_handle_is_stripped_normalised_to_nfc_and_joins(shared_server, typed, handle):
    client = shared_server.connect()
    client.expect(GREETING)
    client.say(typed)
    client.expect(f"{handle} has joined the chat.", f"Online (1): {handle}")
    client.say("/quit")
    client.expect("Goodbye.")
    client.expect_closed()


@pytest.mark.parametrize("typed, answer", [
    ("", EMPTY_HANDLE),
    ("   ", EMPTY_HANDLE),
    ("x" * 33, LONG_HANDLE),
    ("two words", not_allowed("' ' (U+0020)")),
    ("bang!", not_allowed("'!' (U+0021)")),
    ("a@b", not_allowed("'@' (U+0040)")),
    ("p\u0430ul", mixed_scripts("Latin", "Cyrillic")),
    ("\U0001d5c9aul", variant("'\U0001d5c9' (U+1D5C9)", "p")),
    ("\u0301x", MISPLACED_MARK),
    ("\U0001f600", not_allowed("'\U0001f600' (U+1F600)")),
    ("ab/cd", not_allowed("'/' (U+002F)")),
    ("a1\u0662", "Invalid handle: '1' (U+0031) and '\u0662' (U+0662) are digits of two"
                  " kinds; use digits of one kind."),
], ids=["empty", "only-spaces", "33-chars", "inner-space", "symbol-!", "symbol-@",
        "paul-with-cyrillic-a", "paul-with-mathematical-p", "leading-mark", "emoji",
        "slash", "two-digit-systems"])
def test_an_invalid_handle_gets_the_rule_it_broke_and_the_question_again(shared_server, typed,
                                                                          answer):
    client = shared_server.connect()
    client.expect(GREETING)
    client.say(typed)
    client.expect(answer, GREETING)
    client.say("paul")
    client.expect("paul has joined the chat.", "Online (1): paul")
    client.say("/quit")
    client.expect("Goodbye.")
    client.expect_closed()


def test_a_handle_taken_in_any_case_gets_the_seed_line_and_the_question_again(chat_server):
    server = chat_server()
    server.join("Alice")
    client = server.connect()
    client.expect(GREETING)
    client.say("aLICE")
    client.expect(TAKEN, GREETING)
    client.say("ALICE2")
    client.expect("ALICE2 has joined the chat.", "Online (2): Alice, ALICE2")


def test_a_handle_that_differs_only_by_normalisation_is_taken(chat_server):
    server = chat_server()
    server.join("jos\u00e9")
    client = server.connect()
    client.expect(GREETING)
    client.say("JOSE\u0301")
    client.expect(TAKEN, GREETING)


# ------------------------------------------------------------------ session


def test_a_join_is_told_to_everyone_then_the_newcomer_gets_the_online_line_in_join_order(
        chat_server):
    server = chat_server()
    alice = server.join("alice")
    assert alice.online == "Online (1): alice"
    bob = server.join("bob")
    alice.expect("bob has joined the chat.")
    assert bob.online == "Online (2): alice, bob"
    carol = server.join("carol")
    for client in (alice, bob):
        client.expect("carol has joined the chat.")
    assert carol.online == "Online (3): alice, bob, carol"
    bob.say("/quit")
    for client in (alice, carol):
        client.expect("bob has left the chat.")
    dave = server.join("dave")
    assert dave.online == "Online (3): alice, carol, dave"
    for client in (alice, carol):
        client.expect("dave has joined the chat.")
    for client in (alice, carol, dave):
        client.expect_nothing_more()


def test_a_crowd_logging_in_at_once_gets_one_join_order_and_each_its_online_line_in_place(
        chat_server):
    """Handles sent back to back mostly reach the server in one turn, where joins
    are batched: each newcomer still reads its own join line, then the Online
    line as of its join, then exactly the joins after it, as everyone else."""
    server = chat_server(join_rate=0)      # a crowd from one address: no join limit
    alice = server.join("alice")
    crowd = {f"m{i}": server.connect(name=f"m{i}") for i in range(12)}
    for client in crowd.values():
        client.expect(GREETING)
    for handle, client in crowd.items():
        client.say(handle)
    joins = alice.lines(len(crowd))
    order = [line.removesuffix(" has joined the chat.") for line in joins]
    assert sorted(order) == sorted(crowd) and all(line.endswith(" has joined the chat.")
                                                  for line in joins), joins
    for place, handle in enumerate(order):
        online = f"Online ({place + 2}): " + ", ".join(["alice", *order[:place + 1]])
        crowd[handle].expect(joins[place], online, *joins[place + 1:])
    for client in (alice, *crowd.values()):
        client.expect_nothing_more()


def test_a_message_is_delivered_to_every_member_the_sender_included(chat_server):
    alice, bob, carol = chat_server().room("alice", "bob", "carol")
    bob.say("hello, world")
    for client in (alice, bob, carol):
        client.expect("bob says: hello, world")
        client.expect_nothing_more()


def test_a_message_is_stripped_and_a_line_left_empty_is_ignored(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.send(b"  \t spaced out \t \r\n\r\n   \r\n\x1b[31m\x07\r\n\t\n")
    alice.say("next")
    for client in (alice, bob):
        client.expect("alice says: spaced out", "alice says: next")
        client.expect_nothing_more()


# ------------------------------------------------------------------ commands


def test_quit_closes_the_connection_and_the_others_see_the_seed_left_line(chat_server):
    alice, bob, carol = chat_server().room("alice", "bob", "carol")
    bob.say("/quit")
    bob.expect("Goodbye.")
    bob.expect_closed()
    for client in (alice, carol):
        client.expect("bob has left the chat.")
        client.expect_nothing_more()


def test_a_line_said_just_before_quit_reaches_everyone_the_sender_included(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    bob.send(b"last words\n/quit\n")            # one segment: said, then gone
    assert bob.drain_until_closed() == ["bob says: last words", "Goodbye."]
    alice.expect("bob says: last words", "bob has left the chat.")


def test_who_lists_the_members_in_join_order_to_the_sender_only(chat_server):
    alice, bob, carol = chat_server().room("alice", "bob", "carol")
    carol.say("/who")
    carol.expect("Online (3): alice, bob, carol")
    for client in (alice, bob, carol):
        client.expect_nothing_more()


def test_the_online_line_and_who_list_at_most_100_members_a_page(chat_server):
    check_online_pages(chat_server(join_rate=0))      # 102 logins from one address


def test_me_shows_an_action_to_everyone(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.say("/me waves at everyone")
    for client in (alice, bob):
        client.expect("* alice waves at everyone")
        client.expect_nothing_more()


def test_msg_is_seen_by_the_recipient_only_and_echoed_with_its_own_handle(chat_server):
    alice, bob, carol = chat_server().room("alice", "Bob", "carol")
    alice.say("/msg BOB  psst, over here")
    bob.expect("[private] alice: psst, over here")
    alice.expect("[private to Bob] psst, over here")
    for client in (alice, bob, carol):
        client.expect_nothing_more()


def test_msg_to_an_unknown_user_names_it_as_typed(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.say("/msg Zed_Who hello?")
    alice.expect("No such user: Zed_Who")
    for client in (alice, bob):
        client.expect_nothing_more()


def test_msg_matches_a_handle_typed_in_another_normal_form(chat_server):
    alice, bob = chat_server().room("jos\u00e9", "bob")
    bob.say("/msg JOSE\u0301 hola")
    alice.expect("[private] bob: hola")
    bob.expect("[private to jos\u00e9] hola")


def test_a_commands_words_may_be_separated_by_tabs(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.say("/me\twaves")
    alice.say("/msg\tbob\tpsst")
    bob.expect("* alice waves", "[private] alice: psst")
    alice.expect("* alice waves", "[private to bob] psst")


def test_nick_is_announced_to_everyone_and_keeps_join_order(chat_server):
    server = chat_server()
    alice, bob, carol = server.room("alice", "bob", "carol")
    bob.say("/nick  Robert ")
    for client in (alice, bob, carol):
        client.expect("bob is now known as Robert.")
    alice.say("/who")
    alice.expect("Online (3): alice, Robert, carol")
    bob.say("new name")
    for client in (alice, bob, carol):
        client.expect("Robert says: new name")


def test_nick_frees_the_old_handle_and_takes_the_new_one(chat_server):
    server = chat_server()
    alice, bob = server.room("alice", "bob")
    bob.say("/nick robert")
    for client in (alice, bob):
        client.expect("bob is now known as robert.")
    newcomer = server.connect()
    newcomer.expect(GREETING)
    newcomer.say("ROBERT")
    newcomer.expect(TAKEN, GREETING)
    newcomer.say("bob")
    newcomer.expect("bob has joined the chat.", "Online (3): alice, robert, bob")


def test_nick_refuses_an_invalid_handle_with_the_rule_to_the_sender_only(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    for bad, answer in (("b\u043eb", mixed_scripts("Latin", "Cyrillic")),
                        ("two words", not_allowed("' ' (U+0020)")), ("", EMPTY_HANDLE)):
        bob.say(f"/nick {bad}")
        bob.expect(answer)
    alice.say("/who")
    alice.expect("Online (2): alice, bob")
    for client in (alice, bob):
        client.expect_nothing_more()


def test_nick_refuses_a_handle_taken_in_any_case_to_the_sender_only(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    bob.say("/nick ALICE")
    bob.expect(TAKEN)
    for client in (alice, bob):
        client.expect_nothing_more()


def test_help_lists_every_command_to_the_sender_only(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.say("/help")
    alice.expect("Commands:")
    usage = alice.lines(6)
    assert sorted(line.split()[0] for line in usage) == \
        ["/help", "/me", "/msg", "/nick", "/quit", "/who"], usage
    for client in (alice, bob):
        client.expect_nothing_more()


def test_an_unknown_command_is_answered_to_the_sender_only(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.say("/dance wildly")
    alice.expect("Unknown command: /dance. Type /help for a list.")
    alice.say("/")
    alice.expect("Unknown command: /. Type /help for a list.")
    for client in (alice, bob):
        client.expect_nothing_more()


def test_a_line_starting_with_two_slashes_is_said_with_one(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.say("//etc/hosts is a file, //quit is not a command")
    for client in (alice, bob):
        client.expect("alice says: /etc/hosts is a file, //quit is not a command")
    alice.say("/quit")
    alice.expect("Goodbye.")
    alice.expect_closed()
    bob.expect("alice has left the chat.")


# ------------------------------------------------------------------ leaving


def leave(client, how):
    if how == "quit":
        client.say("/quit")
    elif how == "close":
        client.close()
    else:
        client.reset()


@pytest.mark.parametrize("how", ["quit", "close", "reset"])
def test_leaving_is_announced_exactly_once(chat_server, how):
    alice, bob, carol = chat_server().room("alice", "bob", "carol")
    leave(bob, how)
    for client in (alice, carol):
        client.expect("bob has left the chat.")
    alice.say("sentinel")
    for client in (alice, carol):
        client.expect("alice says: sentinel")
        client.expect_nothing_more()


@pytest.mark.parametrize("how", ["quit", "close", "reset"])
def test_a_handle_is_free_again_once_the_others_see_it_leave(chat_server, how):
    server = chat_server()
    alice, bob = server.room("alice", "bob")
    leave(bob, how)
    alice.expect("bob has left the chat.")
    again = server.connect()
    again.expect(GREETING)
    again.say("BOB")
    again.expect("BOB has joined the chat.", "Online (2): alice, BOB")


# ------------------------------------------------------------------ framing


def test_lines_end_in_lf_crlf_or_telnet_cr_nul(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    for data in (b"unix\n", b"network\r\n", b"telnet\r\x00", b"mixed\r\x00\n"):
        alice.send(data)
        alice.sync()
    for client in (alice, bob):
        client.expect("alice says: unix", "alice says: network", "alice says: telnet",
                      "alice says: mixed")
        client.expect_nothing_more()


def test_a_handle_may_end_in_telnet_cr_nul(chat_server):
    client = chat_server().connect()
    client.expect(GREETING)
    client.send(b"alice\r\x00")
    client.expect("alice has joined the chat.", "Online (1): alice")


def test_several_lines_in_one_segment_are_each_delivered(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.send(b"one\r\ntwo\nthree\r\x00four\r\n")
    for client in (alice, bob):
        client.expect("alice says: one", "alice says: two", "alice says: three",
                      "alice says: four")


def test_a_line_split_byte_by_byte_is_delivered_whole(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    for byte in "héllo wörld\r\n".encode():
        alice.send(bytes((byte,)))
        alice.sync()                     # the server has read this byte on its own
    for client in (alice, bob):
        client.expect("alice says: héllo wörld")


def test_a_crlf_split_between_segments_ends_one_line(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    for piece in (b"first\r", b"\nsecond\r", b"\x00third\r", b"\r\n"):
        alice.send(piece)
        alice.sync()
    for client in (alice, bob):
        client.expect("alice says: first", "alice says: second", "alice says: third")
        client.expect_nothing_more()


def test_a_utf8_character_split_across_segments_is_decoded_whole(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    euro = "€".encode()                  # 3 bytes
    alice.send(b"price: 5" + euro[:1])
    alice.sync()
    alice.send(euro[1:2])
    alice.sync()
    alice.send(euro[2:] + b"\r\n")
    for client in (alice, bob):
        client.expect("alice says: price: 5€")


def test_invalid_utf8_becomes_the_replacement_character_and_never_ends_a_session(
        chat_server):
    server = chat_server()
    client = server.connect()
    client.expect(GREETING)
    client.send(b"\xc3(\r\n")                       # at the prompt: an invalid handle
    client.expect(not_allowed("'\ufffd' (U+FFFD)"), GREETING)
    client.say("alice")
    client.expect("alice has joined the chat.", "Online (1): alice")
    client.send(b"caf\xe9 \xc0\xaf \xed\xa0\x80 \xf8\x88\x80\x80\x80 ok\r\n")
    line = client.line()
    assert line.startswith("alice says: caf\ufffd \ufffd") and line.endswith(" ok"), line
    assert set(line[len("alice says: "):]) <= set("caf ok\ufffd"), line
    client.say("still here")
    client.expect("alice says: still here")


# ------------------------------------------------------------------ telnet


def test_telnet_commands_are_removed_from_the_input(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.send(b"he" + iac(NOP) + b"l" + iac(AYT) + b"l" + iac(GA) + b"o" + iac(IP) + b"\r\n")
    for client in (alice, bob):
        client.expect("alice says: hello")
        client.expect_nothing_more()


def test_do_is_refused_with_wont_each_time_it_is_offered(chat_server):
    client = chat_server().connect()
    client.expect(GREETING)
    client.send(iac(DO, ECHO) + iac(DO, SUPPRESS_GO_AHEAD) + iac(DO, ECHO))
    assert [client.reply() for _ in range(3)] == \
        [iac(WONT, ECHO), iac(WONT, SUPPRESS_GO_AHEAD), iac(WONT, ECHO)]
    client.say("alice")
    client.expect("alice has joined the chat.", "Online (1): alice")


def test_will_is_refused_with_dont_each_time_it_is_offered(chat_server):
    (alice,) = chat_server().room("alice")
    alice.send(iac(WILL, NAWS) + b"hi" + iac(WILL, TERMINAL_TYPE) + b"\r\n" + iac(WILL, NAWS))
    events = [alice.event() for _ in range(4)]
    assert [value for kind, value in events if kind == "iac"] == \
        [iac(DONT, NAWS), iac(DONT, TERMINAL_TYPE), iac(DONT, NAWS)]
    assert [value for kind, value in events if kind == "line"] == ["alice says: hi"]


def test_wont_and_dont_are_never_answered(chat_server):
    (alice,) = chat_server().room("alice")
    alice.send(iac(WONT, ECHO) + iac(DONT, ECHO) + iac(WONT, NAWS) + iac(DONT, TIMING_MARK))
    alice.say("after")
    alice.expect("alice says: after")
    alice.expect_nothing_more()
    assert bytes(alice.received).endswith(b"alice says: after\r\n" + iac(WONT, TIMING_MARK))


def test_iac_iac_is_the_data_byte_0xff_which_becomes_the_replacement_character(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.send(b"a" + iac(IAC) + b"b\r\n")
    for client in (alice, bob):
        client.expect("alice says: a\ufffdb")
        client.expect_nothing_more()


def test_a_subnegotiation_is_removed_whole(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.send(b"be" + iac(SB, TERMINAL_TYPE, 0) + b"xterm\r\n" + iac(IAC) + b"x"
               + iac(SE) + b"fore")
    alice.sync()
    alice.send(iac(SB, NAWS, 0, 80) + iac(SE) + b" and after\r\n")
    for client in (alice, bob):
        client.expect("alice says: before and after")
        client.expect_nothing_more()


def test_telnet_ctrl_c_gets_wont_timing_mark_and_the_session_goes_on(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.send(iac(IP) + iac(DO, TIMING_MARK))      # what telnet sends for Ctrl-C
    assert alice.reply() == iac(WONT, TIMING_MARK)
    alice.say("still talking")
    bob.say("still listening")
    for client in (alice, bob):
        client.expect("alice says: still talking", "bob says: still listening")
        client.expect_nothing_more()


# ------------------------------------------------------------------ filtering


def test_control_characters_are_removed_so_nobody_can_forge_a_line(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.send(b"hi\rbob says: I owe alice 100\x08\x08\x07\x7f\x0b\x0c\x00\x1b\r\n")
    alice.send("hi\u0085bob says: me too\r\n".encode())   # C1 NEXT LINE
    for client in (alice, bob):
        client.expect("alice says: hibob says: I owe alice 100",
                      "alice says: hibob says: me too")


def test_a_tab_inside_a_message_is_kept(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.say("col1\tcol2")
    bob.expect("alice says: col1\tcol2")


def test_ansi_escape_sequences_are_removed_whole(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.send(b"\x1b[2J\x1b[Hclear\r\n"
               b"\x1b[31mred\x1b[0m\r\n"
               b"\x1b]0;pwned\x07title\r\n"
               b"\x1bPq#0;2;0;0;0\x1b\\dcs\r\n"
               b"\x1b[1G\x1b[2Kbob says: fake\r\n"
               + "\u009b2Jc1-csi\r\n".encode())
    for client in (alice, bob):
        client.expect("alice says: clear", "alice says: red", "alice says: title",
                      "alice says: dcs", "alice says: bob says: fake", "alice says: c1-csi")


def test_bidi_controls_are_removed(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.say("abc\u202edef\u2066ghi\u2069\u202a\u202b\u202c\u202d\u2067\u2068 end")
    for client in (alice, bob):
        client.expect("alice says: abcdefghi end")


def test_a_filtered_handle_cannot_carry_an_escape_sequence(chat_server):
    client = chat_server().connect()
    client.expect(GREETING)
    client.send(b"\x1b[31mrose\x1b[0m\r\n")
    client.expect("rose has joined the chat.", "Online (1): rose")


# ------------------------------------------------------------------ line length


def test_a_line_over_the_limit_is_refused_as_soon_as_the_limit_is_passed(chat_server):
    alice, bob = chat_server(max_line=64).room("alice", "bob")
    alice.send(b"x" * 65)                              # no newline yet
    alice.expect("Line too long (limit 64 bytes).")
    alice.send(b"y" * 500 + b"\r\n")
    alice.say("short again")
    for client in (alice, bob):
        client.expect("alice says: short again")
        client.expect_nothing_more()


def test_a_line_of_exactly_the_limit_in_bytes_is_delivered(chat_server):
    alice, bob = chat_server(max_line=64).room("alice", "bob")
    alice.send("é".encode() * 32 + b"\r\n")            # 64 bytes
    alice.send("é".encode() * 32 + b"x\r\n")           # 65 bytes
    bob.expect("alice says: " + "é" * 32)
    alice.expect("alice says: " + "é" * 32, "Line too long (limit 64 bytes).")
    for client in (alice, bob):
        client.expect_nothing_more()


def test_a_1_mib_line_without_newline_is_refused_once_and_the_session_goes_on(chat_server):
    alice, bob = chat_server().room("alice", "bob")
    alice.send(b"z" * (1 << 20))
    alice.expect("Line too long (limit 4096 bytes).")
    alice.send(b"z" * (1 << 20))
    alice.sync()
    alice.send(b"\r\nback\r\n")
    for client in (alice, bob):
        client.expect("alice says: back")
        client.expect_nothing_more()


def test_memory_for_a_connections_input_stays_bounded(chat_server):
    status = f"/proc/{os.getpid()}/status"
    if not os.path.exists(status):
        pytest.skip("needs Linux's /proc/PID/status to read the server's memory")
    server = chat_server()
    (alice,) = server.room("alice")

    def rss_kib():
        with open(f"/proc/{server.pid}/status") as file:
            return int(re.search(r"VmRSS:\s+(\d+) kB", file.read()).group(1))

    before = rss_kib()
    chunk = b"m" * (1 << 20)
    for _ in range(32):                                 # a 32 MiB line
        alice.send(chunk)
    alice.sync()
    growth = rss_kib() - before
    alice.expect("Line too long (limit 4096 bytes).")
    assert growth < 8 * 1024, f"the server grew by {growth} KiB reading one long line"


#: What PROTOCOL.md says never reaches anyone: C0 but TAB, DEL, C1, bidi controls.
FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_random_binary_never_ends_a_session_and_reaches_others_only_as_clean_text(
        chat_server):
    alice, bob = chat_server(rate=0).room("alice", "bob")
    rng = random.Random(1980)
    for _ in range(20):
        alice.send(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 3000))))
    alice.send(iac(SE) + iac(SE) + b"\r\n")          # ends whatever telnet state was left
    alice.say("alive")
    got = bob.lines_until("alice says: alive")
    for line in got:
        text = line[len("alice says: "):]
        assert line.startswith("alice says: ") and text.strip() == text and text, line
        assert not FORBIDDEN.search(text), repr(line)
    alice.lines_until("alice says: alive", skip_replies=True)


# ------------------------------------------------------------------ limits


def test_a_client_that_sends_no_valid_handle_in_time_is_timed_out(chat_server):
    client = chat_server(login_timeout=0.5).connect()
    client.expect(GREETING)
    client.say("no good!")
    client.expect(INVALID, GREETING, "Login timed out.")       # the space
    client.expect_closed()


def test_the_login_timeout_ends_once_logged_in(chat_server):
    server = chat_server(login_timeout=0.5)
    alice = server.join("alice")
    late = server.connect()                  # connects after alice logged in, so its
    late.expect(GREETING, "Login timed out.")  # timeout ends after alice's would have
    alice.say("still here")
    alice.expect("alice says: still here")


def test_a_connection_over_max_clients_is_told_the_server_is_full_and_closed(chat_server):
    server = chat_server(max_clients=3)
    server.room("alice", "bob")
    prompt = server.connect()                # at the prompt: it counts too
    prompt.expect(GREETING)
    extra = server.connect()
    extra.expect("Server is full, try again later.")
    extra.expect_closed()


def test_a_place_freed_by_a_leaving_client_is_free_at_once(chat_server):
    server = chat_server(max_clients=2)
    _alice, bob = server.room("alice", "bob")
    full = server.connect()
    full.expect("Server is full, try again later.")
    full.expect_closed()
    bob.say("/quit")
    bob.expect("Goodbye.")
    bob.expect_closed()
    carol = server.connect()
    carol.expect(GREETING)
    carol.say("carol")
    carol.expect("carol has joined the chat.", "Online (2): alice, carol")


def test_a_flooder_is_warned_at_most_once_a_second_and_its_excess_is_dropped(chat_server):
    flooder, watcher = chat_server(rate=5).room("flooder", "watcher")
    started = time.monotonic()
    flooder.send(b"".join(b"line %d\r\n" % i for i in range(30)))
    flooder.sync()
    flooder.sync()                           # the second: every line above has been read
    watcher.say("sentinel")
    seen = watcher.lines_until("watcher says: sentinel")[:-1]
    got = flooder.lines_until("watcher says: sentinel")[:-1]
    elapsed = time.monotonic() - started
    passed = len(seen)
    assert seen == [f"flooder says: line {i}" for i in range(passed)]
    # burst: twice the rate, less the token the handle line took
    assert 9 <= passed <= 9 + 5 * elapsed + 1, (passed, elapsed)
    warning = "You are sending too fast; slow down."
    assert [line for line in got if line != warning] == seen
    assert 1 <= got.count(warning) <= 1 + elapsed, (got, elapsed)


def test_a_flooder_is_warned_again_after_a_second_while_it_goes_on(chat_server):
    (flooder,) = chat_server(rate=5).room("flooder")
    warning = "You are sending too fast; slow down."
    burst = b"".join(b"flood %d\r\n" % i for i in range(12))   # more than the bucket holds
    started = time.monotonic()
    warnings = 0
    while warnings < 2 and time.monotonic() - started < TIMEOUT:
        flooder.send(burst)
        flooder.sync()
        flooder.sync()
        while flooder.pending():
            warnings += flooder.line() == warning
    elapsed = time.monotonic() - started
    assert warnings == 2, f"{warnings} warnings in {elapsed:.1f} s of flooding"
    assert elapsed >= 1.0, f"a second warning came {elapsed:.2f} s after the first flood"


def test_a_login_over_the_join_rate_is_told_how_long_to_wait_and_logged(chat_server):
    server = chat_server(join_rate=0.1)          # burst 10, then one each 10 s
    for number in range(10):
        server.join(f"user{number}").close()
    client = server.connect()
    client.expect(GREETING)
    client.say("late")
    answer = client.line()
    wait = re.fullmatch(r"Too many logins from your address; wait (\d+) seconds?\.", answer)
    assert wait and 1 <= int(wait.group(1)) <= 10, answer
    client.expect(GREETING)
    server.wait_for_log(r"login refused: too many logins from 127\.0\.0\.1")


def test_refused_handles_and_a_flooding_member_are_logged(chat_server):
    server = chat_server(rate=1)
    client = server.connect()
    client.expect(GREETING)
    client.say("bad!")
    client.expect(not_allowed("'!' (U+0021)"), GREETING)
    server.wait_for_log(r"login refused: Invalid handle: '!'")
    client.send(b"flood\r\n" * 10)
    client.lines_until("You are sending too fast; slow down.")
    server.wait_for_log(r"127\.0\.0\.1:\d+: over its rate \(--rate 1\): lines dropped")


def test_a_flood_of_refusals_is_logged_at_a_bounded_rate_counting_what_it_left_out(
        chat_server):
    server = chat_server(rate=0)
    client = server.connect()
    client.expect(GREETING)
    bang = not_allowed("'!' (U+0021)")
    client.send(b"bad!\r\n" * 40)
    for _ in range(40):
        client.expect(bang, GREETING)
    time.sleep(0.3)                           # the log's bucket (5 lines/s) gets a line back
    client.say("bad!")
    client.expect(bang, GREETING)
    note = server.wait_for_log(r"login refused: .* \((\d+) such lines not logged before this")
    logged = [line for line in server.log if line and "login refused" in line]
    assert len(logged) <= 30                  # a burst of 20, and what 5 a second adds
    assert len(logged) + int(note.group(1)) == 41


def test_the_handle_line_counts_against_the_rate(chat_server):
    client = chat_server(rate=1).connect()
    client.expect(GREETING)
    client.send(b"!\r\n!\r\n!\r\n")
    bang = not_allowed("'!' (U+0021)")
    client.expect(bang, GREETING, bang, GREETING, "You are sending too fast; slow down.")


def test_rate_0_turns_the_limit_off(chat_server):
    alice, bob = chat_server(rate=0).room("alice", "bob")
    alice.send(b"".join(b"n %d\r\n" % i for i in range(500)))
    expected = [f"alice says: n {i}" for i in range(500)]
    for client in (alice, bob):
        assert client.lines(500) == expected
        client.expect_nothing_more()


# ------------------------------------------------------------------ slow readers


def more_than_the_kernels_hold():
    """Bytes that surely overflow the kernel's buffers towards a client that
    never reads (with a tiny SO_RCVBUF): twice the largest TCP send buffer,
    plus a margin; so some output must wait in the server's own queue."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as file:
            largest = int(file.read().split()[2])
    except (OSError, ValueError, IndexError):
        largest = 4 << 20
    return max(6 << 20, 2 * largest + (1 << 20))


def push_until(talker, readers, done, limit_bytes, line_size=60000, batch=8):
    """``talker`` broadcasts big numbered lines, and ``readers`` (the talker
    among them) read them all, until the last reader sees ``done`` (or
    ``limit_bytes`` were sent). Returns, for each reader, the numbers of the
    lines it saw and its other lines."""
    numbers = {client: [] for client in readers}
    others = {client: [] for client in readers}
    sent = number = 0
    while sent < limit_bytes:
        data = b"".join(b"%d " % (number + i) + b"x" * line_size + b"\r\n"
                        for i in range(batch))
        talker.send(data)
        sent += len(data)
        number += batch
        for reader in readers:
            while len(numbers[reader]) < number:
                line = reader.line()
                if line.startswith(f"{talker.name} says: "):
                    numbers[reader].append(int(line.split()[2]))
                else:
                    others[reader].append(line)
        if done in others[readers[-1]]:
            return numbers, others
    raise AssertionError(f"no {done!r} after {sent} bytes; the readers saw {others}")


def test_a_reader_that_never_reads_is_dropped_by_backlog_and_the_others_see_it_leave(
        chat_server):
    server = chat_server(rate=0, max_line=65536, max_backlog=65536)
    talker, watcher = server.room("talker", "watcher")
    server.join("slow", rcvbuf=4096)                     # reads no more from here on
    for client in (talker, watcher):
        client.expect("slow has joined the chat.")
    numbers, others = push_until(talker, [talker, watcher], "slow has left the chat.",
                                 limit_bytes=64 << 20)
    for client in (talker, watcher):
        assert others[client] == ["slow has left the chat."]
        assert numbers[client] == list(range(len(numbers[client])))   # none lost, in order
    talker.say("sentinel")
    for client in (talker, watcher):
        client.expect("talker says: sentinel")
        client.expect_nothing_more()
    server.wait_for_log(r"slow left \(output backlog over 65536 bytes")


def test_a_member_whose_output_does_not_move_for_the_stall_timeout_is_dropped(chat_server):
    server = chat_server("--stall-timeout", "1", rate=0, max_line=65536,
                         max_backlog=256 << 20)
    talker, watcher = server.room("talker", "watcher")
    server.join("slow", rcvbuf=4096)
    for client in (talker, watcher):
        client.expect("slow has joined the chat.")
    others = {talker: [], watcher: []}          # slow may be dropped while this goes on
    for _ in range(more_than_the_kernels_hold() // 60000 + 1):
        talker.say("x" * 60000)
        for client in (talker, watcher):
            others[client] += client.lines_until("talker says: " + "x" * 60000)[:-1]
    for client in (talker, watcher):
        if not others[client]:
            others[client].append(client.line())
        assert others[client] == ["slow has left the chat."]
    talker.say("sentinel")
    for client in (talker, watcher):
        client.expect("talker says: sentinel")
        client.expect_nothing_more()
    server.wait_for_log(r"slow left \(output stalled for 1 s")


def test_members_resetting_mid_broadcast_each_leave_once_and_the_others_lose_nothing(
        chat_server):
    server = chat_server(rate=0)
    talker, watcher, *goners = server.room("talker", "watcher", "g0", "g1", "g2", "g3", "g4")
    count = 400

    def talk():
        for start in range(0, count, 20):
            talker.send(b"".join(b"msg %d\r\n" % i for i in range(start, start + 20)))

    thread = threading.Thread(target=talk)
    thread.start()
    try:
        for goner in goners:
            goner.reset()
    finally:
        thread.join(TIMEOUT)
    expected_left = {f"g{i} has left the chat." for i in range(5)}
    for client in (talker, watcher):
        got = []                                 # the left lines come in any order, each
        while not expected_left <= set(got) or len(got) < count + 5:    # when noticed
            got.append(client.line())
        assert [line for line in got if "says:" in line] == \
            [f"talker says: msg {i}" for i in range(count)]
        assert sorted(line for line in got if "says:" not in line) == sorted(expected_left)
    talker.say("sentinel")
    for client in (talker, watcher):
        client.expect("talker says: sentinel")
        client.expect_nothing_more()


def test_every_member_gets_broadcasts_in_one_order_and_each_senders_in_its_order(chat_server):
    handles = ["s0", "s1", "s2", "s3"]
    clients = chat_server(rate=0).room(*handles)
    count = 250

    def talk(client, handle):
        for start in range(0, count, 25):
            client.send("".join(f"{handle}-{i}\r\n" for i in range(start, start + 25)))

    threads = [threading.Thread(target=talk, args=pair)
               for pair in zip(clients, handles, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    orders = [client.lines(count * len(handles)) for client in clients]
    for order in orders[1:]:
        assert order == orders[0]
    for handle in handles:
        assert [line for line in orders[0] if line.startswith(f"{handle} says:")] == \
            [f"{handle} says: {handle}-{i}" for i in range(count)]
    for client in clients:
        client.expect_nothing_more()


# ------------------------------------------------------------------ shutdown


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_tells_every_member_closes_every_socket_and_exits_0(chat_server, signum):
    server = chat_server()
    members = server.room("alice", "bob", "carol")
    prompt = server.connect()
    prompt.expect(GREETING)
    server.send_signal(signum)
    for member in members:
        member.expect("Server is shutting down.")
        member.expect_closed()
    prompt.expect_closed()
    assert server.wait() == 0


def shut_down_behind_a_slow_member(server):
    """Members talker and watcher, then slow, who never reads, with megabytes
    of output pending in the server; returns talker and watcher. On SIGTERM
    the server flushes each connection in turn, slow's for up to 2 s: once
    talker and watcher are closed, whoever connected after slow is still open."""
    talker, watcher = server.room("talker", "watcher")
    server.join("slow", rcvbuf=4096)
    for client in (talker, watcher):
        client.expect("slow has joined the chat.")
    for _ in range(more_than_the_kernels_hold() // 60000 + 1):
        talker.say("x" * 60000)
        for client in (talker, watcher):
            client.line()
    return talker, watcher


def test_shutdown_is_not_held_up_by_a_member_that_never_reads(chat_server):
    server = chat_server(rate=0, max_line=65536, max_backlog=256 << 20)
    talker, watcher = shut_down_behind_a_slow_member(server)
    server.send_signal(signal.SIGTERM)
    for client in (talker, watcher):
        client.expect("Server is shutting down.")
        client.expect_closed()
    assert server.wait() == 0


def test_a_client_logging_in_while_the_server_shuts_down_does_not_join(chat_server):
    server = chat_server(rate=0, max_line=65536, max_backlog=256 << 20)
    talker, watcher = shut_down_behind_a_slow_member(server)
    late = server.connect()
    late.expect(GREETING)
    server.send_signal(signal.SIGTERM)
    for client in (talker, watcher):
        client.expect("Server is shutting down.")
        client.expect_closed()                # flushed and closed: slow's flush is next
    late.say("late")
    assert late.drain_until_closed() in ([], ["Server is shutting down."])
    assert server.wait() == 0


def test_nothing_said_after_the_shutdown_line_reaches_anyone(chat_server):
    server = chat_server(rate=0, max_line=65536, max_backlog=256 << 20)
    talker, watcher = shut_down_behind_a_slow_member(server)
    last, other = server.room("last", "other")
    for client in (talker, watcher):
        client.expect("last has joined the chat.", "other has joined the chat.")
    server.send_signal(signal.SIGTERM)
    for client in (talker, watcher):
        client.expect("Server is shutting down.")
        client.expect_closed()
    for client in (last, other):
        client.expect("Server is shutting down.")
    last.say("/me is still here")
    last.say("anyone?")
    for client in (last, other):
        assert client.drain_until_closed() == []
    assert server.wait() == 0


# ------------------------------------------------------------------ command line


def test_help_lists_every_flag_with_the_protocols_default():
    result = subprocess.run([sys.executable, "-m", "chat", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m chat "), result.stdout
    options = {}                                    # flag -> its help, on one line
    for block in re.split(r"\n(?=  -)", result.stdout):
        match = re.match(r"\s+(--[\w-]+)", block)
        if match:
            options[match.group(1)] = " ".join(block.split())
    for flag, default in [("--host", "127.0.0.1"), ("--port", "1980"),
                          ("--max-clients", "10000"), ("--rate", "20"), ("--join-rate", "1"),
                          ("--keepalive", "30"),
                          ("--max-line", "4096"), ("--login-timeout", "60"),
                          ("--max-backlog", "1048576"), ("--log-level", "info")]:
        assert flag in options, f"{flag} missing from --help:\n{result.stdout}"
        assert re.search(rf"\(default {re.escape(default)}\b", options[flag]), options[flag]


@pytest.mark.parametrize("flag, value", [
    ("--port", "65536"), ("--max-clients", "0"), ("--rate", "-1"), ("--max-line", "0"),
    ("--login-timeout", "0"), ("--max-backlog", "0"), ("--rate", "fast"), ("--join-rate", "-1"),
    ("--keepalive", "0"),
])
def test_a_flag_value_out_of_range_is_a_usage_error_not_a_failing_server(flag, value):
    result = subprocess.run([sys.executable, "-m", "chat", "--port", "0", flag, value],
                            cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 2, result.stderr
    assert f"error: argument {flag}: " in result.stderr, result.stderr


def test_version_names_the_command_and_the_runtimes_version():
    result = subprocess.run([sys.executable, "-m", "chat", "--version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert (result.returncode, result.stdout) == (
        0, f"python -m chat (microthreads {microthreads.__version__})\n")


@pytest.mark.parametrize("variable, value", [("MICROTHREADS_POLLER", "bogus"),
                                             ("MICROTHREADS_WATCHDOG_MS", "abc")])
def test_a_bad_runtime_variable_is_one_error_line_and_status_2(variable, value):
    result = subprocess.run([sys.executable, "-m", "chat", "--port", "0", "--web-port", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
                            env={**os.environ, variable: value})
    assert result.returncode == 2, result.stderr
    assert f"ERROR chat: environment variable {variable}={value!r} is not" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_microthreads_chat_script_is_the_same_command():
    script = os.path.join(os.path.dirname(sys.executable), "microthreads-chat")
    if not os.path.exists(script):
        pytest.skip("the microthreads-chat script is not installed (pip install -e .)")
    result = subprocess.run([script, "--help"], capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: microthreads-chat "), result.stdout
    assert "--max-backlog" in result.stdout and "--login-timeout" in result.stdout
