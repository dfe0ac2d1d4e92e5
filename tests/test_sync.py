"""Event, Lock, RLock, Semaphore, BoundedSemaphore, Queue and Channel."""

import gc

import pytest

import microthreads
from microthreads import (
    BoundedSemaphore,
    Channel,
    Empty,
    Event,
    Full,
    Lock,
    Queue,
    RLock,
    Semaphore,
)


def spawn_named(name, fn, *args):
    tasklet = microthreads.spawn(fn, *args)
    tasklet.name = name
    return tasklet


# ---------------------------------------------------------------------- Event


def test_event_set_wakes_every_waiter_in_arrival_order():
    event = Event()
    events = []

    def waiter(name):
        events.append((name, "waits"))
        events.append((name, event.wait()))

    def main():
        for name in "abc":
            microthreads.spawn(waiter, name)
        microthreads.sleep(0)
        events.append(("main", "sets"))
        event.set()
        microthreads.sleep(0)

    microthreads.run(main)
    assert events == [("a", "waits"), ("b", "waits"), ("c", "waits"), ("main", "sets"),
                      ("a", True), ("b", True), ("c", True)]


def test_event_wait_returns_at_once_when_set_and_waits_again_after_clear(virtual_clock):
    event = Event()

    def main():
        event.set()
        first = event.wait(), event.is_set()
        event.clear()
        second = event.wait(timeout=2), event.is_set(), virtual_clock.now()
        return first, second

    assert microthreads.run(main) == ((True, True), (False, False, 2.0))


def test_event_wait_with_a_timeout_returns_true_when_set_in_time(virtual_clock):
    event = Event()
    microthreads.spawn_later(1, event.set)

    def main():
        return event.wait(timeout=5), virtual_clock.now()

    assert microthreads.run(main) == (True, 1.0)


# ----------------------------------------------------------------------- Lock


def test_lock_excludes_and_hands_over_in_arrival_order_without_barging():
    lock = Lock()
    events = []

    def worker(name):
        with lock:
            events.append(f"{name} in")
            microthreads.sleep(0)
            events.append(f"{name} out")

    def main():
        lock.acquire()
        for name in ("w1", "w2"):
            microthreads.spawn(worker, name)
        microthreads.sleep(0)                 # both wait now
        lock.release()                        # handed to w1 at once ...
        events.append(f"main re-acquires: {lock.acquire(blocking=False)}")   # ... no barging
        microthreads.spawn(worker, "late")
        microthreads.sleep(0)
        lock.acquire()
        events.append("main in")
        lock.release()

    microthreads.run(main)
    assert events == ["main re-acquires: False", "w1 in", "w1 out", "w2 in", "w2 out",
                      "late in", "late out", "main in"]


def test_lock_acquire_without_blocking_and_with_a_timeout_fail_while_held(virtual_clock):
    lock = Lock()

    def main():
        lock.acquire()
        holder = microthreads.spawn(lambda: (lock.acquire(False), lock.acquire(timeout=3),
                                             virtual_clock.now()))
        return holder.get(), lock.locked()

    assert microthreads.run(main) == ((False, False, 3.0), True)


def test_lock_acquire_with_a_timeout_succeeds_if_released_in_time(virtual_clock):
    lock = Lock()

    def main():
        lock.acquire()
        microthreads.spawn_later(1, lock.release)
        return lock.acquire(timeout=5), virtual_clock.now()

    assert microthreads.run(main) == (True, 1.0)


def test_releasing_an_unlocked_lock_raises_runtime_error():
    with pytest.raises(RuntimeError):
        Lock().release()


def test_a_waiter_killed_after_being_handed_the_lock_passes_it_on():
    lock = Lock()
    events = []

    def worker(name):
        try:
            lock.acquire()
        except microthreads.TaskletExit:
            events.append(f"{name} killed")
            raise
        events.append(f"{name} has it")
        lock.release()

    def main():
        lock.acquire()
        first = microthreads.spawn(worker, "first")
        microthreads.spawn(worker, "second")
        microthreads.sleep(0)
        lock.release()                         # handed to first, which has not run yet
        first.kill()
        lock.acquire()
        events.append("main has it")

    microthreads.run(main)
    assert events == ["first killed", "second has it", "main has it"]


