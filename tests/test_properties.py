"""Property tests: the timer heap and the sync primitives against simple models.

Everything is observed through the public API, on a fresh hub per example
under ``microthreads.testing.VirtualClock``, so time is exact and free:

- timers: random actors run random scripts of ``sleep``, ``Timeout`` blocks,
  ``with_timeout``, ``spawn_later`` and kills of each other and of the
  tasklets they spawned later; what fires, when and in what order must equal
  a model that keeps the pending deadlines in a sorted list (ties: first
  armed, first fired) and runs the actors one at a time.
- Lock, Semaphore, Queue and Channel: random tasklets run random scripts of
  operations (blocking, non-blocking, with a timeout), with ``sleep(0)``
  yields in between and a killer tasklet that kills some of them at random
  moments. Every call and outcome goes into one log, in the order it
  happened; a model replays the log and says whether each outcome was the
  only one allowed: mutual exclusion, waiters served in arrival order, a
  release or a put handed straight to the first waiter (no barging), a
  waiter that timed out or was killed leaving without taking anything (and
  passing on whatever it had been handed), nothing lost, nothing
  duplicated, every count right, timeouts at exactly their deadline.
"""

import contextlib
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

import microthreads
from microthreads.testing import VirtualClock

PROPERTY = settings(max_examples=150, deadline=None)


@contextlib.contextmanager
def virtual_hub():
    """A new hub on a VirtualClock for one example; closed after it."""
    microthreads.get_hub().close()
    with VirtualClock() as clock:
        yield clock
    hub = microthreads.get_hub()
    counts = repr(hub)
    hub.close()
    assert "tasklets=0 ready=0 timers=0" in counts, f"left behind: {counts}"


# ------------------------------------------------------------------ timers

durations = st.integers(1, 12)


def steps_for(actors):
    kill_target = st.one_of(
        st.tuples(st.just("actor"), st.integers(0, actors - 1)),
        st.tuples(st.just("child"), st.integers(0, actors - 1), st.integers(0, 4)),
    )
    step = st.one_of(
        st.tuples(st.just("sleep"), durations),
        st.tuples(st.just("timeout"), durations, durations),
        st.tuples(st.just("with_timeout"), durations, durations),
        st.tuples(st.just("later"), durations),
        st.tuples(st.just("kill"), kill_target),
    )
    return st.lists(step, min_size=1, max_size=5)


timer_scripts = st.integers(1, 6).flatmap(lambda n: st.lists(steps_for(n), min_size=n,
                                                              max_size=n))


def timer_model(scripts):
    """What fires, in order: ``[(who, step, outcome, time)]``.

    Pending deadlines are kept in a sorted list of ``(deadline, armed, event)``
    (``armed`` counts up as timers are set, so ties fire first armed first);
    the actors run one at a time, as the hub runs tasklets, each until it
    waits. A kill makes every event of its target stale.
    """
    pending = []                  # sorted (deadline, armed, event)
    armed = 0
    fired = []
    now = 0
    pc = [0] * len(scripts)       # the step each actor is at
    alive = [True] * len(scripts)
    started = [False] * len(scripts)
    children = {}                 # (actor, step) -> alive

    def arm(deadline, event):
        nonlocal armed
        pending.append((deadline, armed, event))
        pending.sort()
        armed += 1

    def kill(target):
        if target[0] == "actor":
            alive[target[1]] = False      # before its start too: it never runs
        elif (target[1], target[2]) in children:
            children[(target[1], target[2])] = False

    def run(i):
        """Actor i from its current step until it waits or ends."""
        while alive[i] and pc[i] < len(scripts[i]):
            step = scripts[i][pc[i]]
            kind = step[0]
            if kind == "sleep":
                arm(now + step[1], ("wake", i, pc[i]))
                return
            if kind in ("timeout", "with_timeout"):
                arm(now + step[1], ("expire", i, pc[i]))     # the Timeout is set first
                arm(now + step[2], ("wake", i, pc[i]))
                return
            if kind == "later":
                children[(i, pc[i])] = True
                arm(now + step[1], ("child", i, pc[i]))
            elif kind == "kill" and step[1] != ("actor", i):
                kill(step[1])
            pc[i] += 1
        alive[i] = False

    for i in range(len(scripts)):
        if alive[i]:
            started[i] = True
            run(i)
    while pending:
        now, _, (what, i, at) = pending.pop(0)
        if what == "child":
            if children[(i, at)]:
                children[(i, at)] = False
                fired.append((("child", i, at), "started", now))
            continue
        if not alive[i] or pc[i] != at:
            continue                          # a stale event: killed, or that step is over
        outcome = "timed out" if what == "expire" else "slept"
        fired.append((i, at, outcome, now))
        pc[i] += 1
        run(i)
    return fired


