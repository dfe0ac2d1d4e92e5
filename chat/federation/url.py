"""The ``--redis`` URL: what is accepted, and how it is written in a log."""

from __future__ import annotations


def check(url: str) -> None:
    """Raise ValueError (naming the URL without its password) unless ``url``
    is one this client can use."""
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError(f"--redis takes a redis://HOST:PORT/DB URL (rediss:// for TLS),"
                         f" not {redact(url)!r}")


def redact(url: str) -> str:
    """The URL without a password, for the log."""
    head, sep, tail = url.rpartition("@")
    scheme = head.partition("://")[0] or "redis"
    return f"{scheme}://***@{tail}" if sep else url
