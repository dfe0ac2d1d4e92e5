"""The hub: scheduling order, run(), deadlock reports, Ctrl-C, threads, descriptors."""

import gc
import os
import signal
import sys
import threading

import pytest

import microthreads


def next_line():
    """The line number of the caller's next line (where it is about to block)."""
    return sys._getframe(1).f_lineno + 1


# ------------------------------------------------------------------ scheduling


def test_tasklets_looping_on_sleep_zero_interleave_in_order():
    events = []

    def loop(name):
        for i in range(3):
            events.append(f"{name}{i}")
            microthreads.sleep(0)

    for name in "abc":
        microthreads.spawn(loop, name)
    microthreads.run()
    assert events == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


def test_sleep_zero_lets_a_tasklet_spawned_meanwhile_run_before_resuming():
    events = []

    def newcomer():
        events.append("newcomer")

    def main():
        microthreads.spawn(newcomer)
        events.append("spawned")
        microthreads.sleep(0)
        events.append("resumed")

    microthreads.run(main)
    assert events == ["spawned", "newcomer", "resumed"]


# ------------------------------------------------------------------------ run()


def test_run_returns_the_value_of_its_function():
    assert microthreads.run(lambda a, b=0: a + b, 2, b=3) == 5


def test_run_raises_the_exception_its_function_ended_with(caplog):
    def fail():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        microthreads.run(fail)
    assert caplog.records == []           # raised to the caller, so not logged


def test_run_returns_only_after_the_function_tasklets_finish_hooks_ran():
    events = []

    def main():
        microthreads.on_finish(events.append, "hook")
        return "value"

    assert microthreads.run(main) == "value"
    assert events == ["hook"]


def test_run_without_a_function_runs_until_nothing_is_left(virtual_clock):
    events = []

    def sleeper(seconds):
        microthreads.sleep(seconds)
        events.append((seconds, virtual_clock.now()))

    tasklets = [microthreads.spawn(sleeper, s) for s in (3, 1, 2)]
    assert microthreads.run() is None
    assert events == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert [t.dead for t in tasklets] == [True, True, True]


def test_run_without_a_function_returns_at_once_when_nothing_was_spawned():
    assert microthreads.run() is None


def test_run_can_be_called_again_after_it_returned():
    assert microthreads.run(lambda: 1) == 1
    assert microthreads.run(lambda: 2) == 2


def test_run_called_inside_a_tasklet_raises_runtime_error():
    errors = []

    def main():
        for call in (lambda: microthreads.run(lambda: None), microthreads.run,
                     microthreads.get_hub().tick):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))

    microthreads.run(main)
    assert len(errors) == 3
    assert "not re-entrant" in errors[0]
    assert "not re-entrant" in errors[1]
    assert "inside a tasklet" in errors[2]


def test_the_main_greenlet_may_wait_outside_run_while_the_hub_serves_tasklets():
    event = microthreads.Event()
    microthreads.spawn(event.set)
    assert event.wait() is True           # no run(): the wait itself drives the hub


def test_close_makes_the_thread_get_a_new_hub_next_time():
    hub = microthreads.get_hub()
    hub.close()
    assert microthreads.get_hub() is not hub
    assert microthreads.run(lambda: "still works") == "still works"


# -------------------------------------------------------------------- deadlock


