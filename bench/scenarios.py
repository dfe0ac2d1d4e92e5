"""The rows (who is measured), the settings, and the tables (what is
measured): each table names its figures and has one function that performs
a single run for a single row and returns that run's figures.
"""

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Tuple

from bench import runner
from bench.runner import CLIENT_CPU, PYTHON, SERVER_CPU, RunError


@dataclass(frozen=True)
class Row:
    key: str
    name: str
    version_of: str | None  # a key of machine.versions(), shown beside the name
    module: str | None  # the peer module, None for the C server
    extra: Tuple[str, ...] = ()  # peer arguments after the mode


GEVENT = Row("gevent", "gevent", "gevent", "bench.peers.gevent_peer")
EVENTLET = Row("eventlet", "eventlet", "eventlet", "bench.peers.eventlet_peer")
ASYNCIO = Row("asyncio", "asyncio", "python", "bench.peers.asyncio_peer")
UVLOOP = Row("uvloop", "asyncio+uvloop", "uvloop", "bench.peers.asyncio_peer", ("--uvloop",))
TRIO = Row("trio", "trio", "trio", "bench.peers.trio_peer")
SELECTORS = Row("selectors", "selectors floor", None, "bench.peers.selectors_peer")
SELECTORS_BATCHED = Row("selectors_batched", "selectors floor, batched", None,
                        "bench.peers.selectors_batched_peer")
C_LIMIT = Row("c", "C epoll limit", None, None)
MICROTHREADS = Row("microthreads", "microthreads", "microthreads",
                   "bench.peers.microthreads_peer")
GREENLET = Row("greenlet", "raw greenlet pair (ref)", "greenlet", "bench.peers.greenlet_ref")

# the cluster table (6): the chat service as one process, and as 2 workers
# sharing one room through a Redis that the harness starts for each run
CHAT_ONE = Row("microthreads", "python -m chat, 1 process", None, None)
CHAT_WORKERS = Row("workers2", "--workers 2 + redis-server", None, None)

# the WebSocket fan-out table (8): the chat service over WebSocket (the reference) and
# over telnet in the same run, and WebSocket broadcast servers on two peers
CHAT_WS = Row("microthreads", "python -m chat, WebSocket", None, None)
CHAT_TELNET = Row("chat_telnet", "python -m chat, telnet", None, None)
WEBSOCKETS = Row("websockets", "websockets (asyncio)", "websockets",
                 "bench.peers.websockets_peer")
GEVENT_WS = Row("gevent_ws", "gevent + gevent-websocket", "gevent-websocket",
                "bench.peers.gevent_ws_peer")
WS_ROWS = [CHAT_WS, CHAT_TELNET, WEBSOCKETS, GEVENT_WS]

# the HTTP tables (9): each row is a server command (http_server_cmd), all serving
# bench/peers/http_apps.py's hello and echo apps
PYWSGI = Row("pywsgi", "gevent.pywsgi", "gevent", None)
GUNICORN_GEVENT = Row("gunicorn_gevent", "gunicorn -k gevent, 1 worker", "gunicorn", None)
WAITRESS = Row("waitress", "waitress", "waitress", None)
UVICORN = Row("uvicorn", "uvicorn httptools+uvloop (ASGI)", "uvicorn", None)
GRANIAN = Row("granian", "granian WSGI, 1 worker (Rust)", "granian", None)
GUNICORN_MT = Row("gunicorn_mt", "gunicorn -k microthreads, 1 worker", "gunicorn", None)
HTTP_MT = Row("microthreads", "microthreads.wsgi", "microthreads", None)
HTTP_ROWS = [PYWSGI, GUNICORN_GEVENT, WAITRESS, UVICORN, GRANIAN, GUNICORN_MT, HTTP_MT]

SERVER_ROWS = [GEVENT, EVENTLET, ASYNCIO, UVLOOP, TRIO, SELECTORS, C_LIMIT, MICROTHREADS]
TASK_ROWS = [GEVENT, EVENTLET, ASYNCIO, UVLOOP, TRIO, SELECTORS, MICROTHREADS]
# chat rooms: the floor also as a careful callback server batches (echo has nothing to batch)
CHAT_ROWS = [*SERVER_ROWS[:SERVER_ROWS.index(SELECTORS) + 1], SELECTORS_BATCHED,
             *SERVER_ROWS[SERVER_ROWS.index(SELECTORS) + 1:]]
