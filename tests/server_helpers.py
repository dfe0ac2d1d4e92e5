"""Throwaway database and SSH servers for the driver tests (tests/test_drivers.py).

Each server is the machine's own binary (Debian's mariadb-server, postgresql,
openssh-server: ``make system-deps``), started once per test session on a
free 127.0.0.1 port with its files in a new temporary directory, tuned to
start fast (no fsync, small buffers), and stopped by its PID, never by name.
Run as root (CI), the databases run as ``nobody``: PostgreSQL refuses root
and MariaDB wants a user. A missing binary raises ``Missing``, which the
fixtures turn into a skip that says what to install.

``python tests/server_helpers.py smtp|ftp``: a small SMTP responder (one
thread per client) or a pyftpdlib FTP server (anonymous, one file), each on a
free loopback port that it prints, answering the DATA of a mail or a RETR
after SLOW seconds; serves until killed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from redis_helpers import free_port

#: Seconds to wait for a server to start (generous: a loaded 2-core machine).
PATIENCE = 30.0
#: What one operation makes the SMTP and FTP servers wait (seconds).
SLOW = 0.3
#: The one file the FTP server serves, and what it holds.
FTP_FILE, FTP_DATA = "slow.txt", b"ok"


class Missing(Exception):
    """A server binary (or tool) this machine does not have; the message says which."""


def _binary(*candidates):
    """The first of ``candidates`` (names on PATH, absolute paths, globs) that exists."""
    for candidate in candidates:
        if os.path.isabs(candidate):
            found = sorted(glob.glob(candidate), reverse=True)
            if found:
                return found[0]
        elif shutil.which(candidate):
            return shutil.which(candidate)
    raise Missing(f"none of {', '.join(candidates)} is installed")


def _wait_until(condition, what, proc):
    """Poll ``condition()`` until true; AssertionError if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the server exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not ready within {PATIENCE} s")
        time.sleep(0.05)


