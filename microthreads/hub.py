"""The hub: one greenlet per OS thread that runs the loop.

The hub owns three things and knows nothing else: a poller (epoll, or a
``selectors`` selector elsewhere), a heap of timers and a FIFO of ready
callbacks. Everything that waits (sleep, locks, queues, sockets) is built from
two verbs: ``park()`` the current tasklet, and ``schedule_wakeup()`` another.

A wake-up is stamped with the number of the wait it was meant for: each time
the hub resumes a greenlet that number goes up, so a wake-up that arrives
after its wait already ended (the tasklet was killed, timed out, or woken by
something else first) is dropped instead of resuming a later, unrelated wait.
"""

from __future__ import annotations

import errno
import heapq
import logging
import os
import selectors
import signal
import threading
import time
from _signal import getsignal as _getsignal  # signal.getsignal's enum wrapping costs ~1 µs
from collections import deque
from itertools import count

from greenlet import getcurrent, greenlet

from .errors import DeadlockError

log = logging.getLogger("microthreads")

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE


class _TimedOut:
    """The value ``park(timeout)`` returns when its time ran out."""

    __slots__ = ()

    def __repr__(self):
        return "TIMED_OUT"


TIMED_OUT = _TimedOut()

_local = threading.local()

#: While work keeps coming, poll for I/O at least once per this many wake-ups.
POLL_EVERY = 32

_SIGINT = int(signal.SIGINT)


def get_hub() -> Hub:
    """This OS thread's hub, made on first use."""
    try:
        return _local.hub
    except AttributeError:
        hub = _local.hub = Hub()
        return hub


def _forget_hub(hub: Hub) -> None:
    if getattr(_local, "hub", None) is hub:
        del _local.hub


# --------------------------------------------------------------------- timers


class Timer:
    """A callback due at an absolute ``deadline`` on the hub's clock.

    ``cancel()`` is O(1): the entry stays in the heap, marked dead, and is
    dropped when it reaches the top or when dead entries outnumber live ones.
    """

    __slots__ = ("_hub", "active", "args", "callback", "deadline")

    def __init__(self, hub, deadline, callback, args):
        self._hub = hub
        self.deadline = deadline
        self.callback = callback
        self.args = args
        self.active = True

    def cancel(self) -> None:
        if self.active:
            self.active = False
            self._hub._timer_cancelled()

    def __repr__(self):
        state = "active" if self.active else "cancelled"
        return f"<Timer at {self.deadline:.6f} {self.callback!r} {state}>"