def run_timer_scripts(scripts):
    fired = []
    actors = []
    children = {}
    with virtual_hub() as clock:

        def started_later(i, at):
            fired.append((("child", i, at), "started", clock.now()))

        def actor(i):
            for at, step in enumerate(scripts[i]):
                kind = step[0]
                if kind == "sleep":
                    microthreads.sleep(step[1])
                    fired.append((i, at, "slept", clock.now()))
                elif kind == "timeout":
                    try:
                        with microthreads.Timeout(step[1]) as timeout:
                            microthreads.sleep(step[2])
                        fired.append((i, at, "slept", clock.now()))
                    except microthreads.Timeout as exc:
                        assert exc is timeout
                        fired.append((i, at, "timed out", clock.now()))
                elif kind == "with_timeout":
                    result = microthreads.with_timeout(step[1], microthreads.sleep, step[2],
                                                       timeout_value="late")
                    outcome = "timed out" if result == "late" else "slept"
                    fired.append((i, at, outcome, clock.now()))
                elif kind == "later":
                    children[(i, at)] = microthreads.spawn_later(step[1], started_later, i, at)
                else:
                    target = step[1]
                    victim = actors[target[1]] if target[0] == "actor" else \
                        children.get((target[1], target[2]))
                    if victim is not None and victim is not microthreads.getcurrent():
                        victim.kill(block=False)

        actors.extend(microthreads.spawn(actor, i) for i in range(len(scripts)))
        microthreads.run()
    return fired


@PROPERTY
@given(timer_scripts)
def test_timers_fire_in_deadline_order_at_their_deadlines_as_a_sorted_model(scripts):
    assert run_timer_scripts(scripts) == timer_model(scripts)


def test_timers_due_at_one_instant_fire_in_the_order_they_were_armed():
    scripts = [[("sleep", 2)], [("timeout", 2, 2)], [("later", 2)], [("sleep", 2)]]
    expected = [(0, 0, "slept", 2), (1, 0, "timed out", 2), (("child", 2, 0), "started", 2),
                (3, 0, "slept", 2)]
    assert timer_model(scripts) == expected
    assert run_timer_scripts(scripts) == expected


def test_a_kill_at_the_instant_a_timer_is_due_wins_if_it_was_armed_first():
    scripts = [[("sleep", 3), ("kill", ("actor", 1))],     # armed before actor 1's timers
               [("timeout", 3, 3), ("sleep", 1)],
               [("later", 3), ("kill", ("child", 2, 0))]]  # killed before it starts
    expected = [(0, 0, "slept", 3)]
    assert timer_model(scripts) == expected
    assert run_timer_scripts(scripts) == expected


def test_a_hundred_thousand_cancelled_timeouts_leave_no_timer_behind():
    with virtual_hub() as clock:
        def main():
            for _ in range(100_000):
                with microthreads.Timeout(60):
                    pass
            microthreads.sleep(1)
            return repr(microthreads.get_hub())
        assert "timers=0" in microthreads.run(main)
        assert clock.now() == 1


# ------------------------------------------------------- sync: shared harness

#: How a blocking call is made: wait as long as needed, never, or at most t.
modes = st.one_of(st.just("block"), st.just("nowait"),
                  st.tuples(st.just("timeout"), st.integers(1, 3)))
yields = st.integers(0, 3)


def kill_plans(workers):
    """The killer's script: ``[(yields before, victim)]``."""
    return st.lists(st.tuples(st.integers(0, 8), st.integers(0, workers - 1)), max_size=3)


def call_with(mode, blocking_call, nowait_call):
    """``(outcome, value)`` of one call made as ``mode`` says."""
    if mode == "block":
        return blocking_call(None)
    if mode == "nowait":
        return nowait_call()
    return blocking_call(mode[1])