# the crowds (2,000 and 10,000 members): the rows that batch join lines per loop turn (the
# others send each join line to each member at once, M(M+1)/2 sends: see bench/README.md),
# and at 2,000 the plain floor
CROWD_ROWS = [SELECTORS, SELECTORS_BATCHED, C_LIMIT, MICROTHREADS]
BIG_CROWD_ROWS = [SELECTORS_BATCHED, C_LIMIT, MICROTHREADS]


@dataclass
class Settings:
    runs: int = 3
    switch_target: float = 0.5  # seconds per sleep(0) figure
    spawn_count: int = 100_000
    idle_task_count: int = 10_000
    echo_conns: int = 100
    line_size: int = 64
    echo_warmup: float = 1.0
    echo_duration: float = 3.0
    chat_configs: Tuple[Tuple[int, int], ...] = ((100, 10), (1000, 5))  # (members, senders)
    chat_window: int = 8
    chat_warmup: float = 1.0
    chat_duration: float = 3.0
    chat_drain: float = 5.0
    idle_members: int = 1000  # the login storm grows as M squared: see README
    crowd: int = 2000  # members in the crowd table
    big_crowd: int = 10000  # members in the big crowd table (only when asked for)
    probe_ms: float = 50.0  # idle and crowd: a probe member's line every this often
    fanout_lines: int = 5  # idle and crowd: lines member 0 says once everyone is in
    http_conns: int = 100
    http_warmup: float = 1.0
    http_duration: float = 3.0
    quick: bool = False


DEFAULT = Settings()
QUICK = replace(DEFAULT, runs=1, switch_target=0.1, echo_warmup=0.5, echo_duration=1.0,
                chat_warmup=0.5, chat_duration=1.0, chat_drain=3.0, idle_members=500,
                http_warmup=0.5, http_duration=1.0, quick=True)


@dataclass
class Context:
    procs: runner.Processes
    loadgen: str
    cserver: str
    unavailable: Dict[str, str] = field(default_factory=dict)  # what -> reason


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    better: str  # "higher", "lower", "zero" (must be 0), or "info" (no ratio)
    digits: int = 0  # decimals shown; -1: three significant digits; -2: a percentage


@dataclass
class Table:
    key: str
    scenario: str  # what --only selects
    title: str
    figures: List[Figure]
    rows: List[Row]
    run: Callable[[Row, Settings, Context], dict]
    needs: str = "microthreads"  # what the microthreads row needs to import
    note: str = ""
    default: bool = True  # False: run only when --only names it


# ---- one run of each kind ----

def peer_cmd(row, mode, *args):
    return [PYTHON, "-m", row.module, mode, *map(str, args), *row.extra]


def run_switch(row, settings, ctx):
    if row is GREENLET:
        cmd = [PYTHON, "-m", row.module, "switch", "--target", settings.switch_target]
    else:
        cmd = peer_cmd(row, "switch", "--target", settings.switch_target)
    result = ctx.procs.run(cmd, SERVER_CPU, f"switch-{row.key}",
                           timeout=60 + 40 * settings.switch_target)
    if row is GREENLET:
        return {"sleep0_2_ns": result["switch_pair_ns"], "raw": result}
    return {"sleep0_2_ns": result["sleep0_2_ns"], "sleep0_1000_ns": result["sleep0_1000_ns"]}


def run_spawn(row, settings, ctx):
    spawned = ctx.procs.run(peer_cmd(row, "spawn", "--count", settings.spawn_count),
                            SERVER_CPU, f"spawn-{row.key}", timeout=90)
    idle = ctx.procs.run(peer_cmd(row, "idletasks", "--count", settings.idle_task_count),
                         SERVER_CPU, f"idletasks-{row.key}", timeout=90)
    return {"spawn_join_s": spawned["spawn_join_s"], "idle_task_kib": idle["idle_task_kib"]}


def chat_flags():
    """`python -m chat`'s flags in the telnet rows (all but the port): no limits,
    and its web page on a free port, as served by default but never the fixed 8080,
    which a `make run` or another chat on this machine may hold (the chat then
    exits: address in use)."""
    return ["--host", runner.HOST, "--rate", "0", "--join-rate", "0",
            "--max-clients", "20000", "--web-port", runner.free_port()]


def server_cmd(row, mode, port, ctx):
    if row is C_LIMIT:
        return [ctx.cserver, mode, "--port", port]
    if row is MICROTHREADS and mode == "chat":  # the real chat service
        return [PYTHON, "-m", "chat", *chat_flags(), "--port", port]
    return peer_cmd(row, mode, "--port", port)


