"""Threading that cooperates: monkey.patch_thread()/patch_queue() and microthreads.hybrid.

The patched scenarios run in fresh interpreters (tests/monkey_threading_helpers.py),
since patching is process-wide; each runs beside a ticker that must keep
ticking. The hybrid locks and the per-tasklet local are also tested here
directly, in this process, without patching anything.
"""

import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
from chat_helpers import ROOT

import microthreads
from microthreads.hybrid import HybridLock, HybridRLock
from microthreads.local import local

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, "monkey_threading_helpers.py")


def _scenario(*args, timeout=60):
    proc = subprocess.run([sys.executable, SCENARIOS, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def http_port():
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "monkey_helpers.py"), "serve"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------ patched, in a child


def test_urllib3_pools_of_two_that_block_serve_twenty_tasklets(http_port):
    """urllib3 #3061's shape: its LifoQueue of connections now parks the waiting tasklets."""
    result = _scenario("urllib3_pool", http_port, 20)
    assert result["answers"] == [f"ok /brief/{i}" for i in range(20)]
    assert result["manager"] == [f"ok /brief/m{i}" for i in range(20)]
    assert result["connections"] == 2
    assert result["ticks"] >= 5, result


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="needs redis-server (make system-deps)")
def test_redis_blocking_connection_pool_serves_fifty_tasklets_on_five_connections():
    pytest.importorskip("redis")
    from redis_helpers import RedisServer
    server = RedisServer()
    try:
        result = _scenario("redis_blocking_pool", server.url, 50)
    finally:
        server.stop()
    assert result["answers"] == list(range(50))
    assert result["clients"] <= 5
    assert result["ticks"] >= 5, result


def test_a_tasklet_waiting_on_an_executor_future_does_not_stop_the_ticker():
    result = _scenario("executor_result")
    assert result["answers"] == ["result", 1, ["as_completed"], list(range(10))]
    assert result["ticks"] >= 15, result          # 0.35 s of thread work, ticks every 10 ms


def test_tasklets_contending_for_a_lock_held_across_a_sleep_take_turns():
    result = _scenario("lock_held_across_a_wait")
    assert result["answers"] == ["a in", "a out", "b in", "b out"]
    assert result["ticks"] >= 10, result          # the hub went on while the lock was held


def test_queues_events_conditions_semaphores_and_barriers_join_a_thread_and_a_tasklet():
    result = _scenario("primitives_between_a_thread_and_tasklets")
    assert result["answers"] == sorted([
        "queue from thread", "simple from thread", "lifo from thread",
        "('thread saw event', True)", "('tasklet notified', [True])",
        "tasklet took the semaphore", "('tasklet at barrier', True)",
        "('thread at barrier', True)"])
    assert result["ticks"] >= 3, result


def test_threading_local_is_per_tasklet_and_current_thread_the_os_thread():
    result = _scenario("locals_and_identity")
    seen, main_value, other_got_rlock = result["answers"]
    assert seen == sorted(["('a', None)", "('b', None)", "('a', 'a', True)",
                           "('b', 'b', True)"])
    assert main_value == "main"
    assert other_got_rlock is False