def test_deadlock_in_run_fn_raises_naming_every_blocked_tasklet_its_wait_and_where():
    event, queue = microthreads.Event(), microthreads.Queue()
    lines = {}

    def consumer():
        lines["consumer"] = next_line()
        queue.get()

    def waiter():
        lines["waiter"] = next_line()
        event.wait()

    def main():
        c = microthreads.spawn(consumer)
        c.name = "consumer"
        microthreads.spawn(waiter).name = "waiter"
        microthreads.getcurrent().name = "main"
        lines["main"] = next_line()
        c.join()

    with pytest.raises(microthreads.DeadlockError) as info:
        microthreads.run(main)
    header, *waits = str(info.value).splitlines()
    assert header == "nothing left can wake these tasklets:"
    assert sorted(waits) == sorted([
        f"  <Tasklet 'consumer' waiting> waits on Queue.get() at {__file__}:{lines['consumer']}",
        f"  <Tasklet 'waiter' waiting> waits on Event.wait() at {__file__}:{lines['waiter']}",
        f"  <Tasklet 'main' waiting> waits on Tasklet.join() on <Tasklet 'consumer' waiting>"
        f" at {__file__}:{lines['main']}",
    ])


def test_deadlock_in_run_without_fn_ends_each_blocked_tasklet_with_deadlock_error(caplog):
    lock = microthreads.Lock()
    lock.acquire()
    lines = {}

    def locker():
        lines["locker"] = next_line()
        lock.acquire()

    def receiver():
        lines["receiver"] = next_line()
        microthreads.Channel().receive()

    tasklets = [microthreads.spawn(locker), microthreads.spawn(receiver)]
    tasklets[0].name, tasklets[1].name = "locker", "receiver"
    microthreads.run()
    assert [type(t.exception) for t in tasklets] == [microthreads.DeadlockError] * 2
    message = str(tasklets[0].exception)
    assert message == str(tasklets[1].exception)
    assert f"<Tasklet 'locker' waiting> waits on Lock.acquire() at {__file__}:" \
           f"{lines['locker']}" in message
    assert f"<Tasklet 'receiver' waiting> waits on Channel.receive() at {__file__}:" \
           f"{lines['receiver']}" in message
    # nobody joined them: each death is reported once
    assert sorted(r.getMessage() for r in caplog.records) == [
        "Tasklet 'locker' crashed with DeadlockError (nobody joined it):",
        "Tasklet 'receiver' crashed with DeadlockError (nobody joined it):",
    ]


def _blocked_children(count):
    event = microthreads.Event()
    children = [microthreads.spawn(event.wait) for _ in range(count)]
    for number, child in enumerate(children):
        child.name = f"child {number}"
    return children


def test_a_deadlock_of_tasklets_main_joins_is_reported_once_by_run_not_logged(caplog):
    def main():
        microthreads.joinall(_blocked_children(6))

    with pytest.raises(microthreads.DeadlockError) as info:
        microthreads.run(main)
    assert len(str(info.value).splitlines()) == 1 + 7      # main and its six children
    assert [r.getMessage() for r in caplog.records] == []  # none "crashed (nobody joined it)"


def test_a_deadlock_of_tasklets_the_main_greenlet_joins_is_raised_there_once(caplog):
    children = _blocked_children(6)
    with pytest.raises(microthreads.DeadlockError) as info:
        microthreads.joinall(children)
    assert "<main greenlet" in str(info.value)
    microthreads.run()
    assert [type(child.exception) for child in children] == [microthreads.DeadlockError] * 6
    assert [r.getMessage() for r in caplog.records] == []


def test_deadlock_names_the_wait_of_a_tasklet_spawned_directly_on_a_runtime_call():
    queue = microthreads.Queue()
    lines = {}

    def main():
        getter = microthreads.spawn(queue.get)
        getter.name = "getter"
        microthreads.getcurrent().name = "main"
        lines["main"] = next_line()
        getter.join()

    with pytest.raises(microthreads.DeadlockError) as info:
        microthreads.run(main)
    assert sorted(str(info.value).splitlines()[1:]) == [
        "  <Tasklet 'getter' waiting> waits on Queue.get() at its start (spawned on it directly)",
        f"  <Tasklet 'main' waiting> waits on Tasklet.join() on <Tasklet 'getter' waiting>"
        f" at {__file__}:{lines['main']}",
    ]


