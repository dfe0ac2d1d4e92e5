"""The chat service with the real clients a person would use: telnet and nc.

Debian's ``telnet`` and ``nc`` (netcat-openbsd) run on a pseudo-terminal
through pexpect, and the tests check what the person at that terminal sees,
line by line: the pty's own echo of what was typed included, as on a screen.
Keys are sent as a keyboard sends them: Enter is a carriage return, Ctrl-C
the terminal's interrupt character. Each test skips, naming the missing
program, where it is not installed (``make system-deps`` installs both).
"""

from __future__ import annotations

import io
import os
import re
import shutil

import pytest
from chat_helpers import INVALID, TIMEOUT, chat_servers

pexpect = pytest.importorskip("pexpect")

PACKAGES = {"telnet": "telnet", "nc": "netcat-openbsd"}


@pytest.fixture
def chat_server():
    """``chat_server(**flags)`` starts a server; all are stopped after the test."""
    with chat_servers() as start:
        yield start


@pytest.fixture
def terminal():
    """``terminal(program, port)``: a Terminal running telnet or nc on a pty.

    Every program started is ended (by its PID) after the test."""
    started = []

    def start(program, port):
        if shutil.which(program) is None:
            pytest.skip(f"the {program} client is not installed (Debian package"
                        f" {PACKAGES[program]}; `make system-deps` installs it)")
        term = Terminal(program, port)
        started.append(term)
        return term

    yield start
    for term in started:
        term.child.close(force=True)


class Terminal:
    """A person at a terminal running ``program 127.0.0.1 PORT``."""

    def __init__(self, program, port):
        env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8", TERM="xterm")
        self.transcript = io.StringIO()
        self.child = pexpect.spawn(program, ["127.0.0.1", str(port)], env=env,
                                   encoding="utf-8", timeout=TIMEOUT, dimensions=(24, 100))
        self.child.logfile_read = self.transcript

    def type(self, text):
        """Type ``text`` and press Enter (a carriage return, as a keyboard sends it)."""
        self.child.send(text + "\r")

    def sees(self, line):
        """Wait until the line ``line`` appears on the terminal, after what was seen
        before. (Its ending may show as CR LF, or as CR CR LF where the pty adds a
        CR to the server's CR LF, as under nc.)"""
        self.child.expect(re.escape(line) + r"\r*\n")

    def press_ctrl_c(self):
        self.child.sendintr()

    def ends(self):
        """The program exits by itself; its exit status."""
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus

    def screen(self):
        """What was shown, as lines (line endings and trailing CRs dropped)."""
        return [line.rstrip("\r") for line in
                re.split(r"\r?\n", self.transcript.getvalue())][:-1]


def from_greeting(lines):
    """The lines from the greeting on (before it: the client's own banner)."""
    return lines[lines.index("What is your handle?"):]


def test_a_telnet_user_logs_in_by_typing_a_handle_and_chats_with_others(chat_server,
                                                                          terminal):
    server = chat_server()
    bob = server.join("bob")
    person = terminal("telnet", server.port)
    person.sees("What is your handle?")
    person.type("alice")
    person.sees("Online (2): bob, alice")
    bob.expect("alice has joined the chat.")
    bob.say("hi alice")
    person.sees("bob says: hi alice")
    person.type("hello bob")
    person.sees("alice says: hello bob")
    bob.expect("bob says: hi alice", "alice says: hello bob")
    assert from_greeting(person.screen()) == [
        "What is your handle?",
        "alice",                                       # the terminal's echo of the typing
        "alice has joined the chat.",
        "Online (2): bob, alice",
        "bob says: hi alice",
        "hello bob",
        "alice says: hello bob",
    ]