def hold_for(hold):
    """Yield ``hold[0]`` times, then sleep ``hold[1]`` virtual seconds."""
    for _ in range(hold[0]):
        microthreads.sleep(0)
    if hold[1]:
        microthreads.sleep(hold[1])


def run_workers(worker, scripts, kills, log, clock):
    """Spawn one tasklet per script and the killer; run until all are done.

    A worker killed inside a call logs ``("killed", i)`` (the kill passes
    through); ``DeadlockError`` (nothing left could wake it) logs
    ``("deadlocked", i)`` and ends that worker.
    """
    tasklets = []

    def guarded(i, script):
        try:
            worker(i, script)
        except microthreads.TaskletExit:
            log.append(("killed", i, clock.now()))
            raise
        except microthreads.DeadlockError:
            log.append(("deadlocked", i, clock.now()))

    def killer():
        for pause, victim in kills:
            for _ in range(pause):
                microthreads.sleep(0)
            if not tasklets[victim].dead:
                log.append(("kill", victim, clock.now()))
                tasklets[victim].kill(block=False)

    tasklets.extend(microthreads.spawn(guarded, i, s) for i, s in enumerate(scripts))
    microthreads.spawn(killer)
    microthreads.run()


class Replay:
    """Walks a log; ``fail()`` names the event that broke the model."""

    def __init__(self, log):
        self.log = log
        self.at = 0

    def __iter__(self):
        while self.at < len(self.log):
            event = self.log[self.at]
            self.at += 1
            yield event

    def peek(self):
        return self.log[self.at] if self.at < len(self.log) else None

    def expect_next(self, *prefix):
        """The next event must start with ``prefix`` (an outcome that comes at once)."""
        event = self.peek()
        assert event is not None and event[:len(prefix)] == prefix, self.fail(
            f"expected {prefix} at once")

    def fail(self, why):
        lo = max(0, self.at - 8)
        around = "\n".join(f"{'>' if n == self.at - 1 else ' '} {e}"
                           for n, e in enumerate(self.log[lo:self.at + 3], lo))
        return f"{why}, at event {self.at - 1}:\n{around}"


# -------------------------------------------------------------- Lock

#: (how to acquire, (yields, virtual seconds) while held, yields after)
lock_op = st.tuples(modes, st.tuples(yields, st.integers(0, 2)), yields)
lock_scripts = st.lists(st.lists(lock_op, max_size=4), min_size=1, max_size=5)


def run_lock(scripts, kills):
    log = []
    with virtual_hub() as clock:
        lock = microthreads.Lock()

        def worker(i, script):
            for mode, hold, after in script:
                log.append(("call", i, clock.now(), mode))
                taken = call_with(mode, lambda t: lock.acquire(timeout=t),
                                  lambda: lock.acquire(blocking=False))
                log.append(("got" if taken else "refused", i, clock.now(), lock.locked()))
                if taken:
                    try:
                        hold_for(hold)
                    finally:
                        log.append(("release", i, clock.now()))
                        lock.release()
                for _ in range(after):
                    microthreads.sleep(0)

        run_workers(worker, scripts, kills, log, clock)
        log.append(("end", -1, clock.now(), lock.locked()))
    return log


def check_lock(log):
    """One holder at most; FIFO hand-off; a timeout or a kill leaves the line."""
    replay = Replay(log)
    holder = None             # who has it (taken, or handed and not yet back)
    line = deque()            # waiting, in arrival order
    calls = {}                # i -> (time, mode) of its call in progress
    for event in replay:
        kind, i, now = event[:3]
        if kind == "call":
            calls[i] = (now, event[3])
            if holder is None:
                holder = i
                replay.expect_next("got", i)
            elif event[3] == "nowait":
                replay.expect_next("refused", i)
            else:
                line.append(i)
        elif kind == "got":
            assert holder == i and event[3], replay.fail("got it out of turn")
            calls.pop(i)
        elif kind == "refused":
            began, mode = calls.pop(i)
            if mode != "nowait":
                assert i in line, replay.fail("timed out though it had been handed the lock")
                line.remove(i)
                assert now == began + mode[1], replay.fail("timed out at the wrong time")
        elif kind == "release":
            assert holder == i, replay.fail("released by a non-holder")
            holder = line.popleft() if line else None
        elif kind in ("killed", "deadlocked"):
            if i in calls:                       # inside acquire()
                calls.pop(i)
                if holder == i:                  # handed, not yet back: passed on
                    holder = line.popleft() if line else None
                else:
                    assert i in line, replay.fail("killed out of nowhere")
                    line.remove(i)
            elif holder == i and kind == "killed":
                pass                             # its finally logs the release
        elif kind == "end":
            assert event[3] == (holder is not None), replay.fail("locked() is wrong")
            assert holder is None and not line, replay.fail("held or waited on at the end")


