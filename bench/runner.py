"""Starting, pinning, timing out and killing the benchmark's processes.

Every child is started here, pinned to one CPU, with RLIMIT_NOFILE raised to
its hard limit, in its own session (a Ctrl-C reaches only the harness) and
with a parent-death signal (if the harness dies, so does the child). Each is
remembered by PID until it has been reaped, so `Processes.kill_all()` (run on
every exit path) leaves nothing behind.
"""

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BUILD = BENCH / "build"
LOGS = BUILD / "logs"
PYTHON = sys.executable
HOST = "127.0.0.1"

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


class RunError(Exception):
    """One run failed; str(error) is the reason shown in the table."""


def _child_setup(cpu):
    def setup():
        if cpu is not None:  # None: not pinned, every CPU the harness may use
            os.sched_setaffinity(0, {cpu})
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return setup


def cpus():
    """(server CPU, client CPU): two different CPUs where there are two."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 2:
        return allowed[0], allowed[1]
    return allowed[0], allowed[0]


SERVER_CPU, CLIENT_CPU = cpus()


class Processes:
    def __init__(self):
        self.live = {}  # pid -> Popen

    def start(self, cmd, cpu, log_name, stdin=subprocess.DEVNULL, stdout=None):
        """Start cmd pinned to cpu (None: not pinned); stderr (and stdout
        unless PIPE) go to the log."""
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(LOGS / f"{log_name}.log", "wb")  # noqa: SIM115 (closed on reap)
        log.write(f"$ {' '.join(map(str, cmd))}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [str(part) for part in cmd], cwd=ROOT, stdin=stdin,
            stdout=log if stdout is None else stdout, stderr=log,
            preexec_fn=_child_setup(cpu), start_new_session=True,
        )
        proc.log = log
        proc.killed = False  # by us, on purpose
        proc.log_path = LOGS / f"{log_name}.log"
        self.live[proc.pid] = proc
        return proc

    def kill(self, proc):
        """SIGKILL by PID (if still running) and reap."""
        if proc.poll() is None:
            proc.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream:
                with contextlib.suppress(OSError):
                    stream.close()
        proc.log.close()
        self.live.pop(proc.pid, None)

    def kill_all(self):
        for proc in list(self.live.values()):
            self.kill(proc)

    def check(self, cmd, cpu, log_name, timeout):
        """Run cmd; None if it exits 0 within timeout, else the reason."""
        proc = self.start(cmd, cpu, log_name)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"{' '.join(map(str, cmd[1:]))} did not finish in {timeout:.0f} s"
        finally:
            self.kill(proc)
        return None if proc.returncode == 0 else failure_reason(proc)

    def run(self, cmd, cpu, log_name, timeout):
        """Run to completion; return its last JSON line. RunError on failure."""
        proc = self.start(cmd, cpu, log_name, stdout=subprocess.PIPE)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RunError(f"timed out after {timeout:.0f} s") from None
        finally:
            self.kill(proc)
        return parse_result(out, proc)


def parse_result(out, proc):
    lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith("{")]
    if not lines:
        raise RunError(failure_reason(proc))
    result = json.loads(lines[-1])
    if "error" in result:
        raise RunError(result["error"])
    if proc.returncode not in (0, None):
        raise RunError(failure_reason(proc))
    return result


def failure_reason(proc):
    """The exit status and the last meaningful line of the child's log."""
    status = proc.poll()
    what = f"exited with status {status}" if status is not None else "failed"
    try:
        lines = proc.log_path.read_text(errors="replace").strip().splitlines()[1:]
    except OSError:
        lines = []
    lines = [line.strip() for line in lines if line.strip()]
    return f"{what}: {lines[-1][:160]}" if lines else what


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_listening(proc, port, timeout=20.0):
    """Wait until the server accepts a connection on port; RunError if it
    exits first or does not listen within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RunError(failure_reason(proc))
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RunError(f"not listening on port {port} after {timeout:.0f} s")


def read_json_line(proc, timeout):
    """The next line from proc's stdout as JSON, waiting at most timeout s."""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RunError(f"timed out after {timeout:.0f} s")
        readable, _, _ = select.select([fd], [], [], min(left, 1.0))
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RunError(failure_reason(proc))
            data += chunk
    result = json.loads(data.split(b"\n", 1)[0])
    if "error" in result:
        raise RunError(result["error"])
    return result


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    raise RunError(f"cannot read the RSS of process {pid}")


def build(name):
    """bench/build/<name> from bench/<name>.c, compiled if missing or older."""
    source, binary = BENCH / f"{name}.c", BUILD / name
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    BUILD.mkdir(parents=True, exist_ok=True)
    cmd = ["cc", "-O2", "-Wall", "-o", str(binary), str(source)]
    print(f"building: {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        sys.exit(f"cannot build {binary}:\n{done.stderr}")
    return binary
