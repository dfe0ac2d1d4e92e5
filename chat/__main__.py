"""python -m chat: the chat server (``make run``, ``microthreads-chat``)."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import ssl
import sys
from types import FrameType
from typing import Sequence

import microthreads

from .cli import parse_args
from .room import Room, RoomError
from .server import ChatServer, Options

log = logging.getLogger("chat")


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server-side TLS context presenting ``cert`` (PEM) with its private ``key``.

    Read once at startup, before the hub serves anyone. Raises ValueError
    naming the files when they cannot be loaded or do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot use --tls-cert {cert} --tls-key {key}:"
                         f" {getattr(exc, 'strerror', None) or exc}") from None
    return context


def raise_nofile_limit() -> int | None:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chat (or, with ``--workers``, the supervisor) until SIGINT or
    SIGTERM; the exit status: 0 after a clean stop, 1 if it cannot listen,
    2 for an unusable TLS or Redis setting or MICROTHREADS_* variable."""
    args = parse_args(argv)
    # a worker's lines say which one wrote them: its slot's number and its PID
    worker = "" if args.worker_number is None else \
        f"worker {args.worker_number} pid {os.getpid()} "
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format=f"%(asctime)s {worker}%(levelname)s %(name)s: %(message)s")
    try:            # the hub reads MICROTHREADS_WATCHDOG_MS and MICROTHREADS_POLLER
        microthreads.get_hub()
    except ValueError as exc:
        log.error("%s", exc)
        return 2
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
    room: Room | None = None
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

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("got %s", signal.Signals(signum).name)
        hub.call_soon_threadsafe(microthreads.spawn, server.shutdown)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        microthreads.run(server.listener)
    except RoomError as exc:            # a shared room that cannot be reached at start
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot serve on %s (port %d, web port %s): %s", args.host, args.port,
                  args.web_port or "off", exc.strerror or exc)
        return 1
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
