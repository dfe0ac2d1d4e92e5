"""Blocking work off the hub (run_in_thread) and wake-ups from other threads."""

import os
import subprocess
import sys
import threading
import time

import pytest

import microthreads


def test_run_in_thread_returns_what_fn_returns_from_another_os_thread():
    def work(a, b=0):
        return a + b, threading.get_ident()

    def main():
        return microthreads.run_in_thread(work, 2, b=3)

    value, ident = microthreads.run(main)
    assert value == 5
    assert ident != threading.get_ident()


def test_run_in_thread_raises_fns_exception_in_the_waiting_tasklet():
    def work():
        raise OSError(5, "disk on fire")

    def main():
        with pytest.raises(OSError, match="disk on fire"):
            microthreads.run_in_thread(work)
        return "caught"

    assert microthreads.run(main) == "caught"


def test_the_hub_runs_other_tasklets_while_a_thread_works():
    gate = threading.Event()
    events = []

    def blocking():
        return gate.wait(timeout=10)             # only a tasklet can open it in time

    def opener():
        for i in range(3):
            events.append(f"tasklet step {i}")
            microthreads.sleep(0)
        gate.set()

    def main():
        microthreads.spawn(opener)
        opened = microthreads.run_in_thread(blocking)
        events.append(f"thread returned {opened}")

    microthreads.run(main)
    assert events == ["tasklet step 0", "tasklet step 1", "tasklet step 2",
                      "thread returned True"]


def test_many_run_in_thread_calls_at_once_all_complete():
    def main():
        tasklets = [microthreads.spawn(microthreads.run_in_thread, pow, i, 2)
                    for i in range(100)]
        return [t.get() for t in tasklets]

    assert microthreads.run(main) == [i * i for i in range(100)]


def test_run_in_thread_works_from_the_main_greenlet_outside_run():
    assert microthreads.run_in_thread(lambda: "from main") == "from main"


def test_a_timeout_ends_a_run_in_thread_wait_and_the_late_result_is_dropped():
    gate = threading.Event()
    events = []

    def blocking():
        gate.wait(timeout=10)
        return "late"

    def main():
        try:
            with microthreads.Timeout(0.005):
                microthreads.run_in_thread(blocking)
        except microthreads.Timeout:
            events.append("timed out")
        gate.set()
        microthreads.sleep(0.005)
        events.append("goes on")

    microthreads.run(main)
    microthreads.run()                           # the thread's end is still awaited
    assert events == ["timed out", "goes on"]


def test_call_soon_threadsafe_wakes_a_hub_sleeping_in_its_poll():
    hub = microthreads.get_hub()
    event = microthreads.Event()
    hub_thread = threading.get_ident()
    events = []

    def from_thread():
        time.sleep(0.005)                        # let the hub fall asleep
        hub.call_soon_threadsafe(lambda: (events.append(threading.get_ident() == hub_thread),
                                          event.set()))

    def main():
        threading.Thread(target=from_thread).start()
        return event.wait(timeout=30)            # real time: only the thread can end it early

    assert microthreads.run(main) is True
    assert events == [True]                      # it ran on the hub's thread


def test_call_soon_threadsafe_from_many_threads_runs_every_callback_in_order_per_thread():
    hub = microthreads.get_hub()
    done = microthreads.Event()
    calls = []

    def record(thread, i):
        calls.append((thread, i))
        if len(calls) == 4 * 100:
            done.set()

    def worker(thread):
        for i in range(100):
            hub.call_soon_threadsafe(record, thread, i)

    def main():
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        got_all = done.wait(timeout=30)
        for thread in threads:
            thread.join()
        return got_all

    assert microthreads.run(main) is True
    for thread in range(4):
        assert [i for t, i in calls if t == thread] == list(range(100))


