"""Scenarios for tests/test_monkey_threading.py, each in a fresh interpreter.

``python tests/monkey_threading_helpers.py SCENARIO [ARGS...] [--without-threads]``
calls ``monkey.patch_all()`` first (with ``--without-threads``: every patch
but ``patch_thread``/``patch_queue``, the way things were before them), runs
the scenario in tasklets beside a ticker that ticks every 10 ms, and prints
one JSON object: what the scenario returns, plus ``ticks`` (how many ticks
the hub managed meanwhile) and ``elapsed``.
"""

import sys

if __name__ == "__main__":
    from microthreads import monkey
    if "--without-threads" in sys.argv:
        sys.argv.remove("--without-threads")
        monkey.patch_socket()
        monkey.patch_ssl()
        monkey.patch_select()
        monkey.patch_time()
    else:
        monkey.patch_all()      # before anything else is imported, as a user would

import json
import queue
import threading
import time

import microthreads

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


@scenario
def urllib3_pool(port, tasklets):
    """The urllib3 #3061 shape: a pool of 2, block=True, more tasklets than connections."""
    import urllib3
    pool = urllib3.HTTPConnectionPool("127.0.0.1", int(port), maxsize=2, block=True,
                                      timeout=10)

    def get(i):
        return pool.request("GET", f"/brief/{i}", pool_timeout=5).data.decode()

    answers = [t.get() for t in [microthreads.spawn(get, i) for i in range(int(tasklets))]]
    manager = urllib3.PoolManager(maxsize=2, block=True, timeout=10)
    through_manager = [t.get() for t in [microthreads.spawn(
        lambda i: manager.request("GET", f"http://127.0.0.1:{port}/brief/m{i}").data.decode(),
        i) for i in range(int(tasklets))]]
    return {"answers": answers, "manager": through_manager,
            "connections": pool.num_connections}


@scenario
def redis_blocking_pool(url, tasklets):
    """redis-py's BlockingConnectionPool of 5 connections under many tasklets."""
    import redis
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=5, timeout=3)
    client = redis.Redis(connection_pool=pool)

    def work(i):
        client.set(f"k{i}", i)
        client.blpop([f"nothing:{i}"], timeout=0.05)        # a connection held across a wait
        return int(client.get(f"k{i}"))

    answers = [t.get() for t in [microthreads.spawn(work, i) for i in range(int(tasklets))]]
    clients = client.client_list()
    pool.disconnect()
    return {"answers": answers, "clients": len(clients)}


@scenario
def executor_result():
    """A tasklet waits on ThreadPoolExecutor().submit(f).result(), wait() and as_completed()."""
    from concurrent.futures import ThreadPoolExecutor, as_completed, wait
    with ThreadPoolExecutor(2) as executor:
        first = executor.submit(lambda: (time.sleep(0.15), "result")[1]).result(timeout=10)
        done, _ = wait([executor.submit(time.sleep, 0.1)], timeout=10)
        completed = [f.result() for f in as_completed(
            [executor.submit(lambda: (time.sleep(0.1), "as_completed")[1])], timeout=10)]
    with ThreadPoolExecutor(4) as executor:             # tasklets submit while workers start
        submitters = [microthreads.spawn(lambda i: executor.submit(time.sleep, 0.05).result()
                                         or i, i) for i in range(10)]
        submitted = [t.get() for t in submitters]
    return {"answers": [first, len(done), completed, submitted]}


@scenario
def lock_held_across_a_wait():
    """Two tasklets contend for one threading.Lock; the holder sleeps with it."""
    lock = threading.Lock()
    order = []

    def holder(name):
        with lock:
            order.append(f"{name} in")
            time.sleep(0.1)                          # patched: a cooperative wait
            order.append(f"{name} out")

    microthreads.joinall([microthreads.spawn(holder, "a"), microthreads.spawn(holder, "b")])
    return {"answers": order}


@scenario
def primitives_between_a_thread_and_tasklets():
    """A thread puts into a queue a tasklet reads, waits on an Event a tasklet sets,
    and notifies a Condition a tasklet waits on; SimpleQueue, Semaphore, Barrier too."""
    answers = []
    items = queue.Queue()
    simple = queue.SimpleQueue()
    lifo = queue.LifoQueue()
    event = threading.Event()
    condition = threading.Condition()
    semaphore = threading.BoundedSemaphore(1)
    barrier = threading.Barrier(2, timeout=10)
    ready = []

    def thread_side():
        time.sleep(0.05)
        items.put("queue from thread")
        simple.put("simple from thread")
        lifo.put("lifo from thread")
        answers.append(("thread saw event", event.wait(10)))
        with condition:
            ready.append(True)
            condition.notify()
        with semaphore:
            time.sleep(0.05)
        answers.append(("thread at barrier", barrier.wait() >= 0))

    thread = threading.Thread(target=thread_side)
    thread.start()
    answers.append(items.get(timeout=10))
    answers.append(simple.get(timeout=10))
    answers.append(lifo.get(timeout=10))
    event.set()
    with condition:
        answers.append(("tasklet notified", condition.wait_for(lambda: ready, timeout=10)))
    time.sleep(0.01)
    with semaphore:
        answers.append("tasklet took the semaphore")
    answers.append(("tasklet at barrier", barrier.wait() >= 0))
    thread.join()
    return {"answers": sorted(map(str, answers))}


@scenario
def locals_and_identity():
    """threading.local per tasklet; current_thread() the OS thread's; RLock owned per tasklet."""
    data = threading.local()
    data.value = "main"
    rlock = threading.RLock()
    seen = []

    def child(name):
        seen.append((name, getattr(data, "value", None)))
        data.value = name
        microthreads.sleep(0.01)
        seen.append((name, data.value, threading.current_thread() is threading.main_thread()))

    microthreads.joinall([microthreads.spawn(child, "a"), microthreads.spawn(child, "b")])
    with rlock, rlock:                               # reentrant for its owner
        other = microthreads.spawn(lambda: rlock.acquire(timeout=0.05))
        other_got_it = other.get()                   # another tasklet is another owner
    return {"answers": [sorted(map(str, seen)), data.value, other_got_it]}


def main(name, *args):
    ticks = []

    def ticker():
        while True:
            microthreads.sleep(0.01)
            ticks.append(time.monotonic())

    def run():
        ticking = microthreads.spawn(ticker)
        started = time.monotonic()
        result = SCENARIOS[name](*args)
        result["elapsed"] = time.monotonic() - started
        ticking.kill()
        result["ticks"] = len(ticks)
        return result

    print(json.dumps(microthreads.run(run)), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
