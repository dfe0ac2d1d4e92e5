"""The ``--redis`` URL: what is accepted, how it reaches a worker, how it is logged.

A URL may carry a password (``redis://user:PASS@host``, ``redis://:PASS@host``,
``redis://host/0?password=PASS``, the same with ``rediss://``). It is never
written to a log unredacted (``redact``), and never put on a worker's
command line, which any local user can read in ``/proc/PID/cmdline``: the
supervisor hands it over in the environment (``ENV``), readable only by the
same user.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

#: The environment variable ``--redis`` defaults to.
ENV = "CHAT_REDIS_URL"

_HIDDEN = "***"
_QUERY_PASSWORD = re.compile(r"(?i)([?&;]password=)([^&;#]*)")


def check(url: str) -> None:
    """Raise ValueError (naming the URL without its password) unless ``url``
    is one this client can use."""
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError(f"--redis takes a redis://HOST:PORT/DB URL (rediss:// for TLS),"
                         f" not {redact(url)!r}")


def redact(url: str) -> str:
    """``url`` with every password replaced by ``***``, for a log line.

    The user name, host, port, database and other parameters stay, so the
    line still says where. Reads the URL as redis-py does (the authority
    ends at the first ``/``, ``?`` or ``#``; the password is after the
    first ``:`` of what precedes the last ``@``). Should a password still
    show (a URL too malformed to read that way), all but the scheme goes.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    secrets = [m.group(2) for m in _QUERY_PASSWORD.finditer(tail) if m.group(2)]
    userinfo, at, host = authority.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon and password:
            secrets.append(password)
            authority = f"{user}:{_HIDDEN}@{host}"
        elif not colon and "@" in userinfo:      # "a@b@host": read as a user; hide it
            secrets.append(userinfo)
            authority = f"{_HIDDEN}@{host}"
    tail = _QUERY_PASSWORD.sub(lambda m: m.group(1) + (_HIDDEN if m.group(2) else ""), tail)
    redacted = f"{scheme}{sep}{authority}{tail}"
    if any(secret in redacted or unquote(secret) in redacted for secret in secrets):
        return f"{scheme}{sep}{_HIDDEN}"
    return redacted