class _TimerHeap:
    """A binary heap of timers with lazy deletion.

    Pushing and popping cost O(log n); a cancelled timer costs nothing until
    it surfaces, and the heap is compacted when dead entries pass half of it,
    so 100,000 cancelled timeouts cannot pile up.
    """

    __slots__ = ("_dead", "_heap", "_seq")

    def __init__(self):
        self._heap = []          # (deadline, seq, timer): seq keeps FIFO order on ties
        self._seq = count()
        self._dead = 0

    def __len__(self):
        return len(self._heap) - self._dead

    def push(self, timer):
        heapq.heappush(self._heap, (timer.deadline, next(self._seq), timer))

    def cancelled(self):
        self._dead += 1
        heap = self._heap
        if self._dead > 64 and self._dead * 2 > len(heap):
            self._heap = [entry for entry in heap if entry[2].active]
            heapq.heapify(self._heap)
            self._dead = 0

    def next_deadline(self):
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap:
            timer = heap[0][2]
            if timer.active:
                return timer.deadline
            heapq.heappop(heap)
            self._dead -= 1
        return None

    def pop_due(self, now):
        """Remove and return the next live timer due at ``now``, or None."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if timer.active:
                timer.active = False
                return timer
            self._dead -= 1
        return None


# -------------------------------------------------------------------- pollers


class _FdWatch:
    """What waits on one file descriptor: at most one reader, one writer.

    A waiter is either a parked greenlet (with the number of its wait) or a
    persistent callback. ``mask`` is what the poller is told to watch; it
    grows when a waiter needs it and shrinks only when an event arrives that
    nobody waits for.
    """

    __slots__ = ("callback", "fd", "mask", "registered", "seq", "waiter")

    def __init__(self, fd):
        self.fd = fd
        self.mask = 0
        self.registered = False
        # Each indexed by side: _READING (0) or _WRITING (1).
        self.waiter = [None, None]            # a parked greenlet ...
        self.seq = [0, 0]                     # ... and the number of its wait
        self.callback = [None, None]          # or a persistent callback

    def busy(self):
        return self.waiter != [None, None] or self.callback != [None, None]


_READING, _WRITING = 0, 1
_SIDES = ((_READING, READ), (_WRITING, WRITE))
_VERB = ("read", "write")


class _EpollPoller:
    """Direct ``select.epoll``: one registration per descriptor for its life."""

    def __init__(self):
        import select
        self._epoll = select.epoll()
        self._in = select.EPOLLIN | select.EPOLLPRI
        self._out = select.EPOLLOUT
        self._err = select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP
        self._rdhup = select.EPOLLRDHUP

    def fileno(self):
        return self._epoll.fileno()

    def _flags(self, mask):
        flags = 0
        if mask & READ:
            flags |= self._in | self._rdhup
        if mask & WRITE:
            flags |= self._out
        return flags

    def register(self, fd, mask):
        self._epoll.register(fd, self._flags(mask))

    def modify(self, fd, mask):
        self._epoll.modify(fd, self._flags(mask))

    def unregister(self, fd):
        self._epoll.unregister(fd)

    @property
    def sides(self):
        """(side, the event flags that wake it, its READ/WRITE bit): an error or a
        hang-up wakes both sides, so the next system call reports it."""
        return ((_READING, self._in | self._err, READ), (_WRITING, self._out | self._err, WRITE))

    def poll(self, timeout):
        """[(fd, epoll flags)], as epoll gives them (no copy per event)."""
        try:
            return self._epoll.poll(-1 if timeout is None else timeout)
        except InterruptedError:
            return []

    def close(self):
        self._epoll.close()


class _SelectorPoller:
    """The portable fallback over ``selectors.DefaultSelector``."""

    def __init__(self):
        self._selector = selectors.DefaultSelector()

    def fileno(self):
        return self._selector.fileno()

    def register(self, fd, mask):
        self._selector.register(fd, mask)

    def modify(self, fd, mask):
        self._selector.modify(fd, mask)

    def unregister(self, fd):
        self._selector.unregister(fd)

    sides = ((0, READ, READ), (1, WRITE, WRITE))

    def poll(self, timeout):
        """[(fd, READ|WRITE bits)]."""
        return [(key.fd, mask) for key, mask in self._selector.select(timeout)]

    def close(self):
        self._selector.close()


def _make_poller():
    if os.environ.get("MICROTHREADS_POLLER", "").lower() == "selectors":
        return _SelectorPoller()
    try:
        return _EpollPoller()
    except (ImportError, AttributeError):
        return _SelectorPoller()


# ------------------------------------------------------------------------ hub

# What the caller of run()/tick() asked the hub greenlet to do.
_TICK, _RUN_UNTIL, _RUN_ALL, _SERVE = "tick", "run until", "run all", "serve"


class Hub:
    """The loop of one OS thread. Get it with ``get_hub()``.

    User code never runs in the hub's own greenlet: it runs in tasklets, which
    switch to the hub when they wait. Public verbs for embedding: ``tick()``,
    ``fileno()``, ``next_deadline()``, ``clock()``, ``call_soon_threadsafe()``,
    ``watchdog()``. Verbs for building primitives: ``park()``,
    ``schedule_wakeup()``, ``schedule_throw()``, ``call_soon()``,
    ``call_later()``, ``call_at()``, ``wait_readable()``, ``wait_writable()``,
    ``forget_fd()``.
    """

    def __init__(self, clock=None):
        #: The hub's clock: absolute seconds, monotonic. Injectable for tests
        #: (``microthreads.testing.VirtualClock`` replaces it).
        self.clock = clock or time.monotonic
        self._thread_id = threading.get_ident()
        self._ready = deque()              # (callback, args), run in FIFO order
        self._threadsafe = deque()         # appended from other threads
        self._timers = _TimerHeap()
        self._poller = _make_poller()
        self._poller_sides = self._poller.sides
        self._fds = {}                     # fd -> _FdWatch
        self._fd_waiters = 0               # parked greenlets and callbacks on fds
        self._threads_at_work = 0          # run_in_thread jobs not yet returned
        self._live = set()                 # tasklets started or scheduled, not ended
        self._autojump = None              # a VirtualClock, when one drives this hub
        self._mode = None
        self._target = None
        self._tick_timeout = 0
        self._caller = None                # the greenlet that handed control to the hub
        self._interrupt = None             # an exception to raise in the caller
        self._switches = 0                 # resumes so far: the watchdog watches it
        self._polled_at = -POLL_EVERY      # _switches at the last poll
        self._in_poll = False
        self._watchdog = None
        root = getcurrent()
        while root.parent is not None:
            root = root.parent
        if not hasattr(root, "_seq"):
            root._seq = 0                  # the main greenlet can park too
            root._kill_exc = None
        self._greenlet = greenlet(self._main, parent=root)
        self._switch = self._greenlet.switch
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_pending = False
        self.add_reader(self._wake_r, self._drain_waker)
        self._fd_waiters -= 1              # the waker alone never keeps the loop alive
        self._old_wakeup_fd = None
        if threading.current_thread() is threading.main_thread():
            try:
                self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
            except (ValueError, OSError):
                self._old_wakeup_fd = None
        ms = os.environ.get("MICROTHREADS_WATCHDOG_MS")
        if ms:
            self.watchdog(float(ms))

    def __repr__(self):
        return (f"<Hub thread={self._thread_id} tasklets={len(self._live)} "
                f"ready={len(self._ready)} timers={len(self._timers)} fds={len(self._fds)}>")

    # ------------------------------------------------------------ the loop

    def _main(self):
        """The hub greenlet's body: iterate, and hand control back when asked."""
        while True:
            try:
                self._iterate()
            except BaseException as exc:            # a bug of ours, or a signal
                if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    log.critical("microthreads hub: internal error (this is a bug)", exc_info=True)
                self._interrupt = exc
            if self._interrupt is not None:
                exc, self._interrupt = self._interrupt, None
                self._throw_to_caller(exc)
            elif self._done():
                self._return_to_caller(self._has_work())

    def _iterate(self):
        """One loop iteration.

        1. run the callbacks that were ready when this iteration began
        2. wait for I/O, no longer than the earliest deadline (0 if work is queued;
           while tasklets keep yielding, a zero-wait poll is made once per
           POLL_EVERY wake-ups rather than once per iteration: I/O still waits
           for at most that many switches; with nothing queued it always polls)
        3. wake the greenlets whose file descriptors are ready
        4. fire the timers whose deadline has passed
        """
        self._run_ready()
        timeout = self._seconds_to_wait()
        # Thread-safe callbacks reach _ready only through the waker's fd: poll
        # for them, or a signal handler's call_soon_threadsafe() spins forever.
        # Nothing queued (a tick(0), a due timer): poll, or I/O is never seen.
        if timeout != 0 or not self._ready or self._threadsafe or \
                self._switches - self._polled_at >= POLL_EVERY:
            self._polled_at = self._switches
            self._dispatch_io(self._poll(timeout))
        self._fire_due_timers()

    def _poll_soon(self):
        """Make the next iteration poll for I/O even with work queued. For a
        tasklet yielding after a long run of work (net's EAGER_BUDGET of a
        flooding peer's input): the others' I/O gets in after that run, not
        after POLL_EVERY such runs."""
        self._polled_at = self._switches - POLL_EVERY

    def _run_ready(self):
        """Phase 1. An entry is ``(seq, greenlet, value)``, a wake-up for wait
        number ``seq`` of that greenlet, or ``(None, callback, args)``."""
        ready = self._ready
        popleft = ready.popleft
        for _ in range(len(ready)):          # a snapshot: newcomers wait a turn
            seq, target, arg = popleft()
            if seq is None:
                try:
                    target(*arg)
                except Exception:
                    log.exception("microthreads: callback %r failed", target)
            elif target._seq == seq:         # else a stale wake-up: that wait is over
                target._seq = seq + 1
                self._switches += 1
                if target._kill_exc is None:
                    target.switch(arg)
                else:
                    exc, target._kill_exc = target._kill_exc, None
                    target.throw(exc)

    def _seconds_to_wait(self):
        if self._ready or self._threadsafe or self._interrupt is not None:
            return 0
        deadline = self._timers.next_deadline()
        if self._mode == _TICK:
            limit = self._tick_timeout         # the host's budget for this iteration
        elif self._done():
            return 0
        elif deadline is None and not self._fd_waiters and not self._threads_at_work:
            return self._nothing_can_wake()
        else:
            limit = None
        if deadline is not None:
            wait = max(0.0, deadline - self.clock())
            if self._autojump is not None and wait > 0 and (limit is None or wait <= limit):
                wait = self._autojump._wait_before_jump(self, deadline)   # None: a thread works
            if wait is not None:
                limit = wait if limit is None else min(wait, limit)
        return limit

    def _poll(self, timeout):
        self._in_poll = True
        try:
            return self._poller.poll(timeout)
        finally:
            self._in_poll = False

    def _dispatch_io(self, events):
        fds = self._fds
        sides = self._poller_sides
        for fd, flags in events:
            watch = fds.get(fd)
            if watch is None:
                continue
            fired = unwanted = 0
            for side, wake_flags, bit in sides:
                if flags & wake_flags:
                    fired |= bit
                    waiter = watch.waiter[side]
                    if waiter is not None:
                        watch.waiter[side] = None
                        self._resume(waiter, watch.seq[side], None)
                    elif watch.callback[side] is not None:
                        self._call(watch.callback[side])
                    else:
                        unwanted |= bit
            if unwanted & watch.mask and fds.get(fd) is watch:
                self._set_mask(watch, watch.mask & ~unwanted, hangup=unwanted == fired)

    def _fire_due_timers(self):
        timers = self._timers
        heap = timers._heap
        if not heap:
            return
        now = self.clock()
        if heap[0][0] > now:
            return
        while True:
            timer = timers.pop_due(now)
            if timer is None:
                return
            self._call(timer.callback, *timer.args)

    def _call(self, callback, *args):
        try:
            callback(*args)
        except Exception:
            log.exception("microthreads: callback %r failed", callback)

    # ---------------------------------------------- when to hand control back

    def _done(self):
        mode = self._mode
        if mode == _TICK:
            return True
        if mode == _RUN_UNTIL:
            return self._target._finished
        if mode == _RUN_ALL:
            return not self._has_work()
        return False                       # _SERVE: the parked caller is woken directly

    def _has_work(self):
        return bool(self._ready or self._threadsafe or self._live or len(self._timers)
                    or self._fd_waiters or self._threads_at_work)

    def _return_to_caller(self, value):
        caller, self._caller = self._caller, None
        caller.switch(value)

    def _throw_to_caller(self, exc):
        caller, self._caller = self._caller, None
        if caller is None:                   # nobody is waiting for control: keep it
            log.warning("microthreads: %r with nobody to raise it to", exc)
            return
        if self._mode == _SERVE:
            caller._seq += 1                 # its pending wake-ups are stale now
        caller.throw(exc)

    def _enter(self, mode, target=None, tick_timeout=0):
        """Hand control to the hub greenlet from outside it (run, tick, park)."""
        current = getcurrent()
        if current is self._greenlet:
            raise RuntimeError("the hub cannot wait: a callback or finish hook tried to block"
                               " (spawn a tasklet for blocking work)")
        self._check_thread()
        if self._caller is not None:
            raise RuntimeError("the hub is already running in this thread")
        self._mode, self._target, self._tick_timeout = mode, target, tick_timeout
        self._caller = current
        restore = self._install_sigint()
        try:
            return self._switch()
        finally:
            self._caller = None
            self._mode = self._target = None
            if restore is not None:
                signal.signal(signal.SIGINT, restore)

    def _install_sigint(self):
        """While the hub has control, Ctrl-C is raised to run()'s caller."""
        if self._old_wakeup_fd is None or _getsignal(_SIGINT) is not \
                signal.default_int_handler:
            return None
        signal.signal(signal.SIGINT, self._on_sigint)
        return signal.default_int_handler

    def _on_sigint(self, signum, frame):
        # Raised to the caller at the end of this iteration, whether or not it
        # polls; a poll in progress has already been woken by the wakeup fd.
        self._interrupt = KeyboardInterrupt()

    # ------------------------------------------------------------ deadlock

    def _nothing_can_wake(self, host_handlers=()):
        """Called when no timer, descriptor, thread or callback is left.

        Returns how long to poll: 0 if deadlock errors were scheduled, or None
        (block on signals) when the hub is simply out of work.
        """
        if self._signal_handlers_installed(host_handlers):
            return None
        blocked = [t for t in self._live if t._started and not t._ended]
        if self._mode == _SERVE:
            blocked.append(self._caller)
        if not blocked:
            return 0                         # nothing left at all: _done() decides
        message = "nothing left can wake these tasklets:\n" + "\n".join(
            "  " + _describe_wait(g) for g in blocked)
        for g in blocked:
            if g is self._caller:
                self._interrupt = DeadlockError(message)
            else:
                self.schedule_throw(g, DeadlockError(message))
        return 0

    def detect_deadlock(self, host_handlers=()) -> bool:
        """For a host loop that itself has nothing left that could act.

        If tasklets are blocked and nothing the hub knows of could wake them
        (no ready work, timer, watched descriptor, thread job, nor a Python
        signal handler other than ``host_handlers``, the host's own), each
        gets ``DeadlockError`` at its next tick, as under ``run()``, and True
        is returned; else False. ``microthreads.aio`` calls it.
        """
        if self._ready or self._threadsafe or len(self._timers) or self._fd_waiters \
                or self._threads_at_work:
            return False
        return self._nothing_can_wake(host_handlers) == 0 and bool(self._ready)

    _WATCHED_SIGNALS = tuple(getattr(signal, name) for name in (
        "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD", "SIGQUIT",
        "SIGWINCH", "SIGINT") if hasattr(signal, name))

    def _signal_handlers_installed(self, host_handlers=()):
        """A Python signal handler could still wake someone (main thread only)."""
        if self._old_wakeup_fd is None:
            return False
        ours = (signal.default_int_handler, self._on_sigint, *host_handlers)
        for signum in self._WATCHED_SIGNALS:
            handler = signal.getsignal(signum)
            if callable(handler) and handler not in ours:
                return True
        return False

    # ----------------------------------------------------- verbs: waiting

    def park(self, timeout=None):
        """Suspend the current greenlet until a wake-up resumes it.

        Returns the value the wake-up carried, or ``TIMED_OUT`` when
        ``timeout`` seconds (None: no limit) passed first. A wake-up scheduled
        for this wait before the call is honoured. Raises whatever is thrown
        in (a kill, a Timeout, ``DeadlockError``). From the hub itself it is an
        error: the hub never blocks.
        """
        current = getcurrent()
        if timeout is None:
            return self._suspend(current)
        try:
            seq = current._seq
        except AttributeError:
            seq = current._seq = 0
            current._kill_exc = None
        timer = self.call_later(timeout, self._resume, current, seq, TIMED_OUT)
        try:
            return self._suspend(current)
        finally:
            timer.cancel()

    def _suspend(self, current):
        if current.parent is self._greenlet:          # a tasklet: the fast path
            return self._switch()
        if not hasattr(current, "_seq"):
            current._seq = 0
            current._kill_exc = None
        return self._enter(_SERVE)

    def wait_readable(self, fd, timeout=None):
        """Park until ``fd`` is readable (or has an error); False on timeout.

        The descriptor stays registered after the wait (its mask changes only
        when it must). One reader at a time: a second raises RuntimeError.
        """
        return self._wait_fd(fd, _READING, timeout)

    def wait_writable(self, fd, timeout=None):
        """Park until ``fd`` is writable (or has an error); False on timeout.

        One writer at a time: a second raises RuntimeError.
        """
        return self._wait_fd(fd, _WRITING, timeout)

    def _wait_fd(self, fd, side, timeout):
        watch = self._fds.get(fd) or self._watch(fd)
        self._check_free(watch, side)
        current = getcurrent()
        try:
            seq = current._seq
        except AttributeError:                # a greenlet new to the hub
            seq = current._seq = 0
            current._kill_exc = None
        bit = _SIDES[side][1]
        if not watch.mask & bit:
            self._set_mask(watch, watch.mask | bit)
        watch.waiter[side] = current
        watch.seq[side] = seq
        self._fd_waiters += 1
        try:
            if timeout is None and current.parent is self._greenlet:
                self._switch()                # a tasklet, no time limit: the fast path
                return True
            return self.park(timeout) is not TIMED_OUT
        finally:
            self._fd_waiters -= 1
            if watch.waiter[side] is current:
                watch.waiter[side] = None

    @staticmethod
    def _check_free(watch, side):
        taken = watch.waiter[side] or watch.callback[side]
        if taken is not None:
            verb = _VERB[side]
            raise RuntimeError(f"fd {watch.fd}: {taken!r} is already waiting to {verb} it"
                               f" (one {verb}er at a time)")

    def add_reader(self, fd, callback):
        """Call ``callback()`` on the hub whenever ``fd`` is readable, until removed."""
        self._add_callback(fd, _READING, callback)

    def add_writer(self, fd, callback):
        """Call ``callback()`` on the hub whenever ``fd`` is writable, until removed."""
        self._add_callback(fd, _WRITING, callback)

    def _add_callback(self, fd, side, callback):
        watch = self._fds.get(fd) or self._watch(fd)
        self._check_free(watch, side)
        watch.callback[side] = callback
        self._fd_waiters += 1
        self._set_mask(watch, watch.mask | _SIDES[side][1])

    def remove_reader(self, fd):
        self._remove_callback(fd, _READING)

    def remove_writer(self, fd):
        self._remove_callback(fd, _WRITING)

    def _remove_callback(self, fd, side):
        watch = self._fds.get(fd)
        if watch is not None and watch.callback[side] is not None:
            watch.callback[side] = None
            self._fd_waiters -= 1

    def forget_fd(self, fd):
        """Unregister ``fd`` before it is closed; return the greenlets waiting on it.

        Call it, close the descriptor, then ``schedule_throw()`` an error into
        each returned greenlet: a reused descriptor number then never inherits
        a stale registration. Callbacks added with add_reader/add_writer are
        dropped.
        """
        watch = self._fds.pop(fd, None)
        if watch is None:
            return []
        if watch.registered:
            try:
                self._poller.unregister(fd)
            except (OSError, KeyError, ValueError):
                pass
        waiters = [g for g in watch.waiter if g is not None]
        self._fd_waiters -= sum(callback is not None for callback in watch.callback)
        watch.waiter = [None, None]
        watch.callback = [None, None]
        return waiters

    def _watch(self, fd):
        watch = self._fds[fd] = _FdWatch(fd)
        return watch

    def _set_mask(self, watch, mask, hangup=False):
        """Tell the poller what to watch; unregister when nothing is wanted.

        ``hangup``: an event came that nobody waits for; a level-triggered
        poller would repeat a hang-up forever, so an idle descriptor leaves
        the poller until it is waited on again.
        """
        fd = watch.fd
        try:
            if mask == 0 or (hangup and not watch.busy()):
                if watch.registered:
                    self._poller.unregister(fd)
                    watch.registered = False
                mask = 0
            elif watch.registered:
                self._poller.modify(fd, mask)
            else:
                self._poller.register(fd, mask)
                watch.registered = True
        except FileNotFoundError:            # closed behind our back (no forget_fd) ...
            watch.registered = False
            if mask:                         # ... and the number reused: watch the new file
                self._poller.register(fd, mask)
                watch.registered = True
        except OSError as exc:
            if exc.errno == errno.EBADF and mask == 0:
                watch.registered = False     # closed behind our back: the kernel forgot it
            elif exc.errno == errno.EEXIST:
                self._poller.modify(fd, mask)
                watch.registered = True
            elif exc.errno == errno.EPERM:   # a regular file: always ready
                raise OSError(exc.errno, f"fd {fd} cannot be polled (a regular file?);"
                              " use run_in_thread for file I/O") from None
            else:
                raise
        watch.mask = mask

    # ---------------------------------------------------- verbs: waking

    def schedule_wakeup(self, g, value=None):
        """Resume the parked greenlet ``g`` soon, its ``park()`` returning ``value``.

        Ignored if that wait has ended by the time the hub gets to it.
        """
        self._ready.append((g._seq, g, value))

    def schedule_throw(self, g, exc):
        """Raise ``exc`` in the parked greenlet ``g`` soon, at its ``park()``."""
        self._ready.append((None, self._resume_throw, (g, g._seq, exc)))

    def throw_now(self, g, exc):
        """From the hub only: raise ``exc`` in the parked greenlet ``g`` at once."""
        if g.dead:
            return
        self._resume_throw(g, g._seq, exc)

    def _resume(self, g, seq, value):
        if g._seq != seq:                    # that wait is over: a stale wake-up
            return
        g._seq = seq + 1
        self._switches += 1
        exc = g._kill_exc
        if exc is not None:
            g._kill_exc = None
            g.throw(exc)
        else:
            g.switch(value)

    def _resume_throw(self, g, seq, exc):
        if g._seq != seq:
            return
        g._seq = seq + 1
        self._switches += 1
        kill = g._kill_exc
        if kill is not None:
            g._kill_exc = None
            exc = kill
        g.throw(exc)

    def call_soon(self, callback, *args):
        """Run ``callback(*args)`` on the hub in its next iteration (FIFO)."""
        self._ready.append((None, callback, args))

    def call_at(self, deadline, callback, *args):
        """Run ``callback(*args)`` on the hub at ``deadline`` (hub clock); a Timer."""
        timer = Timer(self, deadline, callback, args)
        self._timers.push(timer)
        return timer

    def call_later(self, seconds, callback, *args):
        """Run ``callback(*args)`` on the hub ``seconds`` from now; a Timer."""
        timer = Timer(self, self.clock() + seconds, callback, args)
        self._timers.push(timer)
        return timer

    def _timer_cancelled(self):
        self._timers.cancelled()

    # ---------------------------------------------------- other threads

    def call_soon_threadsafe(self, callback, *args):
        """From any OS thread: run ``callback(*args)`` on this hub soon.

        Wakes a hub that is sleeping in its poll. Safe from signal handlers.
        """
        self._threadsafe.append((callback, args))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass                         # full: it is awake anyway; closed: gone

    def _drain_waker(self) -> None:
        """On the hub, when the wake pipe is readable: move thread callbacks to _ready.

        The order (read the pipe, then clear the flag, then move the
        callbacks) keeps one invariant: while ``_wake_pending`` is True, a
        byte is in the pipe or about to be written by the thread that set it.

        - A byte this read consumes was written before the read, hence set
          its flag before the read, hence before the flag is cleared below:
          the clear accounts for it. (Clearing first, as this method once
          did, let a thread set the flag and write between the clear and the
          read: the read ate that byte, the flag stayed True with the pipe
          empty, no later call wrote again, and the hub slept in its poll
          with callbacks stuck; issue 19, item 4.)
        - A thread that sees the flag True (set before the clear) skips its
          write; its callback was appended before the clear, so it is in the
          deque when the loop below empties it.
        - A thread that sees the flag False (after the clear) sets it and
          writes; that byte arrives after the read, so it stays in the pipe and
          wakes the next poll, even if the loop below already moved its
          callback (a spurious wake-up costs one empty drain).
        - Two threads that both see False both write: two bytes, one drain.
        A signal handler calling ``call_soon_threadsafe`` in the middle of
        this method is the same as another thread at that point.
        """
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        self._wake_pending = False
        pending = self._threadsafe
        while pending:
            callback, args = pending.popleft()
            self._ready.append((None, callback, args))

    def report_error(self, tasklet, exc):
        """Report a tasklet that died of ``exc`` with nobody joining it.

        Called once, at its death. Replace it (on the instance or a subclass)
        to send crashes elsewhere; the default logs the traceback.
        """
        log.error("Tasklet %r crashed with %s (nobody joined it):", tasklet.name,
                  type(exc).__name__, exc_info=(type(exc), exc, exc.__traceback__))

    def _check_thread(self):
        if threading.get_ident() != self._thread_id:
            raise RuntimeError(
                f"this hub belongs to thread {self._thread_id}, not to thread "
                f"{threading.get_ident()}: use hub.call_soon_threadsafe() from other threads")

    # ---------------------------------------------------- embedding

    def run(self, tasklet=None):
        """Run the loop until ``tasklet`` has finished (hooks included) or,
        with None, until nothing is left. Use ``microthreads.run()``."""
        current = getcurrent()
        if current is not self._greenlet and current.parent is self._greenlet:
            raise RuntimeError("microthreads.run() is not re-entrant: it was called from inside"
                               " a tasklet (spawn() and join() instead)")
        if tasklet is None:
            self._enter(_RUN_ALL)
        elif not tasklet._finished:
            self._enter(_RUN_UNTIL, tasklet)

    def tick(self, timeout=0):
        """One loop iteration, for a foreign main loop (a game loop, a GUI).

        Runs the ready callbacks, waits for I/O at most ``timeout`` seconds
        (less if a timer is due sooner; 0 polls), wakes what is ready and
        fires due timers. Returns False when nothing is left (no tasklet,
        timer, descriptor or thread job). Deadlock detection is run()'s
        alone: a host loop may still feed work later. A Ctrl-C arriving during
        the tick raises KeyboardInterrupt here.
        """
        current = getcurrent()
        if current.parent is self._greenlet:
            raise RuntimeError("Hub.tick() was called from inside a tasklet")
        return self._enter(_TICK, tick_timeout=timeout)

    def fileno(self):
        """A descriptor that is readable when the hub has I/O or a thread wake-up.

        A host loop waits on it (and on ``next_deadline()``) instead of polling.
        """
        return self._poller.fileno()

    def next_deadline(self):
        """When the hub next needs a tick, as an absolute ``clock()`` time.

        Now if work is ready; the earliest timer; None if it waits only on I/O.
        """
        if self._ready or self._threadsafe:
            return self.clock()
        return self._timers.next_deadline()

    def watchdog(self, milliseconds):
        """Report, from a monitor thread, a tasklet holding the hub too long.

        When the hub has not resumed anything nor polled for longer than
        ``milliseconds``, the stack of the code that holds it is logged as a
        warning (once per stall). ``None`` or 0 turns it off.
        """
        from .debug import Watchdog
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if milliseconds:
            self._watchdog = Watchdog(self, milliseconds / 1000.0)
            self._watchdog.start()
        return self._watchdog

    def close(self):
        """Release the hub's descriptors; this thread gets a new hub on next use.

        Tasklets still alive are abandoned (they never resume).
        """
        self._check_thread()
        if self._watchdog is not None:
            self._watchdog.stop()
        if self._old_wakeup_fd is not None:
            try:
                signal.set_wakeup_fd(self._old_wakeup_fd)
            except (ValueError, OSError):
                pass
        self._poller.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._live.clear()
        self._ready.clear()
        _forget_hub(self)


def _describe_wait(g):
    """``<Tasklet 'x'> waits on Queue.get() at app.py:42`` from a parked stack."""
    from .debug import describe_wait
    return describe_wait(g)
