"""The room's Lua: one script, put together from ``lua/`` (package data) at start.

``prelude.lua`` (the keys, and what every call shares), then each call's
file as the body of a function (``CALLS[name] = function(A) ... end``, its
arguments in ``A``), then ``dispatch.lua``, which runs the calls given in
ARGV in order and replies with their replies. So a whole batch of calls is
one EVALSHA: one round trip and one script run, on the one slot of the
room's keys (see ``prelude.lua`` for them).
"""

from __future__ import annotations

from importlib import resources

from redis.commands.core import Script

#: The calls, each ``lua/NAME.lua``.
NAMES = ("join", "leave", "say", "msg", "nick", "who", "heartbeat", "deregister")
#: The room's keys, in the order of KEYS (prelude.lua names them); ``held``
#: is this node's own, ``{held}`` replaced by the node's name.
KEYS = ("log", "members", "order", "nodes", "n", "seq", "held:{node}")


def source(name: str) -> str:
    """The text of ``lua/NAME.lua``; raises OSError if it is not installed."""
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text("utf-8")


def text() -> str:
    """The whole script. Reads the files now: a missing one fails at start."""
    calls = "".join(f"CALLS[{name!r}] = function(A)\n{source(name)}end\n\n" for name in NAMES)
    return source("prelude") + "\n" + calls + source("dispatch")


def keys(prefix: str, node: str) -> list[str]:
    """The script's KEYS for the room whose keys start with ``prefix``."""
    return [prefix + key.format(node=node) for key in KEYS]


def load() -> Script:
    """The script, for EVALSHA on any client (``script(keys=, args=,
    client=)``): redis-py loads it wherever Redis answers NOSCRIPT (a Redis
    restarted, a replica just promoted)."""
    return Script(None, text().encode("utf-8"))  # type: ignore[arg-type]  # no client: any