def test_a_tasklet_that_catches_deadlock_error_may_go_on():
    def main():
        try:
            microthreads.Event().wait()
        except microthreads.DeadlockError:
            return "recovered"

    assert microthreads.run(main) == "recovered"


def test_the_main_greenlet_waiting_on_nothing_gets_deadlock_error():
    with pytest.raises(microthreads.DeadlockError, match=r"waits on Event\.wait\(\)"):
        microthreads.Event().wait()


def test_a_pending_timer_is_not_a_deadlock(virtual_clock):
    event = microthreads.Event()
    microthreads.spawn_later(60, event.set)
    assert microthreads.run(event.wait) is True
    assert virtual_clock.now() == 60.0


# ------------------------------------------------------------------ Ctrl-C


pytestmark_main_thread = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signals are delivered to the main thread only")


@pytestmark_main_thread
def test_ctrl_c_from_a_tasklet_is_raised_to_runs_caller_and_a_second_run_goes_on():
    events = []

    def worker():
        for i in range(3):
            events.append(f"worker {i}")
            microthreads.sleep(0)

    def interrupter():
        events.append("SIGINT")
        os.kill(os.getpid(), signal.SIGINT)
        microthreads.sleep(0)
        events.append("interrupter resumed")

    w = microthreads.spawn(worker)
    microthreads.spawn(interrupter)
    with pytest.raises(KeyboardInterrupt):
        microthreads.run()
    events.append("KeyboardInterrupt")
    assert not w.dead
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    microthreads.run()
    assert events == ["worker 0", "SIGINT", "KeyboardInterrupt", "worker 1",
                      "interrupter resumed", "worker 2"]
    assert w.dead


@pytestmark_main_thread
def test_ctrl_c_among_busy_tasklets_is_raised_at_the_end_of_that_iteration():
    steps = []

    def worker():
        for i in range(100):
            steps.append(i)
            microthreads.sleep(0)

    def interrupter():
        for _ in range(50):
            microthreads.sleep(0)
        os.kill(os.getpid(), signal.SIGINT)   # in the 51st iteration

    microthreads.spawn(worker)
    microthreads.spawn(interrupter)
    with pytest.raises(KeyboardInterrupt):
        microthreads.run()
    assert len(steps) == 51
    microthreads.run()
    assert len(steps) == 100


@pytestmark_main_thread
def test_ctrl_c_wakes_a_hub_sleeping_in_its_poll_at_once():
    event = microthreads.Event()

    def waiter():
        threading.Timer(0.005, os.kill, (os.getpid(), signal.SIGINT)).start()
        return event.wait(timeout=30)       # real time: only the signal can end it early

    t = microthreads.spawn(waiter)
    with pytest.raises(KeyboardInterrupt):
        microthreads.run()
    assert not t.dead
    event.set()
    microthreads.run()
    assert t.value is True


@pytestmark_main_thread
def test_ctrl_c_during_run_fn_leaves_fn_running_for_the_next_run():
    def main():
        os.kill(os.getpid(), signal.SIGINT)
        microthreads.sleep(0)
        return "done"

    with pytest.raises(KeyboardInterrupt):
        microthreads.run(main)
    microthreads.run()                    # the rest of main's work
    assert microthreads.run(lambda: "hub usable") == "hub usable"


# ----------------------------------------------------------------- threads


def test_using_a_hub_from_another_thread_raises_runtime_error_saying_so():
    hub = microthreads.get_hub()
    tasklet = microthreads.spawn(microthreads.sleep, 0)
    errors = []

    def elsewhere():
        for call in (hub.tick, tasklet.join, tasklet.kill):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert len(errors) == 3
    for message in errors:
        assert f"this hub belongs to thread {threading.get_ident()}, not to thread" in message
        assert "call_soon_threadsafe" in message
    microthreads.run()
    assert tasklet.successful()