@PROPERTY
@given(lock_scripts, st.data())
def test_a_lock_is_mutually_exclusive_fifo_and_hands_off_without_barging(scripts, data):
    kills = data.draw(kill_plans(len(scripts)))
    check_lock(run_lock(scripts, kills))


def test_the_lock_model_catches_barging():
    log = [("call", 0, 0, "block"), ("got", 0, 0, True), ("call", 1, 0, "block"),
           ("release", 0, 0), ("call", 2, 0, "block"), ("got", 2, 0, True)]
    try:
        check_lock(log)
    except AssertionError as exc:
        assert "out of turn" in str(exc)
    else:
        raise AssertionError("the model let a newcomer barge in")


# -------------------------------------------------------------- Semaphore

semaphore_scripts = st.lists(st.lists(lock_op, max_size=4), min_size=1, max_size=6)


def run_semaphore(size, scripts, kills, bounded):
    log = []
    with virtual_hub() as clock:
        semaphore = (microthreads.BoundedSemaphore if bounded else microthreads.Semaphore)(size)

        def worker(i, script):
            for mode, hold, after in script:
                log.append(("call", i, clock.now(), mode))
                taken = call_with(mode, lambda t: semaphore.acquire(timeout=t),
                                  lambda: semaphore.acquire(blocking=False))
                log.append(("got" if taken else "refused", i, clock.now(), semaphore.value))
                if taken:
                    try:
                        hold_for(hold)
                    finally:
                        log.append(("release", i, clock.now()))
                        semaphore.release()
                for _ in range(after):
                    microthreads.sleep(0)

        run_workers(worker, scripts, kills, log, clock)
        log.append(("end", -1, clock.now(), semaphore.value))
        if bounded:
            try:
                semaphore.release()
            except ValueError:
                log.append(("over-release refused", -1, clock.now()))
    return log


def check_semaphore(size, log, bounded):
    replay = Replay(log)
    free = size
    holders = set()          # taken, or handed and not yet back
    line = deque()
    calls = {}
    for event in replay:
        kind, i, now = event[:3]
        if kind == "call":
            calls[i] = (now, event[3])
            if free > 0:
                assert not line, replay.fail("a free place with waiters in line")
                free -= 1
                holders.add(i)
                replay.expect_next("got", i)
            elif event[3] == "nowait":
                replay.expect_next("refused", i)
            else:
                line.append(i)
        elif kind == "got":
            assert i in holders and event[3] == free, replay.fail("got out of turn, or value")
            calls.pop(i)
        elif kind == "refused":
            began, mode = calls.pop(i)
            assert event[3] == free, replay.fail("value is wrong")
            if mode != "nowait":
                assert i in line, replay.fail("timed out though handed a place")
                line.remove(i)
                assert now == began + mode[1], replay.fail("timed out at the wrong time")
        elif kind in ("release", "killed", "deadlocked"):
            if kind == "release" or (i in calls and i in holders):
                assert i in holders, replay.fail("released without holding")
                calls.pop(i, None)
                holders.remove(i)
                if line:
                    holders.add(line.popleft())
                else:
                    free += 1
            elif i in calls:
                calls.pop(i)
                assert i in line, replay.fail("killed out of nowhere")
                line.remove(i)
        elif kind == "end":
            assert event[3] == free == size and not holders and not line, \
                replay.fail("places missing at the end")
    if bounded:
        assert log[-1][0] == "over-release refused"
    assert len(holders) <= size


@PROPERTY
@given(st.integers(1, 3), semaphore_scripts, st.booleans(), st.data())
def test_a_semaphore_counts_places_and_serves_waiters_fifo(size, scripts, bounded, data):
    kills = data.draw(kill_plans(len(scripts)))
    check_semaphore(size, run_semaphore(size, scripts, kills, bounded), bounded)


# -------------------------------------------------------------- Queue

queue_op = st.tuples(st.sampled_from(["put", "get"]), modes, yields)
queue_scripts = st.lists(st.lists(queue_op, max_size=5), min_size=1, max_size=5)


