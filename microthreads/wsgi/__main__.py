"""``python -m microthreads.wsgi MODULE:APP --bind HOST:PORT``: serve a WSGI app.

As ``waitress-serve`` and ``gunicorn`` take one: ``MODULE:APP`` names a
module (imported from the current directory too) and a callable in it
(``APP`` defaults to ``application``; ``MODULE:make_app()`` calls a factory).
``--patch`` calls ``microthreads.monkey.patch_all()`` before the module is
imported, so the app's own ``socket``, ``ssl`` and ``time.sleep`` cooperate.
SIGTERM and SIGINT stop the server gracefully (``--graceful-timeout``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import Any

from .. import monkey
from ..hub import get_hub
from ..net.common import describe
from ..sync import Event
from ..tasklet import run

log = logging.getLogger("microthreads.wsgi")


def parse_bind(text: str) -> Any:
    """``"HOST:PORT"``, ``"[::1]:PORT"``, ``":PORT"`` or ``"unix:/path"`` -> an address."""
    if text.startswith("unix:"):
        return text[5:]
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--bind wants HOST:PORT, not {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_app(spec: str) -> Any:
    """The callable that ``MODULE:APP`` names (``MODULE:factory()`` calls it).

    Raises ImportError or AttributeError naming what is missing.
    """
    module_name, _, name = spec.partition(":")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    name = name or "application"
    call = name.endswith("()")
    app = getattr(module, name[:-2] if call else name, None)
    if app is None:
        raise AttributeError(f"module {module_name!r} has no {name!r}")
    return app() if call else app


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (``python -m microthreads.wsgi --help``); a bad
    argument makes argparse exit with status 2 and its message.
    """
    parser = argparse.ArgumentParser(prog="python -m microthreads.wsgi",
                                     description="Serve a WSGI application on microthreads.")
    parser.add_argument("app", metavar="MODULE:APP", help="the WSGI application to serve")
    parser.add_argument("--bind", "-b", type=parse_bind, default=("127.0.0.1", 8000),
                        metavar="HOST:PORT", help="where to listen (default 127.0.0.1:8000;"
                        " unix:/path for a Unix socket)")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")
    parser.add_argument("--patch", action="store_true",
                        help="monkey.patch_all() before the app is imported")
    parser.add_argument("--access-log", action="store_true",
                        help="log a line per request (logger microthreads.wsgi.access)")
    parser.add_argument("--max-connections", type=int, default=None)
    parser.add_argument("--backlog", type=int, default=1024)
    parser.add_argument("--reuse-port", action="store_true")
    parser.add_argument("--max-request-line", type=int, default=8190)
    parser.add_argument("--max-headers", type=int, default=100)
    parser.add_argument("--max-header-size", type=int, default=8190)
    parser.add_argument("--max-body", type=int, default=1 << 30)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--keepalive-timeout", type=float, default=5.0)
    parser.add_argument("--read-timeout", type=float, default=60.0)
    parser.add_argument("--graceful-timeout", type=float, default=30.0,
                        help="on SIGTERM/SIGINT, how long requests in flight may finish")
    parser.add_argument("--log-level", default="info")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status: 0 after SIGTERM or SIGINT,
    1 if it cannot listen, 2 for an unusable certificate or MICROTHREADS_*
    variable (each said in one log line)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:            # the hub reads MICROTHREADS_WATCHDOG_MS and MICROTHREADS_POLLER
        get_hub()
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if args.patch:
        monkey.patch_all()
    app = load_app(args.app)
    context = None
    if args.certfile:
        import ssl
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
            log.error("cannot use --certfile %s --keyfile %s: %s", args.certfile,
                      args.keyfile, getattr(exc, "strerror", None) or exc)
            return 2
    from .server import WSGIServer
    server = WSGIServer(args.bind, app, ssl=context, access_log=args.access_log,
                        max_connections=args.max_connections, backlog=args.backlog,
                        reuse_port=args.reuse_port, max_request_line=args.max_request_line,
                        max_headers=args.max_headers, max_header_size=args.max_header_size,
                        max_body=args.max_body, header_timeout=args.header_timeout,
                        keepalive_timeout=args.keepalive_timeout,
                        read_timeout=args.read_timeout)

    def serve() -> None:
        stop = Event()
        hub = get_hub()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: hub.call_soon_threadsafe(stop.set))
        server.start()
        log.info("serving %s on %s://%s", args.app, server.scheme, describe(server.address))
        stop.wait()
        log.info("stopping (requests in flight get %g s)", args.graceful_timeout)
        server.stop(args.graceful_timeout)

    try:
        run(serve)
    except OSError as exc:          # the address: in use, not ours, not resolvable
        log.error("cannot serve on %s: %s", describe(args.bind), exc.strerror or exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
