"""Tasklets: spawn, join/get, error reporting, kill, finish hooks, context."""

import contextvars
import threading

import pytest

import microthreads


def crash_records(caplog):
    return [r for r in caplog.records if r.name == "microthreads"]


# --------------------------------------------------------------------- spawn


def test_spawn_returns_at_once_and_tasklets_start_in_spawn_order():
    events = []

    def main():
        tasklets = [microthreads.spawn(events.append, name) for name in "abc"]
        events.append("spawned")
        microthreads.joinall(tasklets)

    microthreads.run(main)
    assert events == ["spawned", "a", "b", "c"]


def test_spawn_passes_positional_and_keyword_arguments():
    def main():
        return microthreads.spawn(lambda a, b, *, c: (a, b, c), 1, 2, c=3).get()

    assert microthreads.run(main) == (1, 2, 3)


@pytest.mark.parametrize("count", range(6))
def test_spawn_passes_any_number_of_positional_arguments_in_order(count):
    args = tuple(range(10, 10 + count))

    def main():
        return microthreads.spawn(lambda *got, **named: (got, named), *args).get()

    assert microthreads.run(main) == (args, {})


def test_spawn_later_starts_the_tasklet_after_its_delay(virtual_clock):
    def main():
        return microthreads.spawn_later(5, virtual_clock.now).get()

    assert microthreads.run(main) == 5.0


def test_a_tasklet_is_named_after_its_function_and_the_name_is_settable():
    def worker():
        pass

    tasklet = microthreads.spawn(worker)
    assert tasklet.name.endswith("worker")
    tasklet.name = "member alice"
    assert tasklet.name == "member alice"
    assert repr(tasklet) == "<Tasklet 'member alice' not started>"
    microthreads.run()
    assert repr(tasklet) == "<Tasklet 'member alice' dead>"


def test_getcurrent_is_the_running_tasklet():
    def main():
        child = microthreads.spawn(microthreads.getcurrent)
        return child.get() is child, microthreads.getcurrent().name

    assert microthreads.run(main) == (True, main.__qualname__)


# -------------------------------------------------------------- join and get


def test_get_returns_the_value_and_join_returns_true_once_ended():
    def main():
        tasklet = microthreads.spawn(lambda: 42)
        return tasklet.join(), tasklet.get(), tasklet.dead, tasklet.successful()

    assert microthreads.run(main) == (True, 42, True, True)


def test_join_with_a_timeout_returns_false_when_time_runs_out(virtual_clock):
    def main():
        sleeper = microthreads.spawn(microthreads.sleep, 10)
        return sleeper.join(timeout=3), virtual_clock.now(), sleeper.dead

    assert microthreads.run(main) == (False, 3.0, False)


def test_get_with_a_timeout_raises_timeout_when_time_runs_out(virtual_clock):
    def main():
        sleeper = microthreads.spawn(microthreads.sleep, 10)
        try:
            sleeper.get(timeout=3)
        except microthreads.Timeout:
            return "timed out", virtual_clock.now()

    assert microthreads.run(main) == ("timed out", 3.0)


def test_a_tasklet_cannot_join_itself():
    def main():
        with pytest.raises(RuntimeError, match="cannot join itself"):
            microthreads.getcurrent().join()

    microthreads.run(main)


def test_joinall_waits_for_every_tasklet_and_returns_those_that_ended(virtual_clock):
    def main():
        quick = microthreads.spawn(microthreads.sleep, 1)
        slow = microthreads.spawn(microthreads.sleep, 10)
        done = microthreads.joinall([quick, slow], timeout=5)
        return done == [quick], virtual_clock.now(), microthreads.joinall([quick, slow])

    same, now, done = microthreads.run(main)
    assert (same, now, len(done)) == (True, 5.0, 2)


def test_joinall_with_raise_error_raises_the_first_failure_without_logging_it(caplog):
    def fail():
        raise KeyError("first")

    def main():
        tasklets = [microthreads.spawn(microthreads.sleep, 0), microthreads.spawn(fail)]
        with pytest.raises(KeyError, match="first"):
            microthreads.joinall(tasklets, raise_error=True)

    microthreads.run(main)
    assert crash_records(caplog) == []


def test_killall_kills_every_tasklet_and_waits_for_them(virtual_clock):
    def main():
        sleepers = [microthreads.spawn(microthreads.sleep, 60) for _ in range(3)]
        microthreads.sleep(0)
        microthreads.killall(sleepers)
        return [s.dead for s in sleepers], virtual_clock.now()

    assert microthreads.run(main) == ([True, True, True], 0.0)


def test_100000_tasklets_are_spawned_and_joined():
    def main():
        tasklets = [microthreads.spawn(lambda i: i * 2, i) for i in range(100_000)]
        microthreads.joinall(tasklets)
        return [t.value for t in tasklets]

    assert microthreads.run(main) == [i * 2 for i in range(100_000)]


