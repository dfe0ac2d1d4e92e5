"""The room's Lua scripts, read from ``lua/`` (package data) at start.

Every script is ``prelude.lua`` followed by its own file. Each is called
with KEYS[1] the room's prefix and ARGV[1..3] the stream bound, the node
and the expiry in ms; its own arguments follow (see each file's header).
"""

from __future__ import annotations

from importlib import resources

import redis
from redis.commands.core import Script

NAMES = ("join", "leave", "say", "msg", "nick", "who", "heartbeat", "deregister")


def source(name: str) -> str:
    """The text of ``lua/NAME.lua``; raises OSError if it is not installed."""
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text("utf-8")


def load(client: redis.Redis) -> dict[str, Script]:
    """Every script, by name, registered with ``client`` (EVALSHA, loaded on
    first use). Reads the files now: a missing one fails at start."""
    prelude = source("prelude")
    return {name: client.register_script(prelude + source(name)) for name in NAMES}