@contextlib.contextmanager
def server(row, mode, ctx, log_name):
    """A server for one run: started on the server CPU, killed at the end;
    RunError if it died by itself before that."""
    port = runner.free_port()
    proc = ctx.procs.start(server_cmd(row, mode, port, ctx), SERVER_CPU, log_name)
    try:
        runner.wait_listening(proc, port)
        yield proc, port
        if proc.poll() is not None and not proc.killed:
            raise RunError(f"the server died: {runner.failure_reason(proc)}")
    finally:
        ctx.procs.kill(proc)


def login_seconds(members, per_line=40e-6):
    """A generous bound for logging members in: each join is broadcast to
    every member, M(M+1)/2 lines in all; allow `per_line` seconds a line."""
    return 30 + members * (members + 1) / 2 * per_line


def run_echo(row, settings, ctx):
    with server(row, "echo", ctx, f"echo-server-{row.key}") as (proc, port):
        limit = settings.echo_warmup + settings.echo_duration + 20
        result = ctx.procs.run(
            [ctx.loadgen, "echo", "--port", port, "--server-pid", proc.pid,
             "--conns", settings.echo_conns,
             "--size", settings.line_size, "--warmup", settings.echo_warmup,
             "--duration", settings.echo_duration, "--timeout", limit],
            CLIENT_CPU, f"echo-loadgen-{row.key}", timeout=limit + 10)
    if result["errors"] or result["disconnected"]:
        raise RunError(f"{result['errors']} wrong echoes, "
                       f"{result['disconnected']} connections closed")
    figures = {"req_s": result["req_s"], "p50_ms": result["p50_us"] / 1000,
               "p99_ms": result["p99_us"] / 1000, "server_cpu": result["server_cpu"],
               "raw": result}
    if result["server_cpu"] > 0:  # -1: not measured
        figures["req_cpu_s"] = result["req_s"] / result["server_cpu"]
    return figures


def chat_runner(members, senders):
    def run_chat(row, settings, ctx):
        with server(row, "chat", ctx, f"chat{members}-server-{row.key}") as (proc, port):
            limit = (login_seconds(members) + settings.chat_warmup + settings.chat_duration
                     + settings.chat_drain + 10)
            result = ctx.procs.run(
                [ctx.loadgen, "chat", "--port", port, "--server-pid", proc.pid,
                 "--members", members,
                 "--senders", senders, "--window", settings.chat_window,
                 "--warmup", settings.chat_warmup, "--duration", settings.chat_duration,
                 "--drain", settings.chat_drain, "--timeout", limit],
                CLIENT_CPU, f"chat{members}-loadgen-{row.key}", timeout=limit + 10)
        return {"lines_s": result["lines_s"], "p50_ms": result["p50_us"] / 1000,
                "p99_ms": result["p99_us"] / 1000, "lost": result["lost"],
                "misordered": result["misordered"], "server_cpu": result["server_cpu"],
                "login_s": result["login_s"], "raw": result}

    return run_chat


