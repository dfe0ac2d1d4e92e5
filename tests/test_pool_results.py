"""Pool.map, imap, imap_unordered, apply, apply_async: bounded, lazy, errors where read."""

import itertools
from concurrent.futures import CancelledError

import pytest

import microthreads
from microthreads import AsyncResult, Pool


class Tracker:
    """A job that sleeps ``seconds`` and records how many jobs ran at once."""

    def __init__(self):
        self.running = 0
        self.most = 0
        self.started = []

    def job(self, seconds, value=None):
        self.started.append(value)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            microthreads.sleep(seconds)
        finally:
            self.running -= 1
        return value


def crash_records(caplog):
    return [r for r in caplog.records if r.name == "microthreads"]


def test_map_returns_results_in_order_with_at_most_size_running(virtual_clock):
    tracker = Tracker()
    pool = Pool(2)

    def main():
        return pool.map(tracker.job, [3, 1, 1, 2, 1], "abcde"), virtual_clock.now()

    # slots: a(0-3) | b(0-1) c(1-2) d(2-4) ; e starts at 3 on a's slot, ends at 4
    assert microthreads.run(main) == (["a", "b", "c", "d", "e"], 4.0)
    assert tracker.most == 2 and len(pool) == 0


def test_map_raises_the_first_error_in_time_at_once_and_kills_the_rest(virtual_clock, caplog):
    events = []

    def job(seconds):
        try:
            microthreads.sleep(seconds)
        except microthreads.TaskletExit:
            events.append(("killed", seconds, virtual_clock.now()))
            raise
        if seconds in (2, 3):
            raise ValueError(f"job {seconds} failed")
        return seconds

    def main():
        with pytest.raises(ValueError, match="job 2 failed"):
            Pool(4).map(job, [10, 3, 2, 1])
        events.append(("raised", virtual_clock.now()))
        microthreads.sleep(1)

    microthreads.run(main)
    assert sorted(events) == [("killed", 3, 2.0), ("killed", 10, 2.0), ("raised", 2.0)]
    assert crash_records(caplog) == []


def test_imap_is_lazy_and_yields_in_order_even_when_later_calls_finish_first(virtual_clock):
    tracker = Tracker()

    def main():
        results = Pool(3).imap(tracker.job, [3, 1, 2], [0, 1, 2])
        microthreads.sleep(1)
        assert tracker.started == []                    # nothing before the first next()
        return [(value, virtual_clock.now()) for value in results]

    assert microthreads.run(main) == [(0, 4.0), (1, 4.0), (2, 4.0)]


def test_imap_unordered_yields_each_result_as_its_call_finishes(virtual_clock):
    tracker = Tracker()

    def main():
        return [(value, virtual_clock.now())
                for value in Pool(3).imap_unordered(tracker.job, [3, 1, 2], "abc")]

    assert microthreads.run(main) == [("b", 1.0), ("c", 2.0), ("a", 3.0)]


def test_imap_reads_an_infinite_iterable_only_as_fast_as_results_are_read(virtual_clock):
    tracker = Tracker()
    pool = Pool(4)

    def main():
        results = pool.imap(tracker.job, itertools.repeat(1), itertools.count())
        first = [next(results) for _ in range(10)]
        microthreads.sleep(5)                          # the reader pauses ...
        paused = len(tracker.started)
        microthreads.sleep(5)                          # ... and nothing more starts
        later = len(tracker.started)
        results.close()                                # closing kills what still runs
        microthreads.sleep(0)
        return first, paused, later, len(pool)

    first, paused, later, members = microthreads.run(main)
    assert first == list(range(10))
    assert paused == later <= 10 + 2 * 4               # read 10, at most 2 x size ahead
    assert tracker.most <= 4 and members == 0


def test_imap_raises_an_error_at_its_turn_after_the_results_before_it(virtual_clock, caplog):
    def job(n):
        microthreads.sleep(1 / (n + 1))               # later calls finish first
        if n == 2:
            raise KeyError(n)
        return n

    def main():
        seen = []
        with pytest.raises(KeyError):
            for value in Pool(5).imap(job, range(5)):
                seen.append(value)
        return seen

    assert microthreads.run(main) == [0, 1]
    assert crash_records(caplog) == []


def test_apply_returns_the_value_or_raises_the_error_in_the_caller():
    def main():
        pool = Pool(1)
        value = pool.apply(divmod, (7, 2))
        keyword = pool.apply(int, ("ff",), {"base": 16})
        with pytest.raises(ZeroDivisionError):
            pool.apply(divmod, (1, 0))
        return value, keyword

    assert microthreads.run(main) == ((3, 1), 255)


def test_apply_async_waits_for_a_slot_and_returns_an_async_result(virtual_clock):
    tracker = Tracker()

    def main():
        pool = Pool(2)
        results = [pool.apply_async(tracker.job, (2,), {"value": n}) for n in range(3)]
        submitted = virtual_clock.now()                 # the third waited for a slot
        assert all(isinstance(r, AsyncResult) for r in results)
        return submitted, [r.get() for r in results], virtual_clock.now(), tracker.most

    assert microthreads.run(main) == (2.0, [0, 1, 2], 4.0, 2)


def test_a_failing_call_does_not_fail_a_pool_block_and_is_raised_where_read(caplog):
    def main():
        with Pool(2) as pool:
            failed = pool.apply_async(int, ("not a number",))
            ok = pool.apply_async(int, ("12",))
        with pytest.raises(ValueError):
            failed.get()
        return ok.get(), failed.successful()

    assert microthreads.run(main) == (12, False)
    assert crash_records(caplog) == []


def test_a_killed_member_leaves_cancelled_error_in_its_result(virtual_clock):
    def main():
        pool = Pool(1)
        running = pool.apply_async(microthreads.sleep, (10,))
        microthreads.sleep(1)
        pool.kill()
        with pytest.raises(CancelledError):
            running.get()
        return virtual_clock.now()

    assert microthreads.run(main) == 1.0