def test_each_thread_gets_its_own_hub():
    hubs = {}

    def elsewhere():
        hubs["thread"] = microthreads.get_hub()
        hubs["value"] = microthreads.run(lambda: "ran in the thread")
        microthreads.get_hub().close()

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert hubs["value"] == "ran in the thread"
    assert hubs["thread"] is not microthreads.get_hub()


# --------------------------------------------------------------- descriptors


def test_wait_readable_returns_when_data_arrives(socket_pair):
    a, b = socket_pair
    events = []

    def reader():
        events.append("waiting")
        microthreads.get_hub().wait_readable(a.fileno())
        events.append(a.recv(100))

    def writer():
        events.append("sending")
        b.send(b"ping")

    microthreads.spawn(reader)
    microthreads.spawn(writer)
    microthreads.run()
    assert events == ["waiting", "sending", b"ping"]


def test_wait_readable_returns_false_when_its_timeout_passes(socket_pair, virtual_clock):
    a, _ = socket_pair
    assert microthreads.run(microthreads.get_hub().wait_readable, a.fileno(), 2) is False
    assert virtual_clock.now() == 2.0


def test_a_second_reader_of_one_descriptor_gets_a_clear_error(socket_pair):
    a, b = socket_pair
    hub = microthreads.get_hub()

    def main():
        first = microthreads.spawn(hub.wait_readable, a.fileno())
        microthreads.sleep(0)
        with pytest.raises(RuntimeError, match="one reader at a time"):
            hub.wait_readable(a.fileno())
        b.send(b"x")
        return first.get()

    assert microthreads.run(main) is True


def test_a_tasklet_waiting_on_a_descriptor_is_not_a_deadlock(socket_pair):
    a, b = socket_pair

    def reader():
        threading.Timer(0.005, b.send, (b"late",)).start()   # a plain thread, unknown to the hub
        microthreads.get_hub().wait_readable(a.fileno())
        return a.recv(10)

    assert microthreads.run(reader) == b"late"


def test_close_kills_the_tasklets_still_alive_so_their_finally_blocks_and_hooks_run():
    events = []
    hub = microthreads.get_hub()

    def waits_forever(name):
        microthreads.on_finish(events.append, f"{name}: finish hook")
        try:
            microthreads.Event().wait()
        finally:
            events.append(f"{name}: finally")

    def main():
        microthreads.spawn(waits_forever, "a")
        microthreads.spawn(waits_forever, "b")
        microthreads.spawn_later(60, events.append, "never started, never runs")
        microthreads.sleep(0)                    # a and b are waiting now

    microthreads.run(main)
    hub.close()
    assert sorted(events) == ["a: finally", "a: finish hook", "b: finally", "b: finish hook"]
    for name in "ab":                            # the hub kills them in no set order
        assert events.index(f"{name}: finally") < events.index(f"{name}: finish hook")
    assert microthreads.get_hub() is not hub


def test_close_abandons_a_tasklet_that_waits_again_after_its_kill():
    events = []
    hub = microthreads.get_hub()

    def stubborn():
        try:
            microthreads.Event().wait()
        except microthreads.TaskletExit:
            events.append("killed, waits again")
            microthreads.Event().wait()          # nothing can wake it: close() goes on
        events.append("never")

    def main():
        microthreads.spawn(stubborn)
        microthreads.sleep(0)

    microthreads.run(main)
    hub.close()
    assert events == ["killed, waits again"]


def _open_descriptors():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")
def test_200_threads_that_each_got_a_hub_and_ended_leave_no_descriptor_open():
    """A plain thread's first sleep() makes it a hub (a poller and a wake pipe);
    the thread ends without close(): its descriptors go with it."""
    def one_call():
        microthreads.sleep(0)                 # this thread's hub, made and run once

    microthreads.get_hub()                    # the main thread's own, made before counting
    gc.collect()                              # earlier tests' dropped hubs close now, not mid-count
    before = _open_descriptors()
    for _ in range(20):
        threads = [threading.Thread(target=one_call) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert _open_descriptors() == before
