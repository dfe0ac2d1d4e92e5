"""Processes for the monkey-patching tests (patching is process-wide: each
scenario gets a fresh interpreter, as eventlet's isolated tests do), and the
clients of the driver tests (tests/test_drivers.py).

``python tests/monkey_helpers.py serve [CERT KEY]``: a threaded ``http.server``
on a free loopback port (HTTPS with CERT/KEY) whose ``/slow`` answers after
0.3 s and ``/brief`` after 0.02 s; prints its port, then serves until killed.

``python tests/monkey_helpers.py client KIND TARGET N [CA] [serial]``: in a
process that calls ``monkey.patch_all()`` first, N unmodified clients of KIND
each make one 0.3 s request to TARGET, in N tasklets at once (or one after
another with ``serial``), beside a ticker tasklet; prints JSON: the wall time
of the requests, the ticks seen meanwhile and the answers. KIND is an HTTP
client (``urlopen``, ``http.client``, ``requests``), ``redis`` (a BLPOP that
waits 0.3 s), or a driver of tests/test_drivers.py (``pymysql``, ``psycopg``,
``psycopg2``, ``paramiko``, ``redis-pool``, ``smtplib``, ``ftplib``). The
same scenario runs in the tests' own process, unpatched, with
``scenario(..., way="threads")`` (each call in ``run_in_thread``) or with a
hook installed (``way="tasklets"``).
"""

import sys

if __name__ == "__main__" and sys.argv[1] == "client":
    from microthreads import monkey
    monkey.patch_all()      # before anything else is imported, as a user would

import json
import ssl
import time

#: What one request makes the server wait (seconds).
SLOW = 0.3
#: What a ``/brief`` request makes it wait.
BRIEF = 0.02


def serve(cert=None, key=None):
    import http.server

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/slow"):
                time.sleep(SLOW)          # the server is not patched: one thread per request
            elif self.path.startswith("/brief"):
                time.sleep(BRIEF)
            body = f"ok {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 64         # every client of a test connects at once (5 drops SYNs)

    httpd = Server(("127.0.0.1", 0), Slow)
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


def fetch(kind, target, i, ca, shared=None):
    """One request of ``kind`` to ``target`` that takes SLOW seconds on the server;
    returns what came back (``ok /slow/i`` from the HTTP server and the drivers)."""
    path = f"/slow/{i}"
    if kind == "urlopen":
        import urllib.request
        context = ssl.create_default_context(cafile=ca) if ca else None
        with urllib.request.urlopen(target + path, timeout=10, context=context) as reply:
            return reply.read().decode()
    if kind == "http.client":
        import http.client
        host, port = target.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", path)
        answer = conn.getresponse().read().decode()
        conn.close()
        return answer
    if kind == "requests":
        import requests
        return requests.get(target + path, timeout=10, verify=ca or True).text
    if kind == "redis":
        import redis
        client = redis.Redis.from_url(target, socket_timeout=10)
        answer = client.blpop([f"nothing:{i}"], timeout=SLOW)   # waits SLOW, then None
        client.close()
        return repr(answer)
    return DRIVERS[kind](target, i, ca, shared)


def _dbapi_query(conn, sleep, i):
    """``SELECT <sleep>(SLOW), '/slow/i'`` on a DB-API connection, which is then closed."""
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT {sleep}(%s), %s", (SLOW, f"/slow/{i}"))
            return "ok " + cursor.fetchone()[1]
    finally:
        conn.close()


def _pymysql(target, i, _ca, _shared):
    import pymysql
    host, port = target.rsplit(":", 1)
    return _dbapi_query(pymysql.connect(host=host, port=int(port), user="root",
                                        connect_timeout=10, read_timeout=10,
                                        write_timeout=10), "SLEEP", i)


def _psycopg(target, i, _ca, _shared):
    import psycopg
    return _dbapi_query(psycopg.connect(target), "pg_sleep", i)


def _psycopg2(target, i, _ca, _shared):
    import psycopg2
    return _dbapi_query(psycopg2.connect(target), "pg_sleep", i)


def _paramiko(_target, i, _keys, client):
    """A command of SLOW seconds on a channel of the shared SSH connection."""
    _stdin, stdout, _stderr = client.exec_command(f"sleep {SLOW}; echo /slow/{i}", timeout=10)
    return "ok " + stdout.read().decode().strip()


