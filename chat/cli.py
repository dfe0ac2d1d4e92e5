"""The chat's command line: the parser of ``python -m chat`` and its checks.

Its own module so that the entry point (``__main__``) and the ``--workers``
supervisor, which derives each worker's command line from this parser, both
import it and not each other.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Collection, Sequence, TypeVar

import microthreads

from .federation import url as redis_url
from .server import Options

Number = TypeVar("Number", int, float)


def _within(convert: Callable[[str], Number], low: float, high: float | None = None, *,
            above: bool = False) -> Callable[[str], Number]:
    """An argparse type: ``convert(text)``, at least ``low`` (more than ``low``
    if ``above``) and at most ``high``; a value out of range is a usage error,
    not a traceback at each connection."""
    def parse(text: str) -> Number:
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


def program_name(argv0: str | None = None) -> str:
    """The command as the user typed it, for usage lines and errors:
    ``microthreads-chat`` from the installed script, ``python -m chat`` from
    ``-m`` (where ``sys.argv[0]`` is the path of ``chat/__main__.py``)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    name = os.path.basename(argv0)
    if name in ("__main__.py", "-m", "-c", ""):
        return f"python -m {__package__ or 'chat'}"
    return name


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser; the supervisor derives its workers' flags
    from it (``command_line``), so each new flag reaches them."""
    return _parser_and_options()[0]


def command_line(args: argparse.Namespace, leave_out: Collection[str] = ()) -> list[str]:
    """Flags that the parser reads back as ``args``: every option whose value
    is set, but those whose destination is in ``leave_out``."""
    argv: list[str] = []
    for action in _parser_and_options()[1]:
        value = getattr(args, action.dest, None)
        if action.dest in leave_out or not action.option_strings or value is None:
            continue
        flag = action.option_strings[-1]
        if action.nargs == 0:                   # store_true and the like
            if value != action.default:
                argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(_arg, value)]
        else:
            argv += [flag, _arg(value)]
    return argv


def _arg(value: object) -> str:
    """A value as the parser will read it back (repr keeps a float exact)."""
    return repr(value) if isinstance(value, float) else str(value)


def _parser_and_options() -> tuple[argparse.ArgumentParser, list[argparse.Action]]:
    """The parser, and each option it has (as ``add_argument`` returned it)."""
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description="A telnet chat server on microthreads. Connect with"
                    " `telnet 127.0.0.1 1980` or `nc 127.0.0.1 1980`.")
    options: list[argparse.Action] = []
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s (microthreads {microthreads.__version__})")

    def add(*flags: str, **how: Any) -> None:
        options.append(parser.add_argument(*flags, **how))

    add("--host", default=defaults.host,
        help="address to listen on (default %(default)s)")
    add("--port", type=_within(int, 0, 65535), default=defaults.port,
        help="TCP port (default %(default)s; 0 picks a free one)")
    add("--web-port", type=_within(int, 0, 65535), default=8080,
        help="HTTP port of the chat page and its WebSocket /ws, on --host"
             " (https and wss with --tls-cert); 0 is off (default %(default)s)")
    add("--max-clients", type=_within(int, 1), default=defaults.max_clients,
        help="connections held at once, logged in or at the prompt; one more gets"
             " 'Server is full, try again later.' and is closed (default %(default)s)")
    add("--rate", type=_within(float, 0), default=defaults.rate,
        help="lines per second per member, burst twice that; the lines over it are"
             " dropped, and the member told 'You are sending too fast; slow down.'"
             " (once a second at most); 0 is off (default %(default)g)")
    add("--join-rate", type=_within(float, 0), default=defaults.join_rate,
        help="logins per second per address, burst 10; a login over it gets 'Too many"
             " logins from your address; wait N seconds.' and the handle question"
             " again; 0 is off (default %(default)g)")
    add("--keepalive", type=_within(int, 1), default=defaults.keepalive,
        metavar="SECONDS",
        help="a silent peer (no FIN, no reset) is probed by TCP keepalive after this"
             " many idle seconds, 3 probes 5 s apart, then dropped: within about"
             " SECONDS + 15 s (default %(default)s)")
    add("--max-line", type=_within(int, 1), default=defaults.max_line,
        help="longest input line in bytes (default %(default)s)")
    add("--login-timeout", type=_within(float, 0, above=True),
        default=defaults.login_timeout,
        help="seconds to give a valid handle (default %(default)g)")
    add("--max-backlog", type=_within(int, 1), default=defaults.max_backlog,
        help="unsent output per member in bytes before it is dropped"
             " (default %(default)s)")
    add("--stall-timeout", type=_within(float, 0, above=True),
        default=defaults.stall_timeout, metavar="SECONDS",
        help="a member whose pending output has not moved for this long (or whose"
             " sent output the peer has not acknowledged: TCP_USER_TIMEOUT) is"
             " dropped (default %(default)g)")
    add("--tls-cert", metavar="FILE",
        help="serve over TLS with this certificate (PEM; with --tls-key);"
             " connect with `openssl s_client -quiet -connect HOST:PORT`"
             " (default: plain TCP)")
    add("--tls-key", metavar="FILE",
        help="the private key of --tls-cert (PEM)")
    add("--log-level", default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging level (default %(default)s)")
    # The default comes from the environment, and is never shown: it may hold a password.
    add("--redis", metavar="URL", default=os.environ.get(redis_url.ENV) or None,
        help="make this process a node of a chat room shared through Redis,"
             " e.g. redis://127.0.0.1:6379/0, or rediss://...?ssl_ca_certs=FILE"
             " for TLS (default: the"
             f" {redis_url.ENV} environment variable, which keeps a password"
             " out of the process list; without either, one process)")
    add("--workers", type=_within(int, 1), metavar="N",
        help="run N worker processes on the same port (SO_REUSEPORT),"
             " restarted if they die; needs --redis")
    add("--room", default="lobby",
        help="the room's name in Redis, prefixing its keys (default %(default)s)")
    # Not in --help: the tests shorten the room's stream to make a node fall behind.
    add("--stream-bound", type=_within(int, 1), help=argparse.SUPPRESS)
    # Set by the --workers supervisor on the workers it starts: its PID.
    add("--worker-of", type=int, help=argparse.SUPPRESS)
    # ... and its slot's number, which prefixes the worker's log lines.
    add("--worker-number", type=int, help=argparse.SUPPRESS)
    return parser, options


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line read and checked; a usage error exits 2 (argparse's way)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers and not args.redis:
        parser.error("--workers needs --redis (the workers share the room through it)")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args