def test_a_waiter_timed_out_leaves_the_line_and_the_lock_goes_to_the_next(virtual_clock):
    lock = Lock()
    events = []

    def worker(name, timeout):
        got = lock.acquire(timeout=timeout)
        events.append((name, got, virtual_clock.now()))
        if got:
            lock.release()

    def main():
        lock.acquire()
        microthreads.spawn(worker, "impatient", 1)
        microthreads.spawn(worker, "patient", None)
        microthreads.sleep(2)
        lock.release()
        microthreads.sleep(0)

    microthreads.run(main)
    assert events == [("impatient", False, 1.0), ("patient", True, 2.0)]


# ---------------------------------------------------------------------- RLock


def test_rlock_owner_may_acquire_again_and_must_release_as_often():
    lock = RLock()
    events = []

    def other():
        lock.acquire()
        events.append("other has it")
        lock.release()

    def main():
        lock.acquire()
        lock.acquire()
        microthreads.spawn(other)
        lock.release()
        microthreads.sleep(0)
        events.append(f"still held: {lock.locked()}")
        lock.release()
        microthreads.sleep(0)

    microthreads.run(main)
    assert events == ["still held: True", "other has it"]


def test_rlock_release_by_a_non_owner_raises_runtime_error():
    lock = RLock()

    def main():
        lock.acquire()
        intruder = microthreads.spawn(lock.release)
        intruder.join()
        return type(intruder.exception)

    assert microthreads.run(main) is RuntimeError


def test_rlock_handed_to_a_waiter_counts_one_acquire():
    lock = RLock()

    def waiter():
        with lock, lock:
            pass
        return lock.locked()

    def main():
        lock.acquire()
        tasklet = microthreads.spawn(waiter)
        microthreads.sleep(0)
        lock.release()
        return tasklet.get()

    assert microthreads.run(main) is False


# ------------------------------------------------------------------ Semaphore


def test_semaphore_admits_value_holders_and_serves_waiters_in_order():
    semaphore = Semaphore(2)
    events = []

    def worker(name):
        with semaphore:
            events.append(f"{name} in")
            microthreads.sleep(0)
            microthreads.sleep(0)
            events.append(f"{name} out")

    for name in "abcd":
        microthreads.spawn(worker, name)
    microthreads.run()
    assert events == ["a in", "b in", "a out", "b out", "c in", "d in", "c out", "d out"]


def test_semaphore_release_hands_the_place_to_the_first_waiter_without_barging():
    semaphore = Semaphore(0)
    events = []

    def waiter(name):
        semaphore.acquire()
        events.append(name)

    def main():
        microthreads.spawn(waiter, "first")
        microthreads.sleep(0)
        semaphore.release()
        events.append(f"barging: {semaphore.acquire(blocking=False)}")
        microthreads.sleep(0)
        events.append(f"value: {semaphore.value}")

    microthreads.run(main)
    assert events == ["barging: False", "first", "value: 0"]


def test_semaphore_release_n_wakes_n_waiters():
    semaphore = Semaphore(0)
    events = []

    def main():
        for name in "abc":
            microthreads.spawn(lambda n: (semaphore.acquire(), events.append(n)), name)
        microthreads.sleep(0)
        semaphore.release(2)
        microthreads.sleep(0)
        events.append(semaphore.value)
        semaphore.release()

    microthreads.run(main)
    assert events == ["a", "b", 0, "c"]


def test_semaphore_acquire_with_a_timeout_returns_false_when_time_runs_out(virtual_clock):
    semaphore = Semaphore(0)

    def main():
        return semaphore.acquire(timeout=4), virtual_clock.now()

    assert microthreads.run(main) == (False, 4.0)


def test_a_semaphore_cannot_start_negative():
    with pytest.raises(ValueError):
        Semaphore(-1)


def test_bounded_semaphore_over_release_raises_value_error():
    semaphore = BoundedSemaphore(2)
    semaphore.acquire()
    semaphore.release()
    with pytest.raises(ValueError):
        semaphore.release()
    assert semaphore.value == 2