# ---------------------------------------------------------- error reporting


def test_an_error_is_logged_once_with_its_traceback_when_the_tasklet_dies(caplog):
    events = []

    def crash():
        raise ValueError("boom")

    def main():
        tasklet = microthreads.spawn(crash)
        tasklet.name = "worker"
        microthreads.sleep(0)                  # worker runs and dies: reported now
        events.append(len(crash_records(caplog)))
        microthreads.sleep(0)
        events.append(tasklet.join())          # joining later reports nothing again
        for _ in range(2):
            try:
                tasklet.get()
            except ValueError as exc:
                events.append(exc is tasklet.exception)
        events.append(len(crash_records(caplog)))

    microthreads.run(main)
    assert events == [1, True, True, True, 1]
    [record] = crash_records(caplog)
    assert record.levelname == "ERROR"
    assert record.getMessage() == "Tasklet 'worker' crashed with ValueError (nobody joined it):"
    assert record.exc_info[0] is ValueError
    assert "Traceback (most recent call last)" in caplog.text
    assert 'raise ValueError("boom")' in caplog.text


def test_an_error_is_not_logged_when_a_tasklet_already_waits_on_it(caplog):
    def crash():
        microthreads.sleep(0)
        raise ValueError("boom")

    def main():
        tasklet = microthreads.spawn(crash)
        with pytest.raises(ValueError, match="boom"):
            tasklet.get()
        return tasklet.dead, tasklet.successful(), type(tasklet.exception)

    assert microthreads.run(main) == (True, False, ValueError)
    assert crash_records(caplog) == []


def test_an_error_ends_its_tasklet_only_and_the_others_go_on(caplog):
    events = []

    def crash():
        raise ValueError("boom")

    def steady():
        for i in range(3):
            events.append(i)
            microthreads.sleep(0)

    microthreads.spawn(crash)
    microthreads.spawn(steady)
    microthreads.run()
    assert events == [0, 1, 2]
    assert len(crash_records(caplog)) == 1


# ---------------------------------------------------------------------- kill


def _blocking_cases():
    """name -> make(): returns (block, check_after) for one way to be blocked."""

    def sleep():
        def check():
            assert microthreads.get_hub().next_deadline() is None   # its timer is gone
        return lambda: microthreads.sleep(60), check

    def lock():
        lock = microthreads.Lock()
        lock.acquire()

        def check():
            lock.release()
            assert lock.acquire(blocking=False)    # not handed to the dead tasklet
        return lock.acquire, check

    def queue_get():
        queue = microthreads.Queue()

        def check():
            queue.put("item")
            assert queue.get_nowait() == "item"    # not handed to the dead getter
        return queue.get, check

    def queue_put():
        queue = microthreads.Queue(maxsize=1)
        queue.put("first")

        def check():
            assert queue.get_nowait() == "first"
            with pytest.raises(microthreads.Empty):
                queue.get_nowait()                 # the killed put never happened
        return lambda: queue.put("second"), check

    def channel_receive():
        channel = microthreads.Channel()

        def check():
            assert channel.balance == 0
        return channel.receive, check

    def channel_send():
        channel = microthreads.Channel()

        def check():
            assert channel.balance == 0
        return lambda: channel.send("never"), check

    def event():
        event = microthreads.Event()

        def check():
            event.set()
            assert event.wait() is True
        return event.wait, check

    def join():
        other = microthreads.spawn(microthreads.sleep, 60)

        def check():
            assert not other.dead
            other.kill()
        return other.join, check

    def run_in_thread():
        gate = threading.Event()
        return lambda: microthreads.run_in_thread(gate.wait), gate.set

    def socket_wait():
        import socket
        a, b = socket.socketpair()

        def check():
            b.send(b"x")                           # no stale reader is woken;
            assert microthreads.get_hub().wait_readable(a.fileno()) is True   # the slot is free
            a.close()
            b.close()
        return lambda: microthreads.get_hub().wait_readable(a.fileno()), check

    return {f.__name__: f for f in (sleep, lock, queue_get, queue_put, channel_receive,
                                    channel_send, event, join, run_in_thread, socket_wait)}


BLOCKING = _blocking_cases()


@pytest.mark.parametrize("blocked_in", sorted(BLOCKING))
def test_kill_ends_a_tasklet_blocked_in(blocked_in, virtual_clock, caplog):
    events = []
    block, check_after = BLOCKING[blocked_in]()

    def victim():
        events.append("blocked")
        try:
            block()
            events.append("woke up")
        finally:
            events.append("unwound")

    def main():
        tasklet = microthreads.spawn(victim)
        microthreads.sleep(0)
        tasklet.kill()
        events.append("killed")
        check_after()
        return tasklet

    tasklet = microthreads.run(main)
    assert events == ["blocked", "unwound", "killed"]
    assert (tasklet.dead, tasklet.successful(), tasklet.value, tasklet.exception,
            tasklet.get()) == (True, True, None, None, None)
    assert virtual_clock.now() == 0.0
    assert crash_records(caplog) == []