def run_queue(maxsize, scripts, kills):
    log = []
    with virtual_hub() as clock:
        queue = microthreads.Queue(maxsize)

        def worker(i, script):
            for n, (op, mode, after) in enumerate(script):
                if op == "put":
                    item = (i, n)
                    log.append(("put", i, clock.now(), mode, item))
                    try:
                        call_with(mode, lambda t, item=item: queue.put(item, timeout=t),
                                  lambda item=item: queue.put_nowait(item))
                        log.append(("put done", i, clock.now(), queue.qsize()))
                    except microthreads.Full:
                        log.append(("full", i, clock.now(), queue.qsize()))
                else:
                    log.append(("get", i, clock.now(), mode))
                    try:
                        item = call_with(mode, lambda t: queue.get(timeout=t), queue.get_nowait)
                        log.append(("got", i, clock.now(), item))
                    except microthreads.Empty:
                        log.append(("empty", i, clock.now(), queue.qsize()))
                for _ in range(after):
                    microthreads.sleep(0)

        run_workers(worker, scripts, kills, log, clock)
        left = []
        while not queue.empty():
            left.append(queue.get_nowait())
        log.append(("end", -1, clock.now(), left))
        # every item that went in was got: once each is marked done, join() returns
        for _ in range(sum(1 for e in log if e[0] == "got") + len(left)):
            queue.task_done()
        log.append(("joined", -1, clock.now(), microthreads.run(queue.join, 1)))
    return log


def check_queue(maxsize, log):
    """Items come out in the order their puts were called, to getters in the
    order their gets were called; none lost, none twice; Full and Empty only
    when they must be."""
    replay = Replay(log)
    items = deque()
    getters = deque()          # waiting getters
    putters = deque()          # waiting (putter, item)
    handed = {}                # getter -> the item handed to it, not yet back
    placed = set()             # putters whose waiting item went into the queue
    calls = {}
    delivered = []

    def hand(item):
        if getters:
            handed[getters.popleft()] = item
        else:
            items.appendleft(item)                 # given back: first again

    for event in replay:
        kind, i, now = event[:3]
        if kind == "put":
            mode, item = event[3], event[4]
            calls[i] = (now, mode, "put")
            if getters:
                handed[getters.popleft()] = item
                replay.expect_next("put done", i)
            elif maxsize <= 0 or len(items) < maxsize:
                items.append(item)
                replay.expect_next("put done", i)
            elif mode == "nowait":
                replay.expect_next("full", i)
            else:
                putters.append((i, item))
        elif kind == "put done":
            calls.pop(i)
            placed.discard(i)
            assert all(p != i for p, _ in putters), replay.fail("put done while waiting")
            assert event[3] == len(items), replay.fail("qsize is wrong")
        elif kind == "full":
            began, mode, _ = calls.pop(i)
            if mode != "nowait":
                entry = next((e for e in putters if e[0] == i), None)
                assert entry is not None, replay.fail("Full though its item went in")
                putters.remove(entry)
                assert now == began + mode[1], replay.fail("Full at the wrong time")
        elif kind == "get":
            mode = event[3]
            calls[i] = (now, mode, "get")
            if items:
                item = items.popleft()
                if putters:
                    putter, waiting_item = putters.popleft()
                    items.append(waiting_item)
                    placed.add(putter)
                handed[i] = item
                replay.expect_next("got", i)
            elif mode == "nowait":
                replay.expect_next("empty", i)
            else:
                getters.append(i)
        elif kind == "got":
            calls.pop(i)
            assert handed.pop(i, None) == event[3], replay.fail("got the wrong item")
            delivered.append(event[3])
        elif kind == "empty":
            began, mode, _ = calls.pop(i)
            if mode != "nowait":
                assert i in getters, replay.fail("Empty though handed an item")
                getters.remove(i)
                assert now == began + mode[1], replay.fail("Empty at the wrong time")
        elif kind in ("killed", "deadlocked") and i in calls:
            _, _, op = calls.pop(i)
            if op == "get":
                if i in handed:
                    hand(handed.pop(i))            # passed on, never lost
                else:
                    assert i in getters, replay.fail("killed out of nowhere")
                    getters.remove(i)
            elif i in placed:
                placed.discard(i)                  # its item is in: it stays
            else:
                entry = next((e for e in putters if e[0] == i), None)
                assert entry is not None, replay.fail("killed putter out of nowhere")
                putters.remove(entry)
        elif kind == "end":
            assert list(items) == event[3], replay.fail("the items left are wrong")
            assert not handed and not getters and not putters
        elif kind == "joined":
            assert event[3] is True, replay.fail("join() waits for items never put")
    puts = [e[4] for e in log if e[0] == "put"]
    assert len(set(delivered)) == len(delivered), "an item was delivered twice"
    assert set(delivered) <= set(puts)


