"""The chat over TLS (``--tls-cert``/``--tls-key``) with the real TLS clients a
person would use: ``openssl s_client -quiet`` and ``ncat --ssl``, on a
pseudo-terminal through pexpect, beside a member on a Python TLS client.
Certificates are made at test time (the ``certs`` fixture)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from chat_helpers import GREETING, ROOT, TIMEOUT, Client, chat_servers
from test_chat_clients import Terminal, from_greeting
from tls_helpers import client_context, needs_openssl

pexpect = pytest.importorskip("pexpect")
pytestmark = needs_openssl


class TLSClient(Client):
    """``chat_helpers.Client`` over TLS, trusting the test CA."""

    def __init__(self, port, certs, **options):
        super().__init__(port, **options)
        self.sock = client_context(certs).wrap_socket(self.sock, server_hostname="localhost")


class TLSTerminal(Terminal):
    """A person at a terminal running a TLS client program to the chat."""

    def __init__(self, argv):              # Terminal's methods; only the program differs
        import io
        import os
        env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8", TERM="xterm")
        self.transcript = io.StringIO()
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8",
                                   timeout=TIMEOUT, dimensions=(24, 100))
        self.child.logfile_read = self.transcript


@pytest.fixture
def tls_chat(certs):
    """``(server, start_terminal)``: a chat server over TLS, and a way to open
    terminals on it; all stopped after the test."""
    terminals = []

    def terminal(program, port):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (`make system-deps` installs it)")
        argv = {"openssl": ["openssl", "s_client", "-quiet", "-verify_return_error",
                            "-CAfile", certs.ca, "-connect", f"127.0.0.1:{port}"],
                "ncat": ["ncat", "--ssl", "--crlf", "127.0.0.1", str(port)]}[program]
        term = TLSTerminal(argv)
        terminals.append(term)
        return term

    with chat_servers() as start:
        server = start(tls_cert=certs.server, tls_key=certs.server_key)
        yield server, terminal
        for term in terminals:
            term.child.close(force=True)


def join_tls(server, certs, handle):
    client = TLSClient(server.port, certs, name=handle)
    server.clients.append(client)
    client.expect(GREETING)
    client.say(handle)
    client.expect(f"{handle} has joined the chat.")
    client.line()                             # Online (n): ...
    return client


@pytest.mark.parametrize("program", ["openssl", "ncat"])
def test_a_tls_client_program_logs_in_talks_to_another_member_and_quits(tls_chat, certs,
                                                                         program):
    server, terminal = tls_chat
    alice = join_tls(server, certs, "alice")
    person = terminal(program, server.port)
    person.sees(GREETING)
    person.type("carol")
    person.sees("Online (2): alice, carol")
    alice.expect("carol has joined the chat.")
    person.type("hello alice, over TLS")
    alice.expect("carol says: hello alice, over TLS")
    alice.say("hello carol")
    alice.expect("alice says: hello carol")
    person.sees("alice says: hello carol")
    person.type("/quit")
    alice.expect("carol has left the chat.")
    if program == "ncat":     # ncat ignores the server's close until its input ends
        person.child.sendeof()                # Ctrl-D
    person.ends()
    assert from_greeting(person.screen())[:6] == [
        GREETING, "carol", "carol has joined the chat.", "Online (2): alice, carol",
        "hello alice, over TLS", "carol says: hello alice, over TLS"]


def test_a_plaintext_client_on_the_tls_port_is_told_how_to_connect_and_logged(tls_chat,
                                                                               certs):
    server, _terminal = tls_chat
    alice = join_tls(server, certs, "alice")
    plain = server.connect(name="plain")
    plain.say("hello?")                       # a line typed before any prompt
    assert plain.line() == ("This port speaks TLS: connect with `openssl s_client -quiet"
                            f" -connect 127.0.0.1:{server.port}` or `ncat --ssl 127.0.0.1"
                            f" {server.port}`.")
    assert plain.event() is None              # then closed
    server.wait_for_log(r"127\.0\.0\.1:\d+: not speaking TLS \(its first bytes: b'hello'\)")
    alice.say("still here")                   # the TLS member beside it goes on
    alice.expect("alice says: still here")
    bob = join_tls(server, certs, "bob")      # and so do new ones
    bob.say("/quit")


def test_a_tls_handshake_that_fails_otherwise_is_logged_with_the_peer_and_reason(tls_chat,
                                                                                 certs):
    import socket
    import ssl
    server, _terminal = tls_chat
    refusing = ssl.create_default_context()   # trusts the system's CAs, not the test CA
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        refusing.wrap_socket(raw, server_hostname="localhost")
    server.wait_for_log(r"127\.0\.0\.1:\d+: TLS handshake failed: \w")
    alice = join_tls(server, certs, "alice")
    alice.say("/quit")


def test_tls_flags_that_cannot_be_used_are_a_clear_error(tmp_path):
    missing = str(tmp_path / "missing.pem")
    proc = subprocess.run([sys.executable, "-m", "chat", "--port", "0", "--tls-cert", missing,
                           "--tls-key", missing], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 2
    assert f"cannot use --tls-cert {missing}" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "chat", "--tls-cert", missing], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2
    assert "--tls-cert and --tls-key go together" in proc.stderr


def test_workers_are_given_the_tls_flags():
    from chat.cli import parse_args
    from chat.supervisor import worker_argv
    args = parse_args(["--workers", "2", "--redis", "redis://127.0.0.1:1/0",
                       "--tls-cert", "c.pem", "--tls-key", "k.pem"])
    argv = worker_argv(args, 1980)
    assert argv[argv.index("--tls-cert") + 1] == "c.pem"
    assert argv[argv.index("--tls-key") + 1] == "k.pem"
