"""Limits per address that outlive connections: a reconnect starts no fresh burst.

Every connection's lines pass its own token bucket (``RateLimiter``, 20
lines a second, burst 40 by default). Left at that, a client that quits and
reconnects gets a fresh burst each time, and every session adds a "joined"
and a "left" line for every member to read: a reconnect storm made one
watching member receive 58,589 lines a second. ``AddressLimits`` closes
that:

- **Lines**: when a connection ends, its bucket is kept for its address;
  the next connection from there takes it over, tokens as they were (the
  bucket refills at its rate meanwhile, so a pause of burst/rate seconds
  gives a full burst back). Connections open at once each hold a bucket of
  their own (people behind one NAT are not one person), but only the first
  from an address starts full while a kept bucket is there to take.
- **Joins**: each login (a valid, free handle) takes a token from the
  address's join bucket, ``join_rate`` a second with a burst of
  ``join_burst``; without one the login is refused, so a storm adds at most
  ``2 * join_rate`` joined/left lines a second per address.

An address is the IPv4 address, or the /64 prefix of an IPv6 one (one host
commonly has a whole /64). Memory is bounded: at most ``max_addresses`` are
remembered, least recently used first forgotten, and an address whose
buckets would be full again by now is forgotten as it is met, since a full
bucket is what a new one is. Pure: time is passed in, nothing here yields.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import OrderedDict
from typing import Any

from .text import RateLimiter

__all__ = ["AddressLimits", "address_key"]


def address_key(peer: Any) -> str:
    """The key an address is limited by: the IPv4 address, the /64 of an IPv6
    one (an IPv4-mapped IPv6 address is its IPv4), anything else as text."""
    host = peer[0] if isinstance(peer, tuple) and peer else peer
    return _host_key(str(host))


@functools.lru_cache(maxsize=1024)
def _host_key(host: str) -> str:
    # Remembered for the last 1,024 hosts: parsing an address is ~2.5 us of
    # every login, and a crowd logs in from few addresses (a pure function).
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class _Address:
    __slots__ = ("joins", "kept", "seen")

    def __init__(self, joins: RateLimiter | None, seen: float) -> None:
        self.joins = joins                       # None: joins unlimited
        self.kept: RateLimiter | None = None  # a line bucket no connection holds
        self.seen = seen                         # when last used (the clock's seconds)


class AddressLimits:
    """The per-address line and join buckets; see the module.

    ``rate`` (lines a second per connection, burst twice that; 0: unlimited,
    and ``line_limiter`` returns None), ``join_rate`` (logins a second per
    address, 0: unlimited) and ``join_burst``. Raises ValueError for a
    negative rate or ``max_addresses`` below 1.
    """

    def __init__(self, rate: float = 20.0, join_rate: float = 1.0, join_burst: float = 10.0,
                 max_addresses: int = 16384) -> None:
        if rate < 0 or join_rate < 0:
            raise ValueError("rates must be 0 (unlimited) or more")
        if max_addresses < 1:
            raise ValueError(f"max_addresses must be at least 1, not {max_addresses!r}")
        self.rate = rate
        self.join_rate = join_rate
        self.join_burst = join_burst
        self.max_addresses = max_addresses
        self._addresses: OrderedDict[str, _Address] = OrderedDict()
        # After this long unused, every bucket of an address is full again.
        self._forget_after = max(2.0 if rate else 0.0,
                                 join_burst / join_rate if join_rate else 0.0)

    def __len__(self) -> int:
        return len(self._addresses)

    def line_limiter(self, key: str, now: float) -> RateLimiter | None:
        """The line bucket for a new connection from ``key``: the one the last
        connection from there left, if no other took it, else a full one."""
        if not self.rate:
            return None
        entry = self._entry(key, now, create=False)
        if entry is not None and entry.kept is not None:
            limiter, entry.kept = entry.kept, None
            return limiter
        return RateLimiter(self.rate)

    def release(self, key: str, limiter: RateLimiter | None, now: float) -> None:
        """A connection from ``key`` ended: keep its bucket for the next one
        (of two kept, the emptier)."""
        if limiter is None:
            return
        entry = self._entry(key, now, create=True)
        assert entry is not None                 # made if missing
        kept = entry.kept
        if kept is None or (limiter.available(now) or 0) < (kept.available(now) or 0):
            entry.kept = limiter

    def allow_join(self, key: str, now: float) -> bool:
        """Take a join token for ``key``; False if none is left (refuse the login)."""
        if not self.join_rate:
            return True
        entry = self._entry(key, now, create=True)
        assert entry is not None and entry.joins is not None
        return entry.joins.allow(now)

    def join_wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may log in again (0: now)."""
        entry = self._entry(key, now, create=False)
        return 0.0 if entry is None or entry.joins is None else entry.joins.wait(now)

    def _entry(self, key: str, now: float, create: bool) -> _Address | None:
        """The address's entry, marked as just used; forgets what is stale."""
        addresses = self._addresses
        entry = addresses.get(key)
        if entry is not None and now - entry.seen >= self._forget_after:
            del addresses[key]                   # all full again: as good as new
            entry = None
        if entry is None:
            if not create:
                return None
            joins = RateLimiter(self.join_rate, self.join_burst) if self.join_rate else None
            entry = addresses[key] = _Address(joins, now)
        else:
            addresses.move_to_end(key)
            entry.seen = now
        self._prune(now)
        return entry

    def _prune(self, now: float) -> None:
        """Forget the least recently used: past the bound, or stale."""
        addresses = self._addresses
        while addresses:
            key, oldest = next(iter(addresses.items()))
            if len(addresses) <= self.max_addresses and now - oldest.seen < self._forget_after:
                return
            del addresses[key]
