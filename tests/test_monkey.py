"""microthreads.monkey: unmodified clients cooperate once patch_all() has run.

Patching is process-wide, so every scenario runs in a fresh interpreter
(tests/monkey_helpers.py) against a real local server: a threaded
``http.server`` (plain, and HTTPS with a certificate made at test time) whose
``/slow`` answers after 0.3 s, and ``redis-server``. Each scenario makes N
requests in N tasklets beside a ticker: they must overlap (under N x
0.3 s) while the ticker keeps ticking.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from chat_helpers import ROOT

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monkey_helpers.py")
N = 8
SLOW = 0.3
#: Serial takes at least N x SLOW = 2.4 s; overlapping, about SLOW plus the
#: clients' own work (TLS handshakes), which a loaded machine stretches: so
#: the bound is just under what any serial run takes, not near SLOW.
WELL_UNDER = 0.9 * N * SLOW


def _helper(*args, timeout=60):
    proc = subprocess.run([sys.executable, HELPER, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _assert_overlapped(result):
    assert result["answers"] == [f"ok /slow/{i}" for i in range(N)]
    assert result["elapsed"] < WELL_UNDER, result
    assert result["ticks"] >= 5, result        # the hub went on ticking meanwhile


@pytest.mark.parametrize("kind", ["urlopen", "requests"])
def test_unmodified_http_clients_overlap_over_http(http_servers, kind):
    http_port, _https_port, _certs = http_servers
    _assert_overlapped(_helper("client", kind, f"http://127.0.0.1:{http_port}", N))


@pytest.mark.parametrize("kind", ["urlopen", "requests"])
def test_unmodified_http_clients_overlap_over_https(http_servers, kind):
    _http_port, https_port, certs = http_servers
    _assert_overlapped(_helper("client", kind, f"https://localhost:{https_port}", N,
                               certs.ca))


def test_http_client_overlaps(http_servers):
    http_port, _https_port, _certs = http_servers
    _assert_overlapped(_helper("client", "http.client", f"127.0.0.1:{http_port}", N))


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="needs redis-server (make system-deps)")
def test_redis_py_without_an_adapter_overlaps(tmp_path):
    pytest.importorskip("redis")
    from redis_helpers import RedisServer
    server = RedisServer()
    try:
        result = _helper("client", "redis", server.url, N)
    finally:
        server.stop()
    assert result["answers"] == ["None"] * N         # each BLPOP waited 0.3 s for nothing
    assert result["elapsed"] < WELL_UNDER, result
    assert result["ticks"] >= 5, result


def _run(code):
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_importing_microthreads_patches_nothing():
    assert _run(
        "import socket, ssl, select, selectors, time\n"
        "originals = (socket.socket, ssl.SSLContext.sslsocket_class, select.select,\n"
        "             selectors.DefaultSelector, time.sleep)\n"
        "import microthreads, microthreads.net, microthreads.monkey as monkey\n"
        "print((socket.socket, ssl.SSLContext.sslsocket_class, select.select,\n"
        "       selectors.DefaultSelector, time.sleep) == originals)\n"
        "print(*[monkey.is_patched(n) for n in ('socket', 'ssl', 'select', 'time')])\n"
        "monkey.patch_all()\n"
        "print(*[monkey.is_patched(n) for n in ('socket', 'ssl', 'select', 'time')])\n"
    ) == ["True", "False", "False", "False", "False", "True", "True", "True", "True"]


def test_patched_calls_without_a_running_hub_behave_as_blocking_calls(http_servers):
    """urlopen, time.sleep and select from the main thread before any run(),
    and from a plain thread: each returns as the blocking call would."""
    http_port, _https_port, _certs = http_servers
    url = f"http://127.0.0.1:{http_port}/slow/x"
    assert _run(
        "from microthreads import monkey; monkey.patch_all()\n"
        "import select, socket, threading, time, urllib.request\n"
        f"def fetch(): return urllib.request.urlopen({url!r}, timeout=10).read().decode()\n"
        "began = time.monotonic(); time.sleep(0.05)\n"
        "print(time.monotonic() - began >= 0.05)\n"
        "a, b = socket.socketpair(); b.sendall(b'x')\n"
        "print(select.select([a], [], [], 5)[0] == [a])\n"
        "print(fetch().replace(' ', '_'))\n"
        "answers = []\n"
        "thread = threading.Thread(target=lambda: answers.append(fetch()))\n"
        "thread.start(); thread.join(10)\n"
        "print(answers[0].replace(' ', '_'))\n"
    ) == ["True", "True", "ok_/slow/x", "ok_/slow/x"]


def test_patched_select_and_selectors_park_the_tasklet_not_the_thread():
    assert _run(
        "from microthreads import monkey; monkey.patch_all()\n"
        "import selectors, select, socket, time\n"
        "import microthreads\n"
        "events = []\n"
        "def waiter(use_selectors):\n"
        "    a, b = socket.socketpair()\n"
        "    microthreads.spawn_later(0.1, b.sendall, b'x')\n"
        "    if use_selectors:\n"
        "        sel = selectors.DefaultSelector(); sel.register(a, selectors.EVENT_READ)\n"
        "        ready = [key.fileobj for key, _ in sel.select(5)]\n"
        "    else:\n"
        "        ready = select.select([a], [], [], 5)[0]\n"
        "    events.append(('ready', ready == [a]))\n"
        "def ticker():\n"
        "    for _ in range(3):\n"
        "        time.sleep(0.01); events.append('tick')\n"
        "def main():\n"
        "    for use_selectors in (False, True):\n"
        "        microthreads.joinall([microthreads.spawn(waiter, use_selectors),\n"
        "                              microthreads.spawn(ticker)])\n"
        "microthreads.run(main)\n"
        "print(*[e if isinstance(e, str) else e[1] for e in events])\n"
    ) == ["tick", "tick", "tick", "True"] * 2


def test_a_patched_tls_client_that_wraps_before_it_connects_with_its_own_socket_class(
        http_servers):
    """The two ways CPython's test_ssl wraps: a fresh socket wrapped, then connected;
    and a context whose sslsocket_class is the user's own subclass. Both cooperate."""
    _http_port, https_port, certs = http_servers
    assert _run(
        "from microthreads import monkey; monkey.patch_all()\n"
        "import socket, ssl, time\n"
        "import microthreads\n"
        "class Mine(ssl.SSLSocket):\n"
        "    pass\n"
        "ticks = []\n"
        "def ticker():\n"
        "    while True:\n"
        "        time.sleep(0.02); ticks.append(1)\n"
        "def fetch():\n"
        f"    context = ssl.create_default_context(cafile={certs.ca!r})\n"
        "    context.sslsocket_class = Mine\n"
        "    tls = context.wrap_socket(socket.socket(), server_hostname='localhost')\n"
        "    tls.settimeout(10)\n"
        f"    tls.connect(('127.0.0.1', {https_port}))\n"
        "    tls.sendall(b'GET /slow/w HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n')\n"
        "    reply = b''.join(iter(lambda: tls.recv(4096), b''))\n"
        "    tls.close()\n"
        "    return isinstance(tls, Mine), reply.endswith(b'ok /slow/w')\n"
        "def main():\n"
        "    microthreads.spawn(ticker)\n"
        "    return fetch()\n"
        "print(*microthreads.run(main), len(ticks) >= 5)\n"
    ) == ["True", "True", "True"]


