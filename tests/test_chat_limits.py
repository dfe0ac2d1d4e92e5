"""Per-address limits that outlive connections (chat/limits.py), with time passed in."""

import pytest

from chat.limits import AddressLimits, address_key


def spend(limiter, now, lines):
    return sum(limiter.allow(now) for _ in range(lines))


def test_a_reconnect_takes_over_the_bucket_its_last_connection_left():
    limits = AddressLimits(rate=20)
    first = limits.line_limiter("10.0.0.1", 0.0)
    assert spend(first, 0.0, 100) == 40
    limits.release("10.0.0.1", first, 0.0)
    again = limits.line_limiter("10.0.0.1", 0.1)
    assert spend(again, 0.1, 100) == 2              # what 0.1 s refilled, no fresh burst


def test_connections_open_at_once_each_have_a_bucket_and_another_address_its_own():
    limits = AddressLimits(rate=20)
    one, two = limits.line_limiter("10.0.0.1", 0.0), limits.line_limiter("10.0.0.1", 0.0)
    assert one is not two
    assert spend(one, 0.0, 100) == spend(two, 0.0, 100) == 40
    limits.release("10.0.0.1", one, 0.0)
    assert spend(limits.line_limiter("10.0.0.2", 0.0), 0.0, 100) == 40


def test_of_two_buckets_left_the_emptier_is_kept():
    limits = AddressLimits(rate=20)
    full, empty = limits.line_limiter("a", 0.0), limits.line_limiter("a", 0.0)
    spend(empty, 0.0, 40)
    limits.release("a", empty, 0.0)
    limits.release("a", full, 0.0)
    assert spend(limits.line_limiter("a", 0.0), 0.0, 100) == 0


def test_a_pause_long_enough_to_refill_gives_a_full_burst_back_and_forgets_the_address():
    limits = AddressLimits(rate=20, join_rate=0)
    limiter = limits.line_limiter("a", 0.0)
    spend(limiter, 0.0, 40)
    limits.release("a", limiter, 0.0)
    assert spend(limits.line_limiter("a", 2.0), 2.0, 100) == 40
    assert len(limits) == 0


def test_joins_pass_in_a_burst_then_at_the_join_rate():
    limits = AddressLimits(join_rate=1, join_burst=10)
    assert sum(limits.allow_join("a", 0.0) for _ in range(20)) == 10
    assert limits.allow_join("b", 0.0)
    assert sum(limits.allow_join("a", 3.0) for _ in range(20)) == 3


def test_rate_zero_and_join_rate_zero_limit_nothing():
    limits = AddressLimits(rate=0, join_rate=0)
    assert limits.line_limiter("a", 0.0) is None
    assert all(limits.allow_join("a", 0.0) for _ in range(1000))


def test_memory_is_bounded_by_max_addresses_least_recently_used_first():
    limits = AddressLimits(join_rate=1, max_addresses=3)
    for number in range(10):
        limits.allow_join(f"10.0.0.{number}", 0.0)
    assert len(limits) == 3
    assert sum(limits.allow_join("10.0.0.9", 0.0) for _ in range(20)) == 9    # remembered
    assert sum(limits.allow_join("10.0.0.0", 0.0) for _ in range(20)) == 10   # forgotten


@pytest.mark.parametrize(("peer", "key"), [
    (("127.0.0.1", 5000), "127.0.0.1"),
    (("2001:db8:1:2:3:4:5:6", 5000, 0, 0), "2001:db8:1:2::/64"),
    (("2001:db8:1:2:ffff::1", 1, 0, 0), "2001:db8:1:2::/64"),
    (("::ffff:10.1.2.3", 5000, 0, 0), "10.1.2.3"),
    (("fe80::1%eth0", 5000, 0, 2), "fe80::/64"),
    ("/tmp/chat.sock", "/tmp/chat.sock"),
])
def test_an_ipv6_address_counts_by_its_64_prefix(peer, key):
    assert address_key(peer) == key


@pytest.mark.parametrize("options", [{"rate": -1}, {"join_rate": -1}, {"max_addresses": 0}])
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError):
        AddressLimits(**options)