def test_ctrl_c_in_telnet_does_not_silence_the_session(chat_server, terminal):
    server = chat_server()
    bob = server.join("bob")
    person = terminal("telnet", server.port)
    person.sees("What is your handle?")
    person.type("alice")
    person.sees("Online (2): bob, alice")
    bob.expect("alice has joined the chat.")
    person.press_ctrl_c()          # telnet sends IAC IP IAC DO TIMING-MARK and discards
    person.type("loud and clear")  # all output until the server answers WONT TIMING-MARK
    person.sees("alice says: loud and clear")
    bob.expect("alice says: loud and clear")
    bob.say("can you hear me?")
    person.sees("bob says: can you hear me?")
    assert from_greeting(person.screen())[-3:] == [
        "^Cloud and clear", "alice says: loud and clear", "bob says: can you hear me?"]


def test_quit_in_telnet_closes_the_connection_and_telnet_says_so(chat_server, terminal):
    server = chat_server()
    bob = server.join("bob")
    person = terminal("telnet", server.port)
    person.sees("What is your handle?")
    person.type("alice")
    person.sees("Online (2): bob, alice")
    person.type("/quit")
    person.sees("Connection closed by foreign host.")
    person.ends()
    bob.expect("alice has joined the chat.", "alice has left the chat.")
    assert from_greeting(person.screen()) == [
        "What is your handle?", "alice", "alice has joined the chat.",
        "Online (2): bob, alice", "/quit", "Goodbye.", "Connection closed by foreign host."]


def test_a_telnet_user_with_an_invalid_or_taken_handle_is_asked_again(chat_server, terminal):
    server = chat_server()
    server.join("bob")
    person = terminal("telnet", server.port)
    person.sees("What is your handle?")
    person.type("no spaces please")
    person.sees("What is your handle?")
    person.type("BOB")
    person.sees("What is your handle?")
    person.type("zoë")
    person.sees("Online (2): bob, zoë")
    assert from_greeting(person.screen()) == [
        "What is your handle?",
        "no spaces please",
        INVALID,
        "What is your handle?",
        "BOB",
        "That handle is already taken.",
        "What is your handle?",
        "zoë",
        "zoë has joined the chat.",
        "Online (2): bob, zoë",
    ]


def test_a_nc_user_logs_in_and_chats_with_others(chat_server, terminal):
    server = chat_server()
    alice = server.join("alice")
    person = terminal("nc", server.port)
    person.sees("What is your handle?")
    person.type("carol")
    person.sees("Online (2): alice, carol")
    alice.expect("carol has joined the chat.")
    alice.say("welcome, carol")
    person.sees("alice says: welcome, carol")
    person.type("/me waves")
    person.sees("* carol waves")
    alice.expect("alice says: welcome, carol", "* carol waves")
    assert from_greeting(person.screen()) == [
        "What is your handle?", "carol", "carol has joined the chat.",
        "Online (2): alice, carol", "alice says: welcome, carol", "/me waves",
        "* carol waves"]


def test_quit_in_nc_closes_the_connection(chat_server, terminal):
    server = chat_server()
    alice = server.join("alice")
    person = terminal("nc", server.port)
    person.sees("What is your handle?")
    person.type("carol")
    person.sees("Online (2): alice, carol")
    person.type("/quit")
    alice.expect("carol has joined the chat.", "carol has left the chat.")
    # netcat-openbsd stays until its next write finds the connection closed
    person.type("anyone there?")
    person.ends()
    assert from_greeting(person.screen())[-4:] == [
        "Online (2): alice, carol", "/quit", "Goodbye.", "anyone there?"]


def test_a_telnet_user_and_a_nc_user_talk_to_each_other(chat_server, terminal):
    server = chat_server()
    tina = terminal("telnet", server.port)
    nick = terminal("nc", server.port)
    tina.sees("What is your handle?")
    tina.type("tina")
    tina.sees("Online (1): tina")
    nick.sees("What is your handle?")
    nick.type("nick")
    nick.sees("Online (2): tina, nick")
    tina.sees("nick has joined the chat.")
    tina.type("/msg NICK psst")
    nick.sees("[private] tina: psst")
    tina.sees("[private to nick] psst")
    nick.type("who's there?")
    tina.sees("nick says: who's there?")
    nick.sees("nick says: who's there?")
    tina.type("/quit")
    nick.sees("tina has left the chat.")
    tina.ends()