def test_importing_microthreads_leaves_threading_alone():
    code = ("import threading, queue, _thread\n"
            "before = (threading.Lock, threading._CRLock, threading.local, queue.SimpleQueue,"
            " _thread.allocate_lock)\n"
            "import microthreads, microthreads.monkey as monkey\n"
            "print(before == (threading.Lock, threading._CRLock, threading.local,"
            " queue.SimpleQueue, _thread.allocate_lock), monkey.is_patched('thread'))\n"
            "monkey.patch_all()\n"
            "print(type(threading.Lock()).__name__, type(threading.RLock()).__name__,"
            " monkey.is_patched('thread'), monkey.is_patched('queue'))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.split() == ["True", "False", "HybridLock", "HybridRLock", "True", "True"]


# ------------------------------------------------ the hybrid lock, directly


def test_a_lock_shared_by_a_tasklet_and_a_thread_keeps_them_apart_over_10000_rounds():
    lock = HybridLock()
    inside, overlaps, counts = [0], [0], {"thread": 0, "tasklet": 0}

    def critical(who, wait):
        with lock:
            inside[0] += 1
            overlaps[0] += inside[0] != 1
            if wait:
                microthreads.sleep(0)                # a tasklet waits while it holds it
            counts[who] += 1
            inside[0] -= 1

    def in_thread():
        for _ in range(10_000):
            critical("thread", False)

    def in_tasklet():
        for i in range(10_000):
            critical("tasklet", i % 50 == 0)

    thread = threading.Thread(target=in_thread)
    thread.start()
    microthreads.run(in_tasklet)
    thread.join(30)
    assert counts == {"thread": 10_000, "tasklet": 10_000}
    assert overlaps == [0]


def test_release_hands_the_lock_to_the_first_waiter_whatever_its_kind():
    lock = HybridLock()
    order = []
    lock.acquire()
    thread_waiting = threading.Event()

    def thread_waiter():
        thread_waiting.set()
        with lock:
            order.append("thread")

    def tasklet_waiter(name):
        with lock:
            order.append(name)

    def main():
        first = microthreads.spawn(tasklet_waiter, "tasklet 1")
        microthreads.sleep(0)                        # tasklet 1 is in line
        thread = threading.Thread(target=thread_waiter)
        thread.start()
        microthreads.run_in_thread(thread_waiting.wait, 10)
        for _ in range(10_000):                      # until the thread is in line too
            if lock.waiting == 2:
                break
            microthreads.sleep(0.001)
        second = microthreads.spawn(tasklet_waiter, "tasklet 2")
        microthreads.sleep(0)
        lock.release()
        microthreads.joinall([first, second])
        microthreads.run_in_thread(thread.join, 10)

    microthreads.run(main)
    assert order == ["tasklet 1", "thread", "tasklet 2"]


def test_a_timed_out_or_killed_waiter_leaves_the_line_without_the_lock():
    lock = HybridLock()

    def main():
        lock.acquire()
        assert lock.acquire(timeout=0.02) is False
        killed = microthreads.spawn(lock.acquire)
        microthreads.sleep(0.01)
        killed.kill()
        lock.release()
        assert not lock.locked()                     # nobody was left to hand it to
        assert lock.acquire(False) and lock.locked()
        lock.release()

    microthreads.run(main)


def test_bad_arguments_and_a_double_release_raise_as_the_stdlib_lock_does():
    lock = HybridLock()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(ValueError):                  # checked before the lock is taken
        lock.acquire(False, 1)
    assert not lock.locked()
    lock.acquire()
    with pytest.raises(ValueError):
        lock.acquire(False, 1)
    with pytest.raises(ValueError):
        lock.acquire(True, -2)
    assert lock.acquire(False) is False
    assert repr(lock).startswith("<locked ")
    with pytest.raises(TypeError):
        type("MyLock", (HybridLock,), {})           # as threading.Lock refuses subclasses


def test_an_rlock_is_reentrant_for_its_tasklet_only():
    rlock = HybridRLock()
    events = []

    def other():
        events.append(("other got it", rlock.acquire(timeout=0.02)))
        with pytest.raises(RuntimeError):
            rlock.release()

    def main():
        with rlock, rlock:
            microthreads.spawn(other).join()
        events.append(("free again", rlock.acquire(False)))
        rlock.release()

    microthreads.run(main)
    assert events == [("other got it", False), ("free again", True)]


def test_a_condition_over_hybrid_locks_wakes_a_tasklet_from_a_thread():
    condition = threading.Condition(HybridRLock())
    box = []

    def producer():
        with condition:
            box.append("made by a thread")
            condition.notify()

    def main():
        with condition:
            threading.Thread(target=producer).start()
            assert condition.wait_for(lambda: box, timeout=10)
        return box[0]

    assert microthreads.run(main) == "made by a thread"


# ------------------------------------------------------ the local, directly


def test_a_local_gives_each_tasklet_its_own_attributes_and_defaults():
    class Defaults(local):
        def __init__(self, colour):
            self.colour = colour
            self.calls = getattr(self, "calls", 0) + 1

    data = Defaults("red")
    data.colour = "blue"

    def tasklet():
        seen = (data.colour, data.calls, sorted(data.__dict__))
        data.colour = "green"
        return seen

    assert microthreads.run(lambda: microthreads.spawn(tasklet).get()) == \
        ("red", 1, ["calls", "colour"])
    assert data.colour == "blue"
    with pytest.raises(AttributeError):
        del data.missing
    with pytest.raises(TypeError):
        local("arguments without an __init__")