def _ssh_client(target, keys):
    """One paramiko connection to ``user@host:port``; ``keys`` is the directory of
    tests/server_helpers.py's Sshd (its ``client_key``, and a ``known_hosts``
    that trusts the server: an unknown host key is refused)."""
    import os

    import paramiko
    user, address = target.split("@")
    host, port = address.rsplit(":", 1)
    client = paramiko.SSHClient()
    client.load_host_keys(os.path.join(keys, "known_hosts"))
    client.connect(host, int(port), username=user, key_filename=os.path.join(keys, "client_key"),
                   look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10,
                   auth_timeout=10)
    return client


def _redis_pool(_target, i, _ca, pool):
    """A BLPOP of SLOW seconds on a connection of the shared BlockingConnectionPool."""
    import redis
    answer = redis.Redis(connection_pool=pool).blpop([f"nothing:{i}"], timeout=SLOW)
    return f"ok /slow/{i}" if answer is None else repr(answer)


def _smtplib(target, i, _ca, _shared):
    import smtplib
    host, port = target.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=10) as smtp:
        refused = smtp.sendmail("from@example.test", [f"to{i}@example.test"],
                                f"Subject: /slow/{i}\r\n\r\nhello\r\n")
    return f"ok /slow/{i}" if not refused else repr(refused)


def _ftplib(target, i, _ca, _shared):
    import ftplib
    host, port = target.rsplit(":", 1)
    chunks = []
    with ftplib.FTP(timeout=10) as ftp:
        ftp.connect(host, int(port))
        ftp.login()
        ftp.retrbinary("RETR slow.txt", chunks.append)
    return f"{b''.join(chunks).decode()} /slow/{i}"


#: The driver kinds of fetch(): each makes one connection (redis-pool takes one
#: from a shared pool, paramiko opens a channel on a shared connection) and
#: one SLOW-second operation on it.
DRIVERS = {"pymysql": _pymysql, "psycopg": _psycopg, "psycopg2": _psycopg2,
           "paramiko": _paramiko, "redis-pool": _redis_pool, "smtplib": _smtplib,
           "ftplib": _ftplib}
#: redis-pool's BlockingConnectionPool holds half as many connections as there
#: are tasklets: half of them wait in the pool's queue for a connection.
POOL_SHARE = 2


def _open_shared(kind, target, count, ca):
    """What the requests of ``kind`` share: paramiko's connection, redis-pool's pool."""
    if kind == "paramiko":
        return _ssh_client(target, ca)
    if kind == "redis-pool":
        import redis
        return redis.BlockingConnectionPool.from_url(
            target, max_connections=max(1, count // POOL_SHARE), timeout=10, socket_timeout=10)
    return None


#: Kinds whose operation costs the server much more than SLOW (an SSH command
#: is a session, a process and a shell): scenario() times one alone first, and
#: reports it as ``one``, so that a test can say what the serial sum would be.
TIME_ONE_FIRST = {"paramiko"}


def scenario(kind, target, count, ca=None, way="concurrent"):
    """``count`` requests of ``kind`` beside a ticker tasklet, on a new hub; returns
    ``{"elapsed", "ticks", "answers"}`` (and ``one`` for TIME_ONE_FIRST).
    ``way``: ``concurrent`` (one tasklet each, calling fetch() itself),
    ``threads`` (one tasklet each, calling it through ``run_in_thread``),
    ``serial`` (one after another)."""
    import microthreads
    ticks = []
    shared = _open_shared(kind, target, count, ca)

    def ticker():
        while True:
            microthreads.sleep(0.01)
            ticks.append(time.monotonic())

    def one(i):
        if way == "threads":
            return microthreads.run_in_thread(fetch, kind, target, i, ca, shared)
        return fetch(kind, target, i, ca, shared)

    def main():
        ticking = microthreads.spawn(ticker)
        alone = None
        if kind in TIME_ONE_FIRST:
            started = time.monotonic()
            one("alone")
            alone = time.monotonic() - started
            del ticks[:]
        started = time.monotonic()
        if way == "serial":
            answers = [one(i) for i in range(count)]
        else:
            tasklets = [microthreads.spawn(one, i) for i in range(count)]
            answers = [t.get() for t in tasklets]
        elapsed = time.monotonic() - started
        ticking.kill()
        result = {"elapsed": elapsed, "ticks": len(ticks), "answers": answers}
        if alone is not None:
            result["one"] = alone
        return result

    try:
        return microthreads.run(main)
    finally:
        if kind == "redis-pool":
            shared.disconnect()
        elif shared is not None:
            shared.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(*sys.argv[2:4])
    else:
        kind, target, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
        ca = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
        print(json.dumps(scenario(kind, target, count, ca, *sys.argv[6:7])), flush=True)
