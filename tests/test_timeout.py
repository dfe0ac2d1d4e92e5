"""Time: sleep, Timeout, with_timeout, and the timer heap at scale."""

import gc
import random
import sys

import pytest

import microthreads
from microthreads import Timeout

# ---------------------------------------------------------------------- sleep


def test_sleep_resumes_at_its_deadline(virtual_clock):
    def main():
        microthreads.sleep(2.5)
        return virtual_clock.now()

    assert microthreads.run(main) == 2.5


def test_sleepers_wake_in_deadline_order_and_ties_in_arrival_order(virtual_clock):
    events = []

    def sleeper(name, seconds):
        microthreads.sleep(seconds)
        events.append((name, virtual_clock.now()))

    for name, seconds in [("c", 3), ("a", 1), ("b1", 2), ("b2", 2)]:
        microthreads.spawn(sleeper, name, seconds)
    microthreads.run()
    assert events == [("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("c", 3.0)]


def test_10000_sleepers_wake_in_deadline_order(virtual_clock):
    rng = random.Random(1980)
    deadlines = [rng.randrange(1, 1_000_000) / 1000 for _ in range(10_000)]
    woken = []

    def sleeper(seconds):
        microthreads.sleep(seconds)
        woken.append((virtual_clock.now(), seconds))

    for seconds in deadlines:
        microthreads.spawn(sleeper, seconds)
    microthreads.run()
    assert [now for now, _ in woken] == sorted(deadlines)
    assert all(now == seconds for now, seconds in woken)


def test_a_negative_sleep_is_a_sleep_zero(virtual_clock):
    events = []

    def other():
        events.append("other")

    def main():
        microthreads.spawn(other)
        microthreads.sleep(-1)
        events.append(("main", virtual_clock.now()))

    microthreads.run(main)
    assert events == ["other", ("main", 0.0)]


# -------------------------------------------------------------------- Timeout


def test_timeout_interrupts_a_sleep_at_its_deadline(virtual_clock):
    events = []

    def sleeper():
        try:
            with Timeout(5):
                microthreads.sleep(60)
            events.append("not reached")
        except Timeout:
            events.append(("timed out", virtual_clock.now()))

    microthreads.run(sleeper)
    assert events == [("timed out", 5.0)]


def test_a_timeout_is_raised_in_the_tasklet_that_set_it_only(virtual_clock):
    events = []

    def bystander():
        microthreads.sleep(10)
        events.append(("bystander woke", virtual_clock.now()))

    def limited():
        try:
            with Timeout(1):
                microthreads.sleep(10)
        except Timeout:
            events.append(("limited timed out", virtual_clock.now()))

    microthreads.spawn(bystander)
    microthreads.spawn(limited)
    microthreads.run()
    assert events == [("limited timed out", 1.0), ("bystander woke", 10.0)]


def test_a_block_that_ends_in_time_is_not_interrupted(virtual_clock):
    def main():
        with Timeout(5) as timeout:
            microthreads.sleep(1)
        pending = timeout.pending
        microthreads.sleep(10)                 # well past the old deadline
        return "finished", pending, virtual_clock.now()

    assert microthreads.run(main) == ("finished", False, 11.0)


def test_a_cancelled_timeout_never_fires(virtual_clock):
    def main():
        timeout = Timeout(5).start()
        was_pending = timeout.pending
        microthreads.sleep(1)
        timeout.cancel()
        timeout.cancel()                        # idempotent
        microthreads.sleep(10)
        return was_pending, timeout.pending, virtual_clock.now()

    assert microthreads.run(main) == (True, False, 11.0)


def test_nested_timeouts_raise_the_outer_one_when_it_expires_first(virtual_clock):
    def main():
        outer, inner = Timeout(2), Timeout(10)
        try:
            with outer, inner:
                microthreads.sleep(60)
        except Timeout as exc:
            return exc is outer, exc is inner, virtual_clock.now()

    assert microthreads.run(main) == (True, False, 2.0)


def test_nested_timeouts_raise_the_inner_one_when_it_expires_first(virtual_clock):
    events = []

    def main():
        outer, inner = Timeout(10), Timeout(2)
        with outer:
            try:
                with inner:
                    microthreads.sleep(60)
            except Timeout as exc:
                events.append((exc is inner, virtual_clock.now()))
            try:
                microthreads.sleep(60)
            except Timeout as exc:
                events.append((exc is outer, virtual_clock.now()))

    microthreads.run(main)
    assert events == [(True, 2.0), (True, 10.0)]


def test_a_timeout_with_an_exception_class_raises_an_instance_of_it(virtual_clock):
    def main():
        with pytest.raises(ConnectionError), Timeout(1, ConnectionError):
            microthreads.sleep(60)
        return virtual_clock.now()

    assert microthreads.run(main) == 1.0


def test_a_timeout_with_an_exception_instance_raises_that_instance(virtual_clock):
    error = ConnectionError("too slow")

    def main():
        try:
            with Timeout(1, error):
                microthreads.sleep(60)
        except ConnectionError as exc:
            return exc

    assert microthreads.run(main) is error


def test_a_timeout_cannot_be_swallowed_by_except_exception(virtual_clock):
    events = []

    def main():
        try:
            with Timeout(1):
                try:
                    microthreads.sleep(60)
                except Exception:
                    events.append("swallowed")
        except Timeout:
            events.append("timed out")

    microthreads.run(main)
    assert issubclass(Timeout, BaseException) and not issubclass(Timeout, Exception)
    assert events == ["timed out"]


def test_a_timeout_of_none_never_fires(virtual_clock):
    def main():
        with Timeout(None) as timeout:
            microthreads.sleep(60)
        return timeout.pending, virtual_clock.now()

    assert microthreads.run(main) == (False, 60.0)


def test_a_timeout_interrupts_the_main_greenlet_waiting_outside_run(virtual_clock):
    microthreads.spawn_later(60, lambda: None)    # something is alive: not a deadlock
    with pytest.raises(Timeout), Timeout(3):
        microthreads.Event().wait()
    assert virtual_clock.now() == 3.0


def test_a_timeout_started_twice_is_an_error():
    def main():
        timeout = Timeout(5).start()
        with pytest.raises(RuntimeError, match="already started"):
            timeout.start()
        timeout.cancel()

    microthreads.run(main)


def test_a_timeout_describes_its_seconds():
    assert str(Timeout(1)) == "1 second"
    assert str(Timeout(2.5)) == "2.5 seconds"


# ---------------------------------------------------------------- with_timeout


def test_with_timeout_returns_what_fn_returns_in_time(virtual_clock):
    def work(a, b=0):
        microthreads.sleep(1)
        return a + b

    assert microthreads.run(microthreads.with_timeout, 5, work, 2, b=3) == 5


def test_with_timeout_returns_timeout_value_when_time_runs_out(virtual_clock):
    def main():
        value = microthreads.with_timeout(2, microthreads.sleep, 60, timeout_value="late")
        return value, virtual_clock.now()

    assert microthreads.run(main) == ("late", 2.0)


def test_with_timeout_returns_a_timeout_value_of_none_when_given(virtual_clock):
    def main():
        return microthreads.with_timeout(2, microthreads.sleep, 60, timeout_value=None)

    assert microthreads.run(main) is None


def test_with_timeout_raises_the_timeout_without_a_timeout_value(virtual_clock):
    def main():
        try:
            microthreads.with_timeout(2, microthreads.sleep, 60)
        except Timeout as exc:
            return exc.seconds, virtual_clock.now()

    assert microthreads.run(main) == (2, 2.0)


def test_with_timeout_lets_an_inner_timeout_through(virtual_clock):
    def work():
        with Timeout(1):
            microthreads.sleep(60)

    def main():
        with pytest.raises(Timeout):
            microthreads.with_timeout(5, work, timeout_value="not this one")
        return virtual_clock.now()

    assert microthreads.run(main) == 1.0


# ---------------------------------------------------------------------- scale


def test_100000_cancelled_timeouts_do_not_pile_up():
    def main():
        with Timeout(3600):
            pass
        gc.collect()
        before = sys.getallocatedblocks()
        for _ in range(100_000):
            with Timeout(3600):
                pass
        gc.collect()                            # a Timeout and its timer form a cycle
        return sys.getallocatedblocks() - before

    grown = microthreads.run(main)
    assert grown < 10_000       # a few dozen heap entries, not 100,000 (~300,000 blocks)


def test_a_timer_cancelled_amid_many_others_does_not_fire(virtual_clock):
    events = []

    def main():
        timeouts = [Timeout(i + 1).start() for i in range(1000)]
        for timeout in timeouts[::2]:
            timeout.cancel()
        for timeout in timeouts[1::2]:
            try:
                microthreads.sleep(3600)
            except Timeout as exc:
                events.append(exc is timeout)
        return virtual_clock.now()

    assert microthreads.run(main) == 1000.0
    assert events == [True] * 500
