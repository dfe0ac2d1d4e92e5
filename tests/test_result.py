"""AsyncResult: a one-shot slot, read by any number of tasklets."""

from concurrent.futures import InvalidStateError

import pytest

import microthreads
from microthreads import AsyncResult, DeadlockError, Timeout


def test_every_reader_parks_until_the_value_is_set_then_gets_it_in_arrival_order(virtual_clock):
    result = AsyncResult()
    events = []

    def reader(name):
        events.append((name, result.get(), virtual_clock.now()))

    def main():
        readers = [microthreads.spawn(reader, name) for name in "abc"]
        microthreads.sleep(2)
        assert not result.ready()
        result.set(42)
        microthreads.joinall(readers)

    microthreads.run(main)
    assert events == [("a", 42, 2.0), ("b", 42, 2.0), ("c", 42, 2.0)]
    assert result.ready() and result.successful() and result.value == 42


def test_an_exception_is_raised_to_every_get_but_never_by_wait(virtual_clock):
    result = AsyncResult()
    error = ValueError("boom")

    def main():
        microthreads.spawn_later(1, result.set_exception, error)
        assert result.wait() is True
        for _ in range(2):
            with pytest.raises(ValueError) as raised:
                result.get()
            assert raised.value is error
        return result.successful(), result.exception, result.value

    assert microthreads.run(main) == (False, error, None)


def test_get_raises_timeout_at_its_deadline_and_the_result_can_still_be_set(virtual_clock):
    result = AsyncResult()

    def main():
        with pytest.raises(Timeout):
            result.get(timeout=3)
        timed_out_at = virtual_clock.now()
        assert result.wait(timeout=2) is False
        result.set("late")
        return timed_out_at, virtual_clock.now(), result.get(timeout=1)

    assert microthreads.run(main) == (3.0, 5.0, "late")


def test_get_without_blocking_raises_timeout_at_once_when_unset():
    result = AsyncResult()
    with pytest.raises(Timeout):
        result.get(block=False)
    with pytest.raises(Timeout):
        result.get_nowait()
    result.set(None)
    assert result.get_nowait() is None and result.successful()


def test_it_is_settled_once_a_second_attempt_raises_and_changes_nothing():
    result = AsyncResult()
    result.set(1)
    with pytest.raises(InvalidStateError):
        result.set(2)
    with pytest.raises(InvalidStateError):
        result.set_exception(ValueError())
    assert result.get() == 1
    with pytest.raises(TypeError):
        AsyncResult().set_exception("not an exception")


def test_a_reader_nothing_could_ever_wake_gets_a_deadlock_error_naming_the_wait():
    def main():
        with pytest.raises(DeadlockError) as raised:
            AsyncResult().get()
        return str(raised.value)

    assert "AsyncResult.get()" in microthreads.run(main)