def test_patched_select_checks_its_arguments_as_the_stdlib_does_and_asks_fileno_once():
    assert _run(
        "from microthreads import monkey; monkey.patch_all()\n"
        "import select, socket\n"
        "import microthreads\n"
        "class Counted:\n"
        "    calls = 0\n"
        "    def __init__(self, sock): self.sock = sock\n"
        "    def fileno(self):\n"
        "        Counted.calls += 1\n"
        "        return self.sock.fileno()\n"
        "def main():\n"
        "    a, b = socket.socketpair()\n"
        "    for bad, timeout in ((object(), 1), (-1, 1), (a, -1), (a, 'soon')):\n"
        "        try:\n"
        "            select.select([bad], [], [], timeout)\n"
        "        except (TypeError, ValueError) as exc:\n"
        "            print(type(exc).__name__)\n"
        "    counted = Counted(a)\n"
        "    microthreads.spawn_later(0.01, b.sendall, b'x')\n"
        "    print(select.select([counted], [], [], 5)[0] == [counted], Counted.calls)\n"
        "microthreads.run(main)\n"
    ) == ["TypeError", "ValueError", "ValueError", "TypeError", "True", "1"]


def test_patched_selectors_keep_the_stdlib_names_and_epoll_refuses_a_regular_file(tmp_path):
    path = tmp_path / "regular"
    path.write_text("")
    assert _run(
        "from microthreads import monkey; monkey.patch_all()\n"
        "import selectors\n"
        "names = [getattr(selectors, name).__name__ for name in\n"
        "         ('SelectSelector', 'PollSelector', 'EpollSelector')]\n"
        "print(*names, selectors.DefaultSelector is selectors.EpollSelector)\n"
        f"with open({str(path)!r}) as file, selectors.EpollSelector() as sel:\n"
        "    try:\n"
        "        sel.register(file, selectors.EVENT_READ)\n"
        "    except PermissionError:\n"
        "        print('refused')\n"
    ) == ["SelectSelector", "PollSelector", "EpollSelector", "True", "refused"]