# ---------------------------------------------------------------------- Queue


def test_queue_gives_items_in_fifo_order():
    queue = Queue()
    for item in range(5):
        queue.put(item)
    assert (queue.qsize(), queue.empty(), queue.full()) == (5, False, False)
    assert [queue.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert queue.empty()


def test_queue_put_waits_while_full_and_putters_go_in_arrival_order():
    queue = Queue(maxsize=1)
    events = []

    def producer(name):
        queue.put(name)
        events.append(f"{name} put")

    def main():
        queue.put("first")
        microthreads.spawn(producer, "p1")
        microthreads.spawn(producer, "p2")
        microthreads.sleep(0)
        events.append(f"full: {queue.full()}, size {queue.qsize()}")
        for _ in range(3):
            events.append(f"got {queue.get()}")
            microthreads.sleep(0)

    microthreads.run(main)
    assert events == ["full: True, size 1", "got first", "p1 put", "got p1", "p2 put",
                      "got p2"]


def test_queue_getters_are_served_in_arrival_order():
    queue = Queue()
    events = []

    def getter(name):
        events.append((name, queue.get()))

    def main():
        for name in ("g1", "g2", "g3"):
            microthreads.spawn(getter, name)
        microthreads.sleep(0)
        for item in "xyz":
            queue.put(item)
        events.append(("barging", queue.qsize()))
        microthreads.sleep(0)

    microthreads.run(main)
    assert events == [("barging", 0), ("g1", "x"), ("g2", "y"), ("g3", "z")]


def test_queue_get_with_a_timeout_raises_empty_when_time_runs_out(virtual_clock):
    def main():
        try:
            Queue().get(timeout=2)
        except Empty:
            return virtual_clock.now()

    assert microthreads.run(main) == 2.0


def test_queue_put_with_a_timeout_raises_full_when_time_runs_out(virtual_clock):
    queue = Queue(maxsize=1)

    def main():
        queue.put("first")
        try:
            queue.put("second", timeout=2)
        except Full:
            return virtual_clock.now(), queue.qsize()

    assert microthreads.run(main) == (2.0, 1)


def test_queue_nowait_variants_raise_instead_of_waiting():
    queue = Queue(maxsize=1)
    with pytest.raises(Empty):
        queue.get_nowait()
    queue.put_nowait(1)
    with pytest.raises(Full):
        queue.put_nowait(2)
    with pytest.raises(Full):
        queue.put(2, block=False)
    assert queue.get_nowait() == 1
    with pytest.raises(Empty):
        queue.get(block=False)


def test_queue_empty_and_full_are_the_stdlib_exceptions():
    import queue

    assert (microthreads.Empty, microthreads.Full) == (queue.Empty, queue.Full)


def test_queue_join_waits_until_every_item_is_marked_done(virtual_clock):
    queue = Queue()
    events = []

    def worker():
        while True:
            item = queue.get()
            microthreads.sleep(1)
            events.append(f"done {item}")
            queue.task_done()

    def main():
        microthreads.spawn(worker)
        for item in "ab":
            queue.put(item)
        queue.join()
        events.append(f"joined at {virtual_clock.now()}")
        return queue.join()                    # nothing pending: at once

    assert microthreads.run(main) is True
    assert events == ["done a", "done b", "joined at 2.0"]


def test_queue_task_done_called_too_often_raises_value_error():
    queue = Queue()
    queue.put(1)
    queue.get()
    queue.task_done()
    with pytest.raises(ValueError):
        queue.task_done()


def test_an_item_handed_to_a_getter_that_is_killed_goes_to_the_next_getter():
    queue = Queue()
    events = []

    def getter(name):
        events.append((name, queue.get()))

    def main():
        first = microthreads.spawn(getter, "first")
        microthreads.spawn(getter, "second")
        microthreads.sleep(0)
        queue.put("item")                      # handed to first, which has not run yet
        first.kill()
        microthreads.sleep(0)
        events.append(("left in queue", queue.qsize()))

    microthreads.run(main)
    assert events == [("second", "item"), ("left in queue", 0)]


def test_an_item_handed_to_a_getter_that_is_killed_stays_first_in_the_queue():
    queue = Queue()

    def main():
        getter = microthreads.spawn(queue.get)
        microthreads.sleep(0)
        queue.put("handed")
        queue.put("second")
        getter.kill()
        return [queue.get_nowait(), queue.get_nowait()]

    assert microthreads.run(main) == ["handed", "second"]


def test_a_putter_killed_while_waiting_leaves_no_unfinished_task(virtual_clock):
    queue = Queue(maxsize=1)

    def main():
        queue.put("kept")
        putter = microthreads.spawn(queue.put, "dropped")
        microthreads.sleep(0)
        putter.kill()
        assert queue.get() == "kept"
        queue.task_done()
        return queue.join(timeout=5), virtual_clock.now(), queue.qsize()

    assert microthreads.run(main) == (True, 0.0, 0)


def test_a_putter_timed_out_leaves_no_unfinished_task(virtual_clock):
    queue = Queue(maxsize=1)

    def main():
        queue.put("kept")
        with pytest.raises(Full):
            queue.put("dropped", timeout=1)
        queue.get()
        queue.task_done()
        return queue.join(timeout=5), virtual_clock.now()

    assert microthreads.run(main) == (True, 1.0)


# -------------------------------------------------------------------- Channel


def test_channel_send_waits_until_a_receiver_takes_the_value():
    channel = Channel()
    events = []

    def sender():
        events.append("sending")
        channel.send("x")
        events.append("sent")

    def receiver():
        events.append(f"received {channel.receive()}")

    def main():
        microthreads.spawn(sender)
        microthreads.sleep(0)
        events.append(f"balance {channel.balance}")
        microthreads.spawn(receiver)
        microthreads.sleep(0)
        microthreads.sleep(0)

    microthreads.run(main)
    assert events == ["sending", "balance 1", "received x", "sent"]


def test_channel_receive_waits_until_a_sender_offers_a_value():
    channel = Channel()
    events = []

    def receiver():
        events.append("receiving")
        events.append(f"received {channel.receive()}")

    def main():
        microthreads.spawn(receiver)
        microthreads.sleep(0)
        events.append(f"balance {channel.balance}")
        channel.send("y")
        events.append("sent")
        microthreads.sleep(0)

    microthreads.run(main)
    assert events == ["receiving", "balance -1", "sent", "received y"]


def test_channel_serves_senders_and_receivers_in_arrival_order():
    channel = Channel()

    def main():
        for item in "abc":
            microthreads.spawn(channel.send, item)
        microthreads.sleep(0)
        return [channel.receive() for _ in range(3)]

    assert microthreads.run(main) == ["a", "b", "c"]


def test_channel_value_handed_to_a_killed_receiver_goes_to_the_next_receiver():
    channel = Channel()

    def main():
        first = microthreads.spawn(channel.receive)
        second = microthreads.spawn(channel.receive)
        microthreads.sleep(0)
        channel.send("value")
        first.kill()
        return second.get(), channel.balance

    assert microthreads.run(main) == ("value", 0)


def test_channel_value_handed_to_a_killed_receiver_waits_for_a_later_receiver():
    channel = Channel()

    def main():
        first = microthreads.spawn(channel.receive)
        microthreads.sleep(0)
        channel.send("value")
        first.kill()
        return channel.receive()

    assert microthreads.run(main) == "value"


def test_100000_timed_out_waits_on_one_event_leave_nothing_behind(virtual_clock):
    """A wait that times out leaves the Event's line: nothing piles up per wait
    (counted as live objects, so any leftover entry, list or greenlet shows)."""
    def main():
        event = microthreads.Event()
        for _ in range(1000):                 # warm up: caches, the line's first compaction
            event.wait(0.001)
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(100_000):
            assert event.wait(0.001) is False
        gc.collect()
        return len(gc.get_objects()) - before, event

    grown, event = microthreads.run(main)
    assert grown < 1000, f"{grown} objects left behind by 100,000 timed-out waits"
    assert repr(event) == "<Event unset waiters=0>"
    assert virtual_clock.now() >= 100.0       # each wait did time out, on the virtual clock