def run_chat_ws(row, settings, ctx):
    """chat100's load over WebSocket (the load generator's --ws: one masked text
    frame per line, as a browser sends) against `python -m chat --web-port` and
    the peers' WebSocket chats; the telnet row is the same load on the same
    `python -m chat`'s telnet port. Pinned as the chat table is."""
    members, senders = 100, 10
    port = runner.free_port()
    if row in (CHAT_WS, CHAT_TELNET):
        web_port = runner.free_port()
        cmd = [PYTHON, "-m", "chat", "--host", runner.HOST, "--port", port, "--web-port",
               web_port, "--rate", "0", "--join-rate", "0", "--max-clients", "20000"]
        target = ["--ws", "/ws", "--port", web_port] if row is CHAT_WS else ["--port", port]
        listening = web_port if row is CHAT_WS else port
    else:
        cmd = peer_cmd(row, "chat", "--port", port)
        target, listening = ["--ws", "/ws", "--port", port], port
    proc = ctx.procs.start(cmd, SERVER_CPU, f"chatws-server-{row.key}")
    try:
        runner.wait_listening(proc, listening)
        limit = (login_seconds(members) + settings.chat_warmup + settings.chat_duration
                 + settings.chat_drain + 10)
        result = ctx.procs.run(
            [ctx.loadgen, "chat", *target, "--server-pid", proc.pid, "--members", members,
             "--senders", senders, "--window", settings.chat_window,
             "--warmup", settings.chat_warmup, "--duration", settings.chat_duration,
             "--drain", settings.chat_drain, "--timeout", limit],
            CLIENT_CPU, f"chatws-loadgen-{row.key}", timeout=limit + 10)
        if proc.poll() is not None and not proc.killed:
            raise RunError(f"the server died: {runner.failure_reason(proc)}")
    finally:
        ctx.procs.kill(proc)
    return {"lines_s": result["lines_s"], "p50_ms": result["p50_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000, "lost": result["lost"],
            "misordered": result["misordered"], "server_cpu": result["server_cpu"],
            "raw": result}


def redis_missing():
    """Why the --workers row cannot run here, or None."""
    if not shutil.which("redis-server"):
        return "redis-server not found on PATH"
    if importlib.util.find_spec("redis") is None:
        return "redis-py not installed: pip install -e '.[redis]'"
    return None


def wait_for_log(proc, text, count, timeout=20.0):
    """Wait until text appears count times in proc's log; RunError if proc
    exits first or it does not within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RunError(runner.failure_reason(proc))
        if proc.log_path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.05)
    raise RunError(f"{text!r} not logged {count} times after {timeout:.0f} s")


@contextlib.contextmanager
def redis_server(ctx, log_name):
    """A throwaway redis-server on a free loopback port, no persistence,
    not pinned; killed by its PID at the end. Yields its URL and PID."""
    port = runner.free_port()
    proc = ctx.procs.start(
        ["redis-server", "--port", port, "--bind", runner.HOST, "--save", "",
         "--appendonly", "no", "--protected-mode", "yes", "--dir", runner.LOGS],
        None, log_name)
    try:
        runner.wait_listening(proc, port)
        yield f"redis://{runner.HOST}:{port}/0", proc.pid
        if proc.poll() is not None and not proc.killed:
            raise RunError(f"redis-server died: {runner.failure_reason(proc)}")
    finally:
        ctx.procs.kill(proc)


def stop_gracefully(ctx, proc, timeout=8.0):
    """SIGTERM (a supervisor then stops its workers, 5 s at most), wait,
    then kill by PID whatever is left."""
    if proc.poll() is None:
        proc.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    ctx.procs.kill(proc)


def cpu_seconds(pids):
    """User + system CPU seconds used so far by the processes ``pids``
    (those gone are left out)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def children(pid):
    """The PIDs whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def run_cluster(row, settings, ctx):
    """chat100's load against one `python -m chat` or against `--workers 2
    --redis`: nothing pinned (2 workers + Redis + the load generator cannot
    each have a core of 2), the same for both rows. CPU per delivered line:
    the CPU time of the server processes (the workers and Redis; the
    supervisor too, which idles) over the load generator's whole run,
    divided by every says-line it received in that run (warm-up and drain
    included, so both figures cover the same span); and Redis's alone per
    line said (what one room costs its master)."""
    members, senders = 100, 10
    port = runner.free_port()
    with contextlib.ExitStack() as stack:
        cmd = [PYTHON, "-m", "chat", *chat_flags(), "--port", port]
        pids = []
        if row is CHAT_WORKERS:
            missing = redis_missing()
            if missing:
                raise RunError(missing)
            url, redis_pid = stack.enter_context(redis_server(ctx, "cluster-redis"))
            pids.append(redis_pid)
            cmd += ["--workers", "2", "--redis", url]
        proc = ctx.procs.start(cmd, None, f"cluster-server-{row.key}")
        stack.callback(stop_gracefully, ctx, proc)  # before Redis: workers deregister
        # both workers listening, so SO_REUSEPORT spreads members over both
        wait_for_log(proc, "chat listening on", 2 if row is CHAT_WORKERS else 1)
        runner.wait_listening(proc, port)
        pids += [proc.pid, *children(proc.pid)]
        limit = (login_seconds(members) + settings.chat_warmup + settings.chat_duration
                 + settings.chat_drain + 10)
        redis_pids = pids[:1] if row is CHAT_WORKERS else []
        cpu_before, redis_before = cpu_seconds(pids), cpu_seconds(redis_pids)
        result = ctx.procs.run(
            [ctx.loadgen, "chat", "--port", port, "--members", members,
             "--senders", senders, "--window", settings.chat_window,
             "--warmup", settings.chat_warmup, "--duration", settings.chat_duration,
             "--drain", settings.chat_drain, "--timeout", limit],
            None, f"cluster-loadgen-{row.key}", timeout=limit + 10)
        cpu = cpu_seconds(pids) - cpu_before
        redis_cpu = cpu_seconds(redis_pids) - redis_before
        if proc.poll() is not None and not proc.killed:
            raise RunError(f"the server died: {runner.failure_reason(proc)}")
    return {"lines_s": result["lines_s"], "p50_ms": result["p50_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000, "lost": result["lost"],
            "misordered": result["misordered"],
            "cpu_us_line": cpu / max(result["received"], 1) * 1e6,
            "redis_us_sent": redis_cpu / max(result["sent"], 1) * 1e6, "raw": result}


def run_bridge(row, settings, ctx):
    """microthreads.aio against asyncio doing the same in coroutines only."""
    side = {ASYNCIO.key: "asyncio", UVLOOP.key: "uvloop", MICROTHREADS.key: "microthreads"}
    result = ctx.procs.run(
        [PYTHON, "-m", "bench.peers.aio_bridge", side[row.key], "--target",
         settings.switch_target], SERVER_CPU, f"bridge-{row.key}",
        timeout=60 + 40 * settings.switch_target)
    return {"await_done_ns": result["await_done_ns"], "pingpong_ns": result["pingpong_ns"]}


def idle_runner(members, per_line=40e-6):
    """Log `members` in and hold them idle: login time (with a probe member's
    round trips during it), one member's lines fanned out to all, then RSS."""
    def run_idle(row, settings, ctx):
        with server(row, "chat", ctx, f"idle{members}-server-{row.key}") as (proc, port):
            time.sleep(0.5)
            before = runner.rss_kib(proc.pid)
            limit = login_seconds(members, per_line)
            ready_limit = limit + 10 * settings.fanout_lines + 10
            gen = ctx.procs.start(
                [ctx.loadgen, "idle", "--port", port, "--members", members,
                 "--probe-ms", settings.probe_ms, "--fanout", settings.fanout_lines,
                 "--hold", ready_limit + 60, "--timeout", ready_limit + 120],
                CLIENT_CPU, f"idle{members}-loadgen-{row.key}", stdin=subprocess.PIPE,
                stdout=subprocess.PIPE)
            try:
                ready = runner.read_json_line(gen, ready_limit)
                time.sleep(1.5)  # let the server settle with every member idle
                if proc.poll() is not None:
                    raise RunError(f"the server died: {runner.failure_reason(proc)}")
                after = runner.rss_kib(proc.pid)
            finally:
                ctx.procs.kill(proc)  # the server first: no storm of leave lines
                ctx.procs.kill(gen)
        if ready["fanout_missing"] or ready["disconnected"]:
            raise RunError(f"{ready['fanout_missing']} fan-out lines missing, "
                           f"{ready['disconnected']} members disconnected")
        return {"kib_per_member": (after - before) / members, "rss_before_kib": before,
                "rss_after_kib": after, "login_s": ready["login_s"],
                "probe_p99_ms": ready["probe_p99_us"] / 1000,
                "fanout_p99_ms": ready["fanout_p99_us"] / 1000,
                "fanout_all_ms": ready["fanout_all_us"] / 1000, "raw": ready}

    return run_idle


def http_server_cmd(row, port):
    """The command that serves bench.peers.http_apps on 127.0.0.1:port as ``row``."""
    bind = f"{runner.HOST}:{port}"
    wsgi = "bench.peers.http_apps:wsgi_app"
    gunicorn = [PYTHON, "-m", "gunicorn", "-w", "1", "-b", bind, "--log-level", "warning",
                "--backlog", "2048", "--worker-connections", "10000"]
    if gunicorn_has_control_socket():
        gunicorn.append("--no-control-socket")
    return {
        HTTP_MT.key: [PYTHON, "-m", "microthreads.wsgi", wsgi, "--bind", bind,
                      "--log-level", "warning", "--backlog", "2048"],
        GUNICORN_MT.key: [*gunicorn, "-k", "microthreads.gunicorn.Worker", wsgi],
        PYWSGI.key: [PYTHON, "-m", "bench.peers.http_apps", "gevent", "--port", port],
        GUNICORN_GEVENT.key: [*gunicorn, "-k", "gevent", wsgi],
        WAITRESS.key: [PYTHON, "-m", "waitress", f"--listen={bind}", wsgi],
        UVICORN.key: [PYTHON, "-m", "uvicorn", "bench.peers.http_apps:asgi_app", "--host",
                      runner.HOST, "--port", port, "--loop", "uvloop", "--http", "httptools",
                      "--no-access-log", "--log-level", "warning", "--lifespan", "off"],
        GRANIAN.key: [PYTHON, "-m", "granian", "--interface", "wsgi", "--host", runner.HOST,
                      "--port", port, "--workers", "1", "--no-access-log",
                      "--log-level", "warning", wsgi],
    }[row.key]


def gunicorn_has_control_socket():
    """gunicorn 25+ opens a control socket in ~/.gunicorn unless told not to."""
    try:
        from importlib import metadata
        return int(metadata.version("gunicorn").split(".")[0]) >= 25
    except (ImportError, ValueError, metadata.PackageNotFoundError):
        return False


WRK_POST = """wrk.method = "POST"
wrk.body = string.rep("x", {size})
wrk.headers["Content-Type"] = "application/octet-stream"
"""


def parse_wrk(text):
    """req/s, p99 (ms) and error counts from ``wrk --latency`` output."""
    def number(pattern, default=None):
        match = re.search(pattern, text)
        if match is None:
            if default is None:
                raise RunError(f"wrk printed no {pattern!r}: {text[-300:]!r}")
            return default
        return match.groups()

    (req_s,) = number(r"Requests/sec:\s+([\d.]+)")
    value, unit = number(r"\n\s+99%\s+([\d.]+)(us|ms|s)\b")
    p99_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = sum(map(int, number(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                                 r"timeout (\d+)", ("0", "0", "0", "0"))))
    (non_2xx,) = number(r"Non-2xx or 3xx responses: (\d+)", ("0",))
    return float(req_s), p99_ms, errors, int(non_2xx)


def http_runner(method, body_size=0):
    """One run: the row's server on the server CPU, wrk on the client CPU:
    ``http_warmup`` seconds, then ``http_duration`` measured (and the server's
    CPU time over those, children included: gunicorn's worker, granian's)."""
    def run_http(row, settings, ctx):
        wrk = shutil.which("wrk")
        if wrk is None:
            raise RunError("wrk not found on PATH (make system-deps)")
        port = runner.free_port()
        proc = ctx.procs.start(http_server_cmd(row, port), SERVER_CPU,
                               f"http-{method.lower()}-server-{row.key}")
        try:
            runner.wait_listening(proc, port)
            time.sleep(0.3)                     # gunicorn's worker boots after the bind
            script = []
            if method == "POST":
                path = runner.LOGS / f"wrk-post-{body_size}.lua"
                path.write_text(WRK_POST.format(size=body_size))
                script = ["-s", path]
            url = f"http://{runner.HOST}:{port}/"
            common = [wrk, "-t1", f"-c{settings.http_conns}", "--latency", *script]
            ctx.procs.check([*common, f"-d{max(settings.http_warmup, 0.5):g}s", url],
                            CLIENT_CPU, f"http-{method.lower()}-warmup-{row.key}",
                            timeout=settings.http_warmup + 30)
            pids = [proc.pid, *children(proc.pid)]
            cpu_before = cpu_seconds(pids)
            out = ctx.procs.start([*common, f"-d{settings.http_duration:g}s", url],
                                  CLIENT_CPU, f"http-{method.lower()}-wrk-{row.key}",
                                  stdout=subprocess.PIPE)
            try:
                text, _ = out.communicate(timeout=settings.http_duration + 30)
            finally:
                ctx.procs.kill(out)
            cpu = cpu_seconds(pids) - cpu_before
            if proc.poll() is not None and not proc.killed:
                raise RunError(f"the server died: {runner.failure_reason(proc)}")
        finally:
            kill_group(ctx, proc)
        req_s, p99_ms, errors, non_2xx = parse_wrk(text.decode(errors="replace"))
        if non_2xx:
            raise RunError(f"{non_2xx} answers were not 2xx")
        figures = {"req_s": req_s, "p99_ms": p99_ms, "errors": errors,
                   "server_cpu": cpu / settings.http_duration}
        if cpu > 0:
            figures["req_cpu_s"] = req_s * settings.http_duration / cpu
        return figures

    return run_http


def kill_group(ctx, proc):
    """SIGKILL the process group of ``proc`` (its own session: gunicorn's and
    granian's workers with it), then reap ``proc``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    ctx.procs.kill(proc)


# ---- the tables ----

#: The figures of every table under chat100's kind of load (chat, cluster, chatws).
FANOUT_FIGURES = [Figure("lines_s", "lines/s", "higher"),
                  Figure("p50_ms", "p50 ms", "lower", -1),
                  Figure("p99_ms", "p99 ms", "lower", -1),
                  Figure("lost", "lost", "zero"),
                  Figure("misordered", "misordered", "zero")]

def tables(settings):
    s = settings
    found = [
        Table("switch", "switch",
              "1. switch cost: ns per sleep(0) round trip (a task yields and is resumed)",
              [Figure("sleep0_2_ns", "2 tasks, ns", "lower"),
               Figure("sleep0_1000_ns", "1,000 tasks, ns", "lower")],
              [*TASK_ROWS, GREENLET], run_switch,
              note="raw greenlet pair: one switch there and back, no hub; selectors "
                   "floor: a callback re-posting itself on a selectors loop"),
        Table("spawn", "spawn",
              f"2. spawn+join {s.spawn_count:,} tasks; memory per idle task "
              f"({s.idle_task_count:,} blocked on one event)",
              [Figure("spawn_join_s", "spawn+join, s", "lower", -1),
               Figure("idle_task_kib", "KiB/idle task", "lower", 2)],
              TASK_ROWS, run_spawn,
              note="selectors floor: callbacks, no stacks"),
        Table("echo", "echo",
              f"3. echo: {s.echo_conns} connections, {s.line_size}-byte lines, "
              f"request/response, {s.echo_duration:g} s",
              [Figure("req_s", "req/s", "higher"),
               Figure("p50_ms", "p50 ms", "lower", -1),
               Figure("p99_ms", "p99 ms", "lower", -1),
               Figure("server_cpu", "srv CPU", "info", -2),
               Figure("req_cpu_s", "req/CPU s", "higher")],
              SERVER_ROWS, run_echo,
              note="srv CPU: the share of its CPU the server used while measured "
                   "(100% = saturated; much less: it was starved or waited on the client); "
                   "req/CPU s: requests per second of the server's CPU time, steadier than "
                   "req/s when other work shares the CPU"),
    ]
    for members, senders in s.chat_configs:
        found.append(Table(
            f"chat{members}", "chat",
            f"4. chat fan-out: {members:,} members, {senders} senders (window "
            f"{s.chat_window}), {s.chat_duration:g} s",
            [*FANOUT_FIGURES,
             Figure("server_cpu", "srv CPU", "info", -2),
             Figure("login_s", "login s", "lower", -1)],
            CHAT_ROWS, chat_runner(members, senders), needs="chat",
            note="lines/s: says-lines received by all members together; lost and "
                 "misordered must be 0; microthreads runs `python -m chat`; login s: "
                 "every member logged in and every join line arrived"))
    idle_figures = [
        Figure("kib_per_member", "KiB/member", "lower", 2),
        Figure("login_s", "login s", "lower", -1),
        Figure("probe_p99_ms", "probe p99 ms", "lower", -1),
        Figure("fanout_p99_ms", "1-to-all p99 ms", "lower", -1),
        Figure("fanout_all_ms", "all had it ms", "lower", -1)]
    idle_note = ("login s: connecting and logging everyone in (100 at a time), M(M+1)/2 "
                 f"join lines; probe: member 0 says a line every {s.probe_ms:g} ms during "
                 "the logins, p99 of its round trip to itself; 1-to-all: member 0 then says "
                 f"{s.fanout_lines} lines one at a time, p99 over every member's receipt, "
                 "and the median time until the last member had a line; KiB/member: "
                 "server RSS after, minus before, over M")
    found.append(Table(
        "idle", "idle",
        f"5. idle members: {s.idle_members:,} members log in, one line to all, server RSS "
        "per member",
        idle_figures, CHAT_ROWS, idle_runner(s.idle_members), needs="chat", note=idle_note))
    crowd_note = ("; rows: those that batch join lines per loop turn (the others send "
                  "each join line to each member at once and take minutes: see the idle "
                  "table for them)")
    found.append(Table(
        f"crowd{s.crowd}", "crowd",
        f"5b. a crowd: {s.crowd:,} members log in, one line to all, server RSS per member",
        idle_figures, CROWD_ROWS, idle_runner(s.crowd, per_line=5e-6), needs="chat",
        note=idle_note + crowd_note + ", and the plain floor"))
    found.append(Table(
        f"crowd{s.big_crowd}", "crowd",
        f"5c. a big crowd: {s.big_crowd:,} members log in, one line to all, server RSS per "
        "member (make bench-crowd: minutes per run)",
        idle_figures, BIG_CROWD_ROWS, idle_runner(s.big_crowd, per_line=8e-6), needs="chat",
        note=idle_note + crowd_note, default=False))
    found.append(Table(
        "cluster", "cluster",
        f"6. chat scale-out: chat100's load (100 members, 10 senders, window "
        f"{s.chat_window}, {s.chat_duration:g} s), one process against 2 workers + Redis",
        [*FANOUT_FIGURES,
         Figure("cpu_us_line", "CPU us/line", "lower", 2),
         Figure("redis_us_sent", "Redis us/said", "info", 1)],
        [CHAT_ONE, CHAT_WORKERS], run_cluster, needs="chat",
        note="vs mt = divided by the 1-process row. Not pinned: the load generator, "
             "Redis and the chat process(es) all share the machine's CPUs (2 workers + "
             "Redis + the load generator cannot each have a core of 2), in both rows; "
             "redis-server --save '' --appendonly no, started and killed for each run; "
             "CPU us/line: CPU time of the chat process(es) and Redis per says-line "
             "delivered, over the load generator's whole run; Redis us/said: Redis's "
             "CPU time per line said (appended once, read back by both workers)"))
    found.append(Table(
        "bridge", "bridge",
        "7. tasklets and asyncio on one loop (microthreads.aio): ns per operation",
        [Figure("await_done_ns", "await a done future, ns", "lower"),
         Figure("pingpong_ns", "ping-pong round trip, ns", "lower")],
        [ASYNCIO, UVLOOP, MICROTHREADS], run_bridge,
        note="asyncio rows: coroutines only (a task awaiting a done future; two tasks "
             "handing a token through futures); microthreads: a tasklet through "
             "aio.await_ on asyncio's selector loop, the other side a coroutine"))
    found.append(Table(
        "chatws", "websocket",
        f"8. WebSocket fan-out: chat100's load (100 members, 10 senders, window "
        f"{s.chat_window}, {s.chat_duration:g} s) over WebSocket, one text message a line",
        [*FANOUT_FIGURES, Figure("server_cpu", "srv CPU", "info", -2)],
        WS_ROWS, run_chat_ws, needs="chat",
        note="vs mt = divided by the WebSocket row (python -m chat --web-port, /ws); the "
             "telnet row is the same server and load on its telnet port, in the same run; "
             "the load generator sends each line as a masked text frame and offers no "
             "compression; the peers broadcast each line to every member's socket"))
    http_figures = [Figure("req_s", "req/s", "higher"),
                    Figure("p99_ms", "p99 ms", "lower", -1),
                    Figure("errors", "socket errors", "zero"),
                    Figure("server_cpu", "srv CPU", "info", -2),
                    Figure("req_cpu_s", "req/CPU s", "higher")]
    http_note = ("wrk -t1 on the client CPU, every server on the server CPU (gunicorn's "
                 "arbiter and worker, granian's processes and threads all on it); srv CPU "
                 "and req/CPU s count the server's child processes too; uvicorn serves the "
                 "same answers as an ASGI app; granian is the native limit")
    found.append(Table(
        "http_hello", "http",
        f"9. HTTP hello world: GET on {s.http_conns} keep-alive connections, "
        f"{s.http_duration:g} s (wrk)",
        http_figures, HTTP_ROWS, http_runner("GET"), note=http_note))
    found.append(Table(
        "http_post", "http",
        f"9b. HTTP echo: a 1 KiB POST body read and sent back, {s.http_conns} keep-alive "
        f"connections, {s.http_duration:g} s (wrk)",
        http_figures, HTTP_ROWS, http_runner("POST", 1024), note=http_note))
    return found


SCENARIOS = ["switch", "spawn", "echo", "chat", "idle", "crowd", "cluster", "bridge",
             "websocket", "http"]

# (table, figure, label) bar groups in the plot
PLOTTED = [
    ("switch", "sleep0_2_ns", "sleep(0)\n2 tasks"),
    ("switch", "sleep0_1000_ns", "sleep(0)\n1,000 tasks"),
    ("spawn", "spawn_join_s", "spawn+join"),
    ("spawn", "idle_task_kib", "KiB per\nidle task"),
    ("echo", "req_s", "echo\nreq/s"),
    ("echo", "p99_ms", "echo\np99"),
    ("chat100", "lines_s", "chat 100\nlines/s"),
    ("chat100", "p99_ms", "chat 100\np99"),
    ("chat1000", "lines_s", "chat 1,000\nlines/s"),
    ("chat1000", "p99_ms", "chat 1,000\np99"),
    ("idle", "kib_per_member", "KiB per\nidle member"),
    ("idle", "login_s", "1,000 log in"),
    ("crowd2000", "login_s", "2,000 log in"),
    ("crowd2000", "probe_p99_ms", "probe p99\n2,000 log in"),
]
