"""python -m chat: the chat server (``make run``, ``microthreads-chat``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

import microthreads

from .federation import url as redis_url
from .server import ChatServer, Options

log = logging.getLogger("chat")


def _within(convert, low, high=None, *, above=False):
    """An argparse type: ``convert(text)``, at least ``low`` (more than ``low``
    if ``above``) and at most ``high``; a value out of range is a usage error,
    not a traceback at each connection."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        too_low = value <= low if above else value < low
        if value != value or too_low or (high is not None and value > high):
            bounds = f"more than {low:g}" if above else f"at least {low:g}"
            if high is not None:
                bounds = f"{low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range ({bounds})")
        return value
    return parse


def program_name(argv0=None):
    """The command as the user typed it, for usage lines and errors:
    ``microthreads-chat`` from the installed script, ``python -m chat`` from
    ``-m`` (where ``sys.argv[0]`` is the path of ``chat/__main__.py``)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    name = os.path.basename(argv0)
    if name in ("__main__.py", "-m", "-c", ""):
        return f"python -m {__package__ or 'chat'}"
    return name


def build_parser():
    """The command line's parser; the supervisor derives its workers' flags
    from it (``supervisor.worker_argv``), so each new flag reaches them."""
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description="A telnet chat server on microthreads. Connect with"
                    " `telnet 127.0.0.1 1980` or `nc 127.0.0.1 1980`.")
    parser.add_argument("--host", default=defaults.host,
                        help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=_within(int, 0, 65535), default=defaults.port,
                        help="TCP port (default %(default)s; 0 picks a free one)")
    parser.add_argument("--web-port", type=_within(int, 0, 65535), default=8080,
                        help="HTTP port of the chat page and its WebSocket /ws, on --host"
                             " (https and wss with --tls-cert); 0 is off (default %(default)s)")
    parser.add_argument("--max-clients", type=_within(int, 1), default=defaults.max_clients,
                        help="connections held at once, logged in or at the prompt"
                             " (default %(default)s)")
    parser.add_argument("--rate", type=_within(float, 0), default=defaults.rate,
                        help="lines per second per member, burst twice that; 0 is off"
                             " (default %(default)g)")
    parser.add_argument("--join-rate", type=_within(float, 0), default=defaults.join_rate,
                        help="logins per second per address, burst 10; 0 is off"
                             " (default %(default)g)")
    parser.add_argument("--keepalive", type=_within(int, 1), default=defaults.keepalive,
                        metavar="SECONDS",
                        help="idle seconds before TCP keepalive probes a silent peer (5 s"
                             " apart, 3 of them) (default %(default)s)")
    parser.add_argument("--max-line", type=_within(int, 1), default=defaults.max_line,
                        help="longest input line in bytes (default %(default)s)")
    parser.add_argument("--login-timeout", type=_within(float, 0, above=True),
                        default=defaults.login_timeout,
                        help="seconds to give a valid handle (default %(default)g)")
    parser.add_argument("--max-backlog", type=_within(int, 1), default=defaults.max_backlog,
                        help="unsent output per member in bytes before it is dropped"
                             " (default %(default)s)")
    # Not in PROTOCOL.md's list (so not in --help): the tests shorten the 30 s.
    parser.add_argument("--stall-timeout", type=_within(float, 0, above=True),
                        default=defaults.stall_timeout,
                        help=argparse.SUPPRESS)
    parser.add_argument("--tls-cert", metavar="FILE",
                        help="serve over TLS with this certificate (PEM; with --tls-key);"
                             " connect with `openssl s_client -quiet -connect HOST:PORT`"
                             " (default: plain TCP)")
    parser.add_argument("--tls-key", metavar="FILE",
                        help="the private key of --tls-cert (PEM)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="logging level (default %(default)s)")
    # The default comes from the environment, and is never shown: it may hold a password.
    parser.add_argument("--redis", metavar="URL", default=os.environ.get(redis_url.ENV) or None,
                        help="make this process a node of a chat room shared through Redis,"
                             " e.g. redis://127.0.0.1:6379/0, or rediss://...?ssl_ca_certs=FILE"
                             " for TLS (default: the"
                             f" {redis_url.ENV} environment variable, which keeps a password"
                             " out of the process list; without either, one process)")
    parser.add_argument("--workers", type=_within(int, 1), metavar="N",
                        help="run N worker processes on the same port (SO_REUSEPORT),"
                             " restarted if they die; needs --redis")
    parser.add_argument("--room", default="lobby",
                        help="the room's name in Redis, prefixing its keys (default %(default)s)")
    # Not in --help: the tests shorten the room's stream to make a node fall behind.
    parser.add_argument("--stream-bound", type=_within(int, 1), help=argparse.SUPPRESS)
    # Set by the --workers supervisor on the workers it starts: its PID.
    parser.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers and not args.redis:
        parser.error("--workers needs --redis (the workers share the room through it)")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def tls_context(cert, key):
    """A server-side TLS context presenting ``cert`` (PEM) with its private ``key``.

    Read once at startup, before the hub serves anyone. Raises ValueError
    naming the files when they cannot be loaded or do not match.
    """
    import ssl
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot use --tls-cert {cert} --tls-key {key}:"
                         f" {getattr(exc, 'strerror', None) or exc}") from None
    return context


def raise_nofile_limit():
    """Raise the soft RLIMIT_NOFILE toward the hard limit; return the soft limit."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workers:
        from .supervisor import supervise
        return supervise(args)
    if args.worker_of:
        from .supervisor import die_with_parent
        die_with_parent(args.worker_of)
    limit = raise_nofile_limit()
    if limit is not None:
        log.info("open file limit: %d descriptors", limit)
        if limit < args.max_clients + 64:
            log.warning("--max-clients %d needs more descriptors than the limit %d",
                        args.max_clients, limit)
    options = Options(host=args.host, port=args.port, max_clients=args.max_clients,
                      rate=args.rate, join_rate=args.join_rate, keepalive=args.keepalive,
                      max_line=args.max_line,
                      login_timeout=args.login_timeout, max_backlog=args.max_backlog,
                      stall_timeout=args.stall_timeout, reuse_port=bool(args.worker_of),
                      web_port=args.web_port or None)
    if options.web_port is not None:    # wsproto and httptools are imported only here
        try:
            importlib.import_module("microthreads.wsgi")
            importlib.import_module("chat.web")
        except ImportError as exc:
            log.error("--web-port needs the websocket and http extras (pip install"
                      " 'microthreads[websocket,http]'; --web-port 0 turns it off): %s", exc)
            return 2
    if args.tls_cert:
        try:
            options.tls = tls_context(args.tls_cert, args.tls_key)
        except ValueError as exc:
            log.error("%s", exc)
            return 2
    room = None
    if args.redis:      # redis-py is imported only here
        try:
            from .federation.room import RedisRoom
            room = RedisRoom(args.redis, args.room, stream_bound=args.stream_bound)
        except ImportError as exc:
            log.error("--redis needs redis-py (pip install 'microthreads[redis]'): %s", exc)
            return 2
        except (ValueError, OSError) as exc:
            log.error("%s", exc)
            return 2
    server = ChatServer(options, room)
    hub = microthreads.get_hub()

    def on_signal(signum, _frame):
        log.info("got %s", signal.Signals(signum).name)
        hub.call_soon_threadsafe(microthreads.spawn, server.shutdown)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        microthreads.run(server.listener)
    except OSError as exc:
        log.error("cannot serve on %s (port %d, web port %s): %s", args.host, args.port,
                  args.web_port or "off", exc.strerror or exc)
        return 1
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