def _greets(port, prefix):
    """Whether a server on ``port`` accepts a connection and says something
    containing ``prefix`` first (MariaDB's handshake, SSH's banner)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return prefix in sock.recv(256)
    except OSError:
        return False


class _Server:
    """A server process with a directory of its own; ``stop()`` ends it by PID
    (SIGTERM, SIGKILL after 10 s) and removes the directory."""

    unprivileged = False          # as root, run it as nobody (the directory is theirs)

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix=f"microthreads-{type(self).__name__.lower()}-")
        self.port = free_port()
        self.proc = None
        self._as = {}
        if self.unprivileged and os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            self._as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _run(self, *args):
        """Run a set-up command to its end (as the server's user); its output on failure."""
        done = subprocess.run(args, cwd=self.dir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=PATIENCE, **self._as)
        if done.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")

    def _spawn(self, *args):
        with open(os.path.join(self.dir, "server.log"), "wb") as log:
            self.proc = subprocess.Popen(args, cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log,
                                         start_new_session=True, **self._as)

    def log(self):
        """The last lines the server wrote to its stderr (for a failure message)."""
        try:
            with open(os.path.join(self.dir, "server.log"), errors="replace") as log:
                return log.read()[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class MariaDB(_Server):
    """``mariadbd`` on 127.0.0.1:``port``: user ``root``, no password (grant
    tables skipped), InnoDB without flushing at commit."""

    unprivileged = True

    def _start(self):
        server = _binary("mariadbd", "mysqld", "/usr/sbin/mariadbd", "/usr/sbin/mysqld")
        install = _binary("mariadb-install-db", "mysql_install_db")
        data = os.path.join(self.dir, "data")
        self._run(install, "--no-defaults", f"--datadir={data}", "--skip-test-db",
                  "--auth-root-authentication-method=normal", "--skip-name-resolve")
        self._spawn(server, "--no-defaults", f"--datadir={data}", "--bind-address=127.0.0.1",
                    f"--port={self.port}", f"--socket={self.dir}/mysqld.sock",
                    f"--pid-file={self.dir}/mysqld.pid", "--skip-grant-tables",
                    "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=16M",
                    "--innodb-flush-log-at-trx-commit=0", "--max-connections=64")
        _wait_until(lambda: _greets(self.port, b"MariaDB"), f"mariadbd on {self.port}",
                    self.proc)


class PostgreSQL(_Server):
    """``postgres`` on 127.0.0.1:``port`` (no Unix socket): user ``postgres``,
    trust authentication, fsync off."""

    unprivileged = True

    def _start(self):
        bindir = os.path.dirname(_binary("/usr/lib/postgresql/*/bin/postgres", "postgres"))
        data = os.path.join(self.dir, "data")
        self._run(os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres",
                  "--auth=trust", "--no-sync", "-E", "UTF8")
        self._spawn(os.path.join(bindir, "postgres"), "-D", data, "-h", "127.0.0.1",
                    "-p", str(self.port), "-k", "", "-c", "fsync=off",
                    "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    "-c", "shared_buffers=16MB", "-c", "max_connections=64")
        isready = [os.path.join(bindir, "pg_isready"), "-q", "-h", "127.0.0.1",
                   "-p", str(self.port)]
        _wait_until(lambda: subprocess.run(isready, timeout=PATIENCE).returncode == 0,
                    f"postgres on {self.port}", self.proc)

    @property
    def conninfo(self):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=10"


class Sshd(_Server):
    """OpenSSH's ``sshd`` on 127.0.0.1:``port`` from a configuration of its own:
    a host key made for it, public-key login only, for the user running the
    tests (``user``) with the key ``client_key``; ``known_hosts`` trusts its
    host key.

    sshd wants its absolute path; run by root it also wants its privilege
    separation directory /run/sshd, which is made (as the package's service
    would) when missing.
    """

    def _start(self):
        sshd = _binary("/usr/sbin/sshd")
        keygen = _binary("ssh-keygen")
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.client_key = os.path.join(self.dir, "client_key")
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        host_key = os.path.join(self.dir, "host_key")
        for key in (host_key, self.client_key):
            self._run(keygen, "-q", "-t", "ed25519", "-N", "", "-f", key)
        shutil.copy(self.client_key + ".pub", os.path.join(self.dir, "authorized_keys"))
        with open(host_key + ".pub") as public:
            kind, blob = public.read().split()[:2]
        with open(self.known_hosts, "w") as known:
            known.write(f"[127.0.0.1]:{self.port} {kind} {blob}\n")
        config = os.path.join(self.dir, "sshd_config")
        with open(config, "w") as out:
            out.write(f"ListenAddress 127.0.0.1:{self.port}\nHostKey {host_key}\n"
                      f"AuthorizedKeysFile {self.dir}/authorized_keys\nPidFile none\n"
                      "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                      "PermitRootLogin prohibit-password\nStrictModes no\n"
                      "MaxSessions 64\nMaxStartups 64\nLogLevel ERROR\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self._spawn(sshd, "-D", "-e", "-f", config)
        _wait_until(lambda: _greets(self.port, b"SSH-2.0"), f"sshd on {self.port}", self.proc)


# ---------------------------------------------------------------- SMTP and FTP


def serve_smtp():
    """Just enough SMTP for smtplib's ``sendmail``: every command is accepted,
    and the end of a mail's DATA is answered after SLOW seconds."""
    import socketserver

    class Session(socketserver.StreamRequestHandler):
        def reply(self, line):
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self):
            self.reply("220 localhost microthreads test SMTP")
            for raw in self.rfile:
                verb = raw[:4].upper()
                if verb == b"QUIT":
                    self.reply("221 bye")
                    return
                if verb == b"DATA":
                    self.reply("354 go ahead")
                    for line in self.rfile:
                        if line == b".\r\n":
                            break
                    time.sleep(SLOW)
                    self.reply("250 queued")
                elif verb == b"EHLO":
                    self.reply("250-localhost")
                    self.reply("250 8BITMIME")
                else:
                    self.reply("250 ok")

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        request_queue_size = 64         # every client of a test connects at once

    server = Server(("127.0.0.1", 0), Session)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def serve_ftp():
    """pyftpdlib, one thread per client, anonymous and read-only on a
    directory holding FTP_FILE; a RETR starts after SLOW seconds."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    root = tempfile.mkdtemp(prefix="microthreads-ftp-")
    with open(os.path.join(root, FTP_FILE), "wb") as out:
        out.write(FTP_DATA)

    class SlowRetr(FTPHandler):
        def ftp_RETR(self, file):
            time.sleep(SLOW)        # the server's own thread for this client
            return super().ftp_RETR(file)

    authorizer = DummyAuthorizer()
    authorizer.add_anonymous(root)
    SlowRetr.authorizer = authorizer
    SlowRetr.passive_ports = None
    server = ThreadedFTPServer(("127.0.0.1", 0), SlowRetr)
    print(server.address[1], flush=True)
    try:
        server.serve_forever(handle_exit=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Responder:
    """``python tests/server_helpers.py KIND`` as a child process: ``port``
    is what it printed; ``stop()`` kills it by PID."""

    def __init__(self, kind):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), kind],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise AssertionError(f"the {kind} server exited with {self.proc.returncode}")
        self.port = int(line)

    def stop(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stdout.close()


if __name__ == "__main__":
    {"smtp": serve_smtp, "ftp": serve_ftp}[sys.argv[1]]()