def test_kill_before_start_never_runs_the_tasklet_but_runs_its_finish_hooks(caplog):
    events = []
    tasklet = microthreads.spawn(events.append, "ran")
    tasklet.on_finish(events.append, "hook")
    tasklet.kill()
    assert tasklet.dead
    microthreads.run()
    assert events == ["hook"]
    assert (tasklet.successful(), tasklet.value, tasklet.exception) == (True, None, None)
    assert crash_records(caplog) == []


def test_kill_before_a_delayed_start_cancels_the_start(virtual_clock):
    events = []
    tasklet = microthreads.spawn_later(5, events.append, "ran")
    tasklet.kill()
    microthreads.run()
    assert events == []
    assert virtual_clock.now() == 0.0        # no timer was left to wait for


def test_kill_leaves_no_timer_that_fires_later(virtual_clock):
    events = []
    hub = microthreads.get_hub()

    def victim():
        try:
            microthreads.sleep(5)
        except microthreads.TaskletExit:
            events.append(("killed", virtual_clock.now()))
            event = microthreads.Event()
            events.append(("waited", event.wait(timeout=10), virtual_clock.now()))

    def main():
        tasklet = microthreads.spawn(victim)
        microthreads.sleep(1)
        tasklet.kill(block=False)
        microthreads.sleep(0)
        events.append(("next deadline", hub.next_deadline()))
        tasklet.join()

    microthreads.run(main)
    # a stale wake-up at t=5 would have ended the second wait early
    assert events == [("killed", 1.0), ("next deadline", 11.0), ("waited", False, 11.0)]


@pytest.mark.parametrize("exc", [ValueError, ValueError("given")], ids=["class", "instance"])
def test_kill_with_an_error_ends_the_tasklet_failed_with_that_error(exc, caplog):
    events = []

    def victim():
        try:
            microthreads.sleep(60)
        except ValueError as error:
            events.append(error)
            raise

    def main():
        tasklet = microthreads.spawn(victim)
        microthreads.sleep(0)
        tasklet.kill(exc)
        return tasklet

    tasklet = microthreads.run(main)
    assert tasklet.dead and not tasklet.successful()
    assert events == [tasklet.exception]
    assert isinstance(tasklet.exception, ValueError)
    if not isinstance(exc, type):
        assert tasklet.exception is exc
    with pytest.raises(ValueError):
        tasklet.get()
    assert crash_records(caplog) == []       # the killer waited for it: not a lost error


def test_kill_with_an_error_before_start_fails_the_tasklet_without_running_it(caplog):
    events = []
    tasklet = microthreads.spawn(events.append, "ran")
    tasklet.kill(KeyError("stop"))
    microthreads.run()
    assert events == []
    assert (tasklet.dead, tasklet.successful(), repr(tasklet.exception)) == \
        (True, False, "KeyError('stop')")
    assert crash_records(caplog) == []


def test_kill_without_block_returns_before_the_tasklet_has_ended():
    events = []

    def main():
        tasklet = microthreads.spawn(microthreads.sleep, 60)
        microthreads.sleep(0)
        tasklet.kill(block=False)
        events.append(tasklet.dead)
        tasklet.join()
        events.append(tasklet.dead)

    microthreads.run(main)
    assert events == [False, True]


def test_a_tasklet_may_catch_taskletexit_and_clean_up_before_it_ends(virtual_clock):
    events = []

    def victim():
        try:
            microthreads.sleep(60)
        except microthreads.TaskletExit:
            microthreads.sleep(1)              # cleaning up may still wait
            events.append(("cleaned up", virtual_clock.now()))
            raise

    def main():
        tasklet = microthreads.spawn(victim)
        microthreads.sleep(0)
        tasklet.kill()
        events.append(("kill returned", tasklet.dead))

    microthreads.run(main)
    assert events == [("cleaned up", 1.0), ("kill returned", True)]


def test_killing_a_dead_tasklet_does_nothing():
    def main():
        tasklet = microthreads.spawn(lambda: "value")
        tasklet.join()
        tasklet.kill(ValueError)
        return tasklet.get()

    assert microthreads.run(main) == "value"


def test_taskletexit_is_a_greenletexit_and_not_an_exception():
    import greenlet

    assert issubclass(microthreads.TaskletExit, greenlet.GreenletExit)
    assert not issubclass(microthreads.TaskletExit, Exception)


# ------------------------------------------------------------- finish hooks


