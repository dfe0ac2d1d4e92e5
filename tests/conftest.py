"""Shared fixtures: a fresh hub for every test, and a virtual clock on request."""

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

import microthreads
from microthreads.testing import VirtualClock


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """pytest-timeout by thread, unless a method was chosen.

    Its default method installs a Python SIGALRM handler, and the hub rightly
    counts a signal handler as something that could still wake a tasklet
    (DESIGN.md "Deadlock"): under it a deadlocked test would hang until the
    timeout instead of getting DeadlockError.
    """
    if config.pluginmanager.hasplugin("timeout") and config.getoption("timeout_method") is None \
            and not config.getini("timeout_method"):
        config.option.timeout_method = "thread"
    # A shell that starts a command in the background (`make test &`) starts it
    # with SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
    # the Ctrl-C tests would see nothing. Tests run with Python's usual Ctrl-C.
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def fresh_hub():
    """Every test starts on a new hub; whatever it left behind is closed after it."""
    yield
    microthreads.get_hub().close()


@pytest.fixture
def virtual_clock():
    """This thread's hub on a clock that jumps to the next deadline when all wait."""
    with VirtualClock() as clock:
        yield clock


@pytest.fixture
def socket_pair():
    """Two connected, non-blocking stream sockets; closed after the test."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """Certificates made at test time (tests/tls_helpers.py): a CA, and server,
    expired, wrongly named and self-signed ones; skips without openssl."""
    from tls_helpers import OPENSSL, make_certificates
    if OPENSSL is None:
        pytest.skip("the openssl program is not installed (make system-deps)")
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def http_servers(certs):
    """``(http_port, https_port, certs)``: tests/monkey_helpers.py's slow HTTP and
    HTTPS servers (``/slow`` answers after 0.3 s), stopped after the session."""
    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monkey_helpers.py")
    procs, ports = [], []
    try:
        for extra in ([], [certs.server, certs.server_key]):
            proc = subprocess.Popen([sys.executable, helper, "serve", *extra],
                                    stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            ports.append(int(proc.stdout.readline()))
        yield ports[0], ports[1], certs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            proc.stdout.close()