def test_an_event_set_from_another_thread_raises_and_leaves_its_waiters_waiting():
    hub = microthreads.get_hub()
    event = microthreads.Event()
    errors = []

    def elsewhere():
        try:
            event.set()
        except RuntimeError as exc:
            errors.append(str(exc))
        hub.call_soon_threadsafe(event.set)      # the right way

    def main():
        waiter = microthreads.spawn(event.wait, 30)   # real time: the thread wakes it first
        microthreads.sleep(0)
        started = hub.clock()
        thread = threading.Thread(target=elsewhere)
        thread.start()
        result = waiter.get()
        thread.join()
        return result, hub.clock() - started < 10

    assert microthreads.run(main) == (True, True)
    assert len(errors) == 1
    assert "another thread's hub" in errors[0] and "call_soon_threadsafe" in errors[0]


@pytest.mark.timeout(60)
def test_thread_wake_ups_racing_the_hubs_drain_are_never_lost():
    # Issue 19, item 4: the hub once cleared its "wake-up pending" flag before
    # reading the wake pipe, so a byte written in between was eaten while the
    # flag stayed set; no later call wrote again and the hub slept in its poll
    # with the threads' results stuck (8 tasklets hung within seconds). Each
    # round trip here is one call_soon_threadsafe racing the hub's drain.
    rounds = 1000

    def noop():
        pass

    def worker():
        for _ in range(rounds):
            microthreads.run_in_thread(noop)
        return rounds

    def main():
        with microthreads.Timeout(20):           # real time: a lost wake-up fails here
            workers = [microthreads.spawn(worker) for _ in range(8)]
            return sum(tasklet.get() for tasklet in workers)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)                  # threads interleave often: the race is frequent
    try:
        assert microthreads.run(main) == 8 * rounds
    finally:
        sys.setswitchinterval(interval)


def test_idle_worker_threads_exit_so_a_name_lookup_leaves_no_thread_behind():
    """run_in_thread's workers used to wait for work forever: a test suite that
    counts threads saw them as leaked. A fresh interpreter, a short idle time."""
    code = (
        "import threading, microthreads\n"
        "from microthreads.net import socket\n"
        "before = threading.active_count()\n"
        "barrier = threading.Barrier(3)            # three calls at once: three workers\n"
        "def main():\n"
        "    calls = [microthreads.spawn(microthreads.run_in_thread, barrier.wait, 10)\n"
        "             for _ in range(3)]\n"
        "    microthreads.joinall(calls, raise_error=True)\n"
        "    socket.getaddrinfo('localhost', 80)   # a name lookup: run_in_thread\n"
        "    return threading.active_count()\n"
        "during = microthreads.run(main)\n"
        "for worker in threading.enumerate():\n"
        "    if worker.name.startswith('microthreads-worker'):\n"
        "        worker.join(10)                    # each exits after its 0.05 s idle\n"
        "print(during - before, threading.active_count() - before)\n"
    )
    assert _printed_with_idle(code, "0.05") == ["3", "0"]


def _printed_with_idle(code, idle):
    """What ``code`` prints (split) in a fresh interpreter whose workers idle ``idle`` s."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "MICROTHREADS_THREAD_IDLE": idle})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()



def test_workers_with_no_idle_time_exit_as_soon_as_they_are_idle():
    """MICROTHREADS_THREAD_IDLE=0 (what make test-stdlib runs with): every worker exits
    once idle. On Python 3.10 a worker could stay forever: SimpleQueue.get(timeout=0)
    may block without limit (a recomputed timeout gone negative); the race is rare
    (preemption inside the call), so rounds of calls that workers race for."""
    code = (
        "import threading, microthreads\n"
        "before = threading.active_count()\n"
        "def main():\n"
        "    for _ in range(300):\n"
        "        calls = [microthreads.spawn(microthreads.run_in_thread, sum, [1])\n"
        "                 for _ in range(3)]\n"
        "        microthreads.joinall(calls, raise_error=True)\n"
        "microthreads.run(main)\n"
        "for worker in threading.enumerate():\n"
        "    if worker.name.startswith('microthreads-worker'):\n"
        "        worker.join(10)\n"
        "print(threading.active_count() - before)\n"
    )
    assert _printed_with_idle(code, "0") == ["0"]