def test_finish_hooks_run_once_in_order_after_death_in_the_hubs_next_iteration():
    events = []

    def dying():
        events.append("dying returns")

    def sibling():
        events.append("sibling runs")          # ready in the same iteration as the death

    def hook(name):
        current = microthreads.getcurrent()
        events.append((name, tasklet.dead, current is tasklet))

    tasklet = microthreads.spawn(dying)
    tasklet.on_finish(hook, "first")
    tasklet.on_finish(hook, "second")
    microthreads.spawn(sibling)
    microthreads.run()
    assert events == ["dying returns", "sibling runs",
                      ("first", True, False), ("second", True, False)]


@pytest.mark.parametrize("ending", ["returns", "raises", "is killed", "is killed unstarted"])
def test_finish_hooks_run_however_the_tasklet_ends(ending):
    events = []

    def body():
        microthreads.on_finish(events.append, "added inside")
        if ending == "raises":
            raise ValueError("boom")
        if ending == "is killed":
            microthreads.sleep(60)

    def main():
        tasklet = microthreads.spawn(body)
        tasklet.on_finish(events.append, "added by spawner")
        if ending != "is killed unstarted":
            microthreads.sleep(0)
        if ending.startswith("is killed"):
            tasklet.kill()
        tasklet.join()

    microthreads.run(main)
    if ending == "is killed unstarted":
        assert events == ["added by spawner"]
    else:
        assert events == ["added by spawner", "added inside"]


def test_a_raising_finish_hook_is_logged_and_the_rest_still_run(caplog):
    events = []

    def bad_hook():
        raise RuntimeError("hook failed")

    tasklet = microthreads.spawn(lambda: None)
    tasklet.on_finish(events.append, "before")
    tasklet.on_finish(bad_hook)
    tasklet.on_finish(events.append, "after")
    microthreads.run()
    assert events == ["before", "after"]
    [record] = crash_records(caplog)
    assert "finish hook" in record.getMessage()
    assert record.exc_info[0] is RuntimeError


@pytest.mark.parametrize("block", ["sleep(0)", "sleep(1)", "Event.wait()", "join()"])
def test_a_finish_hook_that_tries_to_block_gets_a_runtime_error_saying_why(block, caplog):
    sleeper = microthreads.spawn(microthreads.sleep, 60)
    calls = {"sleep(0)": lambda: microthreads.sleep(0), "sleep(1)": lambda: microthreads.sleep(1),
             "Event.wait()": lambda: microthreads.Event().wait(), "join()": sleeper.join}
    tasklet = microthreads.spawn(lambda: None)
    tasklet.on_finish(calls[block])
    tasklet.on_finish(sleeper.kill, microthreads.TaskletExit, False)
    microthreads.run()
    [record] = crash_records(caplog)
    assert record.exc_info[0] is RuntimeError
    assert "the hub cannot wait" in str(record.exc_info[1])
    assert sleeper.dead


def test_join_returns_after_the_finish_hooks_ran():
    events = []

    def main():
        tasklet = microthreads.spawn(events.append, "body")
        tasklet.on_finish(events.append, "hook")
        tasklet.join()
        events.append("joined")

    microthreads.run(main)
    assert events == ["body", "hook", "joined"]


def test_a_finish_hook_added_after_the_end_still_runs_once():
    events = []

    def main():
        tasklet = microthreads.spawn(lambda: None)
        tasklet.join()
        tasklet.on_finish(events.append, "late")
        microthreads.sleep(0)
        microthreads.sleep(0)

    microthreads.run(main)
    assert events == ["late"]


def test_a_finish_hook_may_add_another_hook_to_the_same_tasklet():
    events = []

    def first():
        events.append("first")
        tasklet.on_finish(events.append, "added by first")

    tasklet = microthreads.spawn(lambda: None)
    tasklet.on_finish(first)
    microthreads.run()
    assert events == ["first", "added by first"]


def test_on_finish_outside_a_tasklet_raises_runtime_error():
    with pytest.raises(RuntimeError, match="inside a tasklet"):
        microthreads.on_finish(print)


# ------------------------------------------------------------------ context


def test_each_tasklet_runs_in_a_copy_of_its_spawners_context():
    var = contextvars.ContextVar("var", default="unset")
    events = []

    def child(name):
        events.append((name, "sees", var.get()))
        var.set(name)
        microthreads.sleep(0)
        events.append((name, "keeps", var.get()))

    def main():
        var.set("spawner")
        tasklets = [microthreads.spawn(child, name) for name in ("a", "b")]
        microthreads.joinall(tasklets)
        events.append(("main", "keeps", var.get()))

    microthreads.run(main)
    assert events == [("a", "sees", "spawner"), ("b", "sees", "spawner"),
                      ("a", "keeps", "a"), ("b", "keeps", "b"), ("main", "keeps", "spawner")]
    assert var.get() == "unset"