@PROPERTY
@given(st.integers(0, 3), queue_scripts, st.data())
def test_a_queue_is_fifo_fair_and_loses_or_duplicates_nothing(maxsize, scripts, data):
    kills = data.draw(kill_plans(len(scripts)))
    check_queue(maxsize, run_queue(maxsize, scripts, kills))


# -------------------------------------------------------------- Channel

channel_op = st.tuples(st.sampled_from(["send", "receive"]), yields)
channel_scripts = st.lists(st.lists(channel_op, max_size=5), min_size=1, max_size=5)


def run_channel(scripts, kills):
    log = []
    with virtual_hub() as clock:
        channel = microthreads.Channel()

        def worker(i, script):
            for n, (op, after) in enumerate(script):
                if op == "send":
                    log.append(("send", i, clock.now(), (i, n)))
                    channel.send((i, n))
                    log.append(("sent", i, clock.now(), channel.balance))
                else:
                    log.append(("receive", i, clock.now()))
                    value = channel.receive()
                    log.append(("received", i, clock.now(), value))
                for _ in range(after):
                    microthreads.sleep(0)

        run_workers(worker, scripts, kills, log, clock)
        log.append(("end", -1, clock.now(), channel.balance))
    return log


def check_channel(log):
    """A send meets the first waiting receive, and the other way round; a value
    handed to a receiver that dies goes to the next receiver; nothing lost or
    duplicated; the balance counts waiting senders minus waiting receivers."""
    replay = Replay(log)
    senders = deque()          # (sender or None for a value given back, value)
    receivers = deque()
    handed = {}                # receiver -> value, not yet back
    taken = set()              # senders whose value a receiver took
    calls = {}
    received = []
    for event in replay:
        kind, i = event[:2]
        if kind == "send":
            calls[i] = "send"
            if receivers:
                handed[receivers.popleft()] = event[3]
                replay.expect_next("sent", i)
            else:
                senders.append((i, event[3]))
        elif kind == "sent":
            calls.pop(i)
            assert all(s != i for s, _ in senders), replay.fail("sent before a receive")
            taken.discard(i)
            # a value given back by a receiver that died waits as a sender would
            assert event[3] == len(senders) - len(receivers), replay.fail("balance is wrong")
        elif kind == "receive":
            calls[i] = "receive"
            if senders:
                sender, value = senders.popleft()
                if sender is not None:
                    taken.add(sender)
                handed[i] = value
                replay.expect_next("received", i)
            else:
                receivers.append(i)
        elif kind == "received":
            calls.pop(i)
            assert handed.pop(i, None) == event[3], replay.fail("received the wrong value")
            received.append(event[3])
        elif kind in ("killed", "deadlocked") and i in calls:
            op = calls.pop(i)
            if op == "receive":
                if i in handed:                    # redelivered, never lost
                    value = handed.pop(i)
                    if receivers:
                        handed[receivers.popleft()] = value
                    else:
                        senders.appendleft((None, value))
                else:
                    assert i in receivers, replay.fail("killed out of nowhere")
                    receivers.remove(i)
            elif i in taken:
                taken.discard(i)                   # its value went: it stays gone
            else:
                entry = next((e for e in senders if e[0] == i), None)
                assert entry is not None, replay.fail("killed sender out of nowhere")
                senders.remove(entry)
        elif kind == "end":
            assert not handed and not receivers
            assert event[3] == len(senders), replay.fail("balance is wrong at the end")
    assert len(set(received)) == len(received), "a value was received twice"


@PROPERTY
@given(channel_scripts, st.data())
def test_a_channel_pairs_senders_and_receivers_in_arrival_order(scripts, data):
    kills = data.draw(kill_plans(len(scripts)))
    check_channel(run_channel(scripts, kills))
