"""The hub: one greenlet per OS thread that runs the loop.

The hub owns three things and knows nothing else: a poller (``poller.py``:
epoll, or a ``selectors`` selector elsewhere), a heap of timers
(``timers.py``) and a FIFO of ready entries. Everything that waits (sleep,
locks, queues, sockets) is built from two verbs: ``park()`` the current
tasklet, and ``schedule_wakeup()`` another. The ready FIFO's entry format is
this module's alone: other modules go through the verbs (``start``,
``yield_now``, ``schedule_kill``, ``wait_for_thread``, ...).

A wake-up is stamped with the number of the wait it was meant for: each time
the hub resumes a greenlet that number goes up, so a wake-up that arrives
after its wait already ended (the tasklet was killed, timed out, or woken by
something else first) is dropped instead of resuming a later, unrelated wait.

The per-greenlet wait state is two attributes the hub keeps on every greenlet
that parks: ``_seq`` (the number of its current wait) and ``_kill_exc`` (a
kill not yet delivered). ``Tasklet`` declares them as slots; any other
greenlet (the thread's main greenlet) gets them from ``_wait_number()`` on
its first wait.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from greenlet import getcurrent, greenlet

from .errors import DeadlockError
from .poller import READING, SIDES, VERB, WRITING, FdWatch, make_poller
from .stacks import Watchdog, describe_wait
from .timers import Timer, TimerHeap

if TYPE_CHECKING:
    from signal import getsignal as _getsignal

    from .tasklet import Tasklet
    from .testing import VirtualClock
else:   # the C function: signal.getsignal's enum wrapping costs ~1 µs (typeshed has no _signal)
    from _signal import getsignal as _getsignal

log = logging.getLogger("microthreads")


class _TimedOut:
    """The value ``park(timeout)`` returns when its time ran out."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT = _TimedOut()

_local = threading.local()

#: While work keeps coming, poll for I/O at least once per this many wake-ups.
POLL_EVERY = 32

_SIGINT = int(signal.SIGINT)


def get_hub() -> Hub:
    """This OS thread's hub, made on first use."""
    try:
        return _local.hub  # type: ignore[no-any-return]
    except AttributeError:
        hub = _local.hub = Hub()
        return hub


def current_hub() -> Hub | None:
    """This OS thread's hub if it has one; never makes one (for finalizers)."""
    return getattr(_local, "hub", None)


def _forget_hub(hub: Hub) -> None:
    if getattr(_local, "hub", None) is hub:
        del _local.hub


def sleep(seconds: float = 0) -> None:
    """Suspend the current tasklet for ``seconds``; the hub runs others meanwhile.

    ``sleep(0)`` yields once: every other tasklet that is ready runs before
    this one resumes, so tasklets looping on ``sleep(0)`` interleave in order.
    A kill or a Timeout interrupts it. (Exported as ``microthreads.sleep``;
    it lives here because ``sleep(0)`` is the runtime's hottest call: its
    tasklet fast path is ``Hub.yield_now`` inlined, one Python call in all.)
    """
    current: Any = getcurrent()
    try:
        hub: Hub = current._hub                       # a tasklet knows its hub (a slot:
    except AttributeError:                            # faster than the thread-local)
        hub = get_hub()
    if seconds > 0:
        hub.park(seconds)
        return
    if current.parent is hub._greenlet:               # a tasklet: Hub.yield_now, inlined
        hub._ready.append((current._seq, current, None))
        hub._switch()
    else:
        hub.yield_now()


def _wait_number(g: Any) -> int:
    """The number of ``g``'s current wait; a greenlet new to the hub gets its
    wait state here (the one place it is made for non-tasklets)."""
    try:
        return g._seq  # type: ignore[no-any-return]
    except AttributeError:
        g._seq = 0
        g._kill_exc = None
        return 0


class Hub:
    """The loop of one OS thread. Get it with ``get_hub()``.

    User code never runs in the hub's own greenlet: it runs in tasklets, which
    switch to the hub when they wait. Public verbs for embedding: ``tick()``,
    ``fileno()``, ``next_deadline()``, ``clock()``, ``call_soon_threadsafe()``,
    ``watchdog()``, ``close()``. Verbs for building primitives: ``park()``,
    ``schedule_wakeup()``, ``schedule_throw()``, ``schedule_kill()``,
    ``yield_now()``, ``call_soon()``, ``call_later()``, ``call_at()``,
    ``wait_readable()``, ``wait_writable()``, ``close_fd()``, ``forget_fd()``,
    ``poll_soon()``, ``wait_for_thread()``. Verbs for the runtime's own
    modules: ``start()``, ``start_later()``, ``retire()``, ``interrupt()``,
    ``install_virtual_clock()``.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        #: The hub's clock: absolute seconds, monotonic. Injectable for tests
        #: (``microthreads.testing.VirtualClock`` replaces it).
        self.clock = clock or time.monotonic
        #: The OS thread this hub belongs to.
        self.thread_id = threading.get_ident()
        # (seq, greenlet, value): a wake-up for wait number seq of greenlet;
        # (None, callback, args): a call. Run in FIFO order; private to this module.
        self._ready: deque[tuple[Any, Any, Any]] = deque()
        self._threadsafe: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._timers = TimerHeap()
        self._poller = make_poller()
        self._poller_sides = self._poller.sides
        self._fds: dict[int, FdWatch] = {}
        self._fd_waiters = 0               # parked greenlets and callbacks on fds
        self._threads_at_work = 0          # run_in_thread jobs not yet returned
        self._live: set[Tasklet] = set()   # tasklets started or scheduled, not ended
        self._virtual_clock: VirtualClock | None = None   # auto-jumps when all wait
        self._mode: str | None = None
        self._target: Tasklet | None = None
        self._tick_timeout: float | None = 0
        self._caller: Any = None           # the greenlet that handed control to the hub
        self._interrupt: BaseException | None = None   # to raise in the caller
        self._switches = 0                 # resumes so far: the watchdog watches it
        self._polled_at = -POLL_EVERY      # _switches at the last poll
        self._in_poll = False
        self._watchdog: Watchdog | None = None
        self._closed = False
        root = getcurrent()
        while root.parent is not None:
            root = root.parent
        _wait_number(root)                 # the main greenlet can park too
        self._greenlet = greenlet(self._main, parent=root)
        self._switch = self._greenlet.switch
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_pending = False
        self.add_reader(self._wake_r, self._drain_waker)
        self._fd_waiters -= 1              # the waker alone never keeps the loop alive
        self._old_wakeup_fd: int | None = None
        if threading.current_thread() is threading.main_thread():
            try:
                self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
            except (ValueError, OSError):
                self._old_wakeup_fd = None
        ms = os.environ.get("MICROTHREADS_WATCHDOG_MS")
        if ms:
            self.watchdog(float(ms))

    def __repr__(self) -> str:
        return (f"<Hub thread={self.thread_id} tasklets={len(self._live)} "
                f"ready={len(self._ready)} timers={len(self._timers)} fds={len(self._fds)}>")

    @property
    def greenlet(self) -> greenlet:
        """The hub's own greenlet: every tasklet's parent. It never waits."""
        return self._greenlet

    # ------------------------------------------------------------ the loop

    def _main(self) -> None:
        """The hub greenlet's body: iterate, and hand control back when asked."""
        while True:
            try:
                self._iterate()
            except BaseException as exc:            # a bug of ours, or a signal
                if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    log.critical("microthreads hub: internal error (this is a bug)", exc_info=True)
                self._interrupt = exc
            if self._interrupt is not None:
                interrupt, self._interrupt = self._interrupt, None
                self._throw_to_caller(interrupt)
            elif self._done():
                self._return_to_caller(self._has_work())

    def _iterate(self) -> None:
        """One loop iteration: the phases, in this order (docs/DESIGN.md, "A loop turn").

        1. run the entries that were ready when this iteration began (wake-ups
           and callbacks, FIFO); what they schedule waits for the next turn
        2. decide how long I/O may wait: 0 if work is queued or the caller is
           to be given control back; else until the earliest timer, within a
           tick()'s budget; else without limit. Then, when nothing is left
           that could ever end that wait:
           2a. deadlock detection (run() only): every blocked tasklet gets
               DeadlockError, and the wait is 0;
           2b. a VirtualClock jumps to the earliest deadline instead of
               waiting for it (after one poll of real I/O);
        3. poll, and wake the greenlets and callbacks whose descriptors are
           ready. While tasklets keep yielding, a zero-wait poll is made once
           per POLL_EVERY wake-ups rather than every turn (I/O waits for at
           most that many switches); with nothing queued it always polls
        4. fire the timers whose deadline has passed, in deadline order
        """
        self._run_ready()                                    # 1
        limit: float | None
        deadline: float | None
        if self._ready or self._threadsafe or self._interrupt is not None:
            limit, deadline = 0, None                        # 2: work is queued: no wait
        else:
            limit, deadline = self._wait_bounds()            # 2
        if limit == 0:
            timeout: float | None = 0
        elif deadline is None:
            timeout = limit
            if self._mode != _TICK and not self._fd_waiters and not self._threads_at_work:
                timeout = self._nothing_can_wake()           # 2a
        elif self._virtual_clock is not None:
            timeout = self._jump_virtual_clock(deadline, limit)   # 2b
        else:
            timeout = _min_wait(deadline - self.clock(), limit)
        # Thread-safe callbacks reach _ready only through the waker's fd: poll
        # for them, or a signal handler's call_soon_threadsafe() spins forever.
        # Nothing queued (a tick(0), a due timer): poll, or I/O is never seen.
        if timeout != 0 or not self._ready or self._threadsafe or \
                self._switches - self._polled_at >= POLL_EVERY:
            self._polled_at = self._switches
            self._dispatch_io(self._poll(timeout))           # 3
        if self._timers.heap:                                # 4 (most turns have none)
            self._fire_due_timers()

    def _wait_bounds(self) -> tuple[float | None, float | None]:
        """Phase 2: (the longest I/O may wait, None for no limit; the earliest
        timer's deadline or None), when nothing is queued. A limit of 0 means
        "do not wait"."""
        if self._mode == _TICK:
            limit = self._tick_timeout         # the host's budget for this iteration
        elif self._done():
            return 0, None
        else:
            limit = None
        return limit, self._timers.next_deadline()

    def _jump_virtual_clock(self, deadline: float, limit: float | None) -> float | None:
        """Phase 2b: with a VirtualClock, time does not pass while all wait.

        If the earliest deadline is what bounds this wait, poll real I/O
        once (for up to the clock's ``autojump_threshold`` real seconds) and,
        if nothing came, move the clock to that deadline: its timers fire in
        phase 4 of this turn. While a ``run_in_thread`` job is at work the
        thread's end comes in real time, so the hub waits for it instead.
        """
        clock = self._virtual_clock
        assert clock is not None
        wait = max(0.0, deadline - self.clock())
        if wait == 0 or (limit is not None and wait > limit):
            return _min_wait(wait, limit)
        if self._threads_at_work:
            return limit                       # a thread's end comes in real time
        if self._fd_waiters:                   # 0: one poll that does not wait
            events = self._poll(clock.autojump_threshold)
            if events:
                self._dispatch_io(events)
                return 0
        clock.jump_to(deadline)
        return 0

    def poll_soon(self) -> None:
        """Make the next iteration poll for I/O even with work queued.

        For a tasklet yielding after a long run of work (net's EAGER_BUDGET of
        a flooding peer's input): the others' I/O gets in after that run, not
        after POLL_EVERY such runs.
        """
        self._polled_at = self._switches - POLL_EVERY

    def _run_ready(self) -> None:
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
            # The rest is _resume(target, seq, arg) inlined: this is the hottest path.
            elif target._seq == seq:         # else a stale wake-up: that wait is over
                target._seq = seq + 1
                self._switches += 1
                if target._kill_exc is None:
                    target.switch(arg)
                else:
                    exc, target._kill_exc = target._kill_exc, None
                    target.throw(exc)

    def _poll(self, timeout: float | None) -> list[tuple[int, int]]:
        self._in_poll = True
        try:
            return self._poller.poll(timeout)
        finally:
            self._in_poll = False

    def _dispatch_io(self, events: list[tuple[int, int]]) -> None:
        """Phase 3: wake each side of each ready descriptor; narrow what nobody wants."""
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
                    elif (callback := watch.callback[side]) is not None:
                        self._call(callback)
                    else:
                        unwanted |= bit
            if unwanted & watch.mask and fds.get(fd) is watch:
                self._poller.set_mask(watch, watch.mask & ~unwanted, hangup=unwanted == fired)

    def _fire_due_timers(self) -> None:
        """Phase 4, entered when a timer is pending: every timer due by now,
        earliest first (ties: oldest first)."""
        timers = self._timers
        heap = timers.heap
        now = self.clock()
        if heap[0][0] > now:
            return
        while True:
            timer = timers.pop_due(now)
            if timer is None:
                return
            self._call(timer.callback, *timer.args)

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("microthreads: callback %r failed", callback)

    # ---------------------------------------------- when to hand control back

    def _done(self) -> bool:
        mode = self._mode
        if mode == _TICK:
            return True
        if mode == _RUN_UNTIL:
            assert self._target is not None
            return self._target.finished
        if mode == _RUN_ALL:
            return not self._has_work()
        return False                       # _SERVE: the parked caller is woken directly

    def _has_work(self) -> bool:
        return bool(self._ready or self._threadsafe or self._live or len(self._timers)
                    or self._fd_waiters or self._threads_at_work)

    def _return_to_caller(self, value: Any) -> None:
        caller, self._caller = self._caller, None
        caller.switch(value)

    def _throw_to_caller(self, exc: BaseException) -> None:
        caller, self._caller = self._caller, None
        if caller is None:                   # nobody is waiting for control: keep it
            log.warning("microthreads: %r with nobody to raise it to", exc)
            return
        if self._mode == _SERVE:
            caller._seq += 1                 # its pending wake-ups are stale now
        caller.throw(exc)

    def _enter(self, mode: str, target: Tasklet | None = None,
               tick_timeout: float | None = 0) -> Any:
        """Hand control to the hub greenlet from outside it (run, tick, park)."""
        current = getcurrent()
        if current is self._greenlet:
            raise RuntimeError("the hub cannot wait: a callback or finish hook tried to block"
                               " (spawn a tasklet for blocking work)")
        self.check_thread()
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

    def _install_sigint(self) -> Any:
        """While the hub has control, Ctrl-C is raised to run()'s caller."""
        if self._old_wakeup_fd is None or _getsignal(_SIGINT) is not \
                signal.default_int_handler:
            return None
        signal.signal(signal.SIGINT, self._on_sigint)
        return signal.default_int_handler

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # Raised to the caller at the end of this iteration, whether or not it
        # polls; a poll in progress has already been woken by the wakeup fd.
        self._interrupt = KeyboardInterrupt()

    def interrupt(self, exc: BaseException) -> None:
        """Raise ``exc`` to the caller of run()/tick() at the end of this
        iteration (a tasklet that died of KeyboardInterrupt or SystemExit)."""
        self._interrupt = exc

    # ------------------------------------------------------------ deadlock

    def _nothing_can_wake(self, host_handlers: tuple[Any, ...] = ()) -> float | None:
        """Phase 2a: no timer, descriptor, thread or callback is left.

        Returns how long to poll: 0 if deadlock errors were scheduled, or None
        (block on signals) when the hub is simply out of work.
        """
        if self._signal_handlers_installed(host_handlers):
            return None
        blocked: list[Any] = [t for t in self._live if t.started and not t.dead]
        if self._mode == _SERVE:
            blocked.append(self._caller)
        if not blocked:
            return 0                         # nothing left at all: _done() decides
        message = "nothing left can wake these tasklets:\n" + "\n".join(
            "  " + describe_wait(g) for g in blocked)
        for g in blocked:
            if g is self._caller:
                self._interrupt = DeadlockError(message)
            else:
                self.schedule_throw(g, DeadlockError(message))
        return 0

    def detect_deadlock(self, host_handlers: tuple[Any, ...] = ()) -> bool:
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

    def _signal_handlers_installed(self, host_handlers: tuple[Any, ...] = ()) -> bool:
        """A Python signal handler could still wake someone (main thread only)."""
        if self._old_wakeup_fd is None:
            return False
        ours = (signal.default_int_handler, self._on_sigint, *host_handlers)
        for signum in self._WATCHED_SIGNALS:
            handler = signal.getsignal(signum)
            if callable(handler) and handler not in ours:
                return True
        return False

    # ----------------------------------------------------- verbs: tasklets

    def start(self, tasklet: Tasklet) -> None:
        """Count ``tasklet`` as live and switch into it in the next iteration
        (after the entries already ready). Used by ``spawn()``."""
        self._live.add(tasklet)
        self._ready.append((0, tasklet, None))

    def start_later(self, seconds: float, tasklet: Tasklet) -> Timer:
        """Count ``tasklet`` as live and switch into it ``seconds`` from now;
        the Timer, which ``cancel()`` disarms. Used by ``spawn_later()``."""
        self._live.add(tasklet)
        return self.call_later(seconds, self._resume, tasklet, 0, None)

    def retire(self, tasklet: Tasklet) -> None:
        """``tasklet`` has ended: it no longer keeps ``run()`` going."""
        self._live.discard(tasklet)

    def live_tasklets(self) -> list[Tasklet]:
        """The tasklets started or scheduled on this hub that have not ended."""
        return list(self._live)

    # ----------------------------------------------------- verbs: waiting

    def park(self, timeout: float | None = None) -> Any:
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
        timer = self.call_later(timeout, self._resume, current, _wait_number(current), TIMED_OUT)
        try:
            return self._suspend(current)
        finally:
            timer.cancel()

    def _suspend(self, current: Any) -> Any:
        if current.parent is self._greenlet:          # a tasklet: the fast path
            return self._switch()
        _wait_number(current)
        return self._enter(_SERVE)

    def yield_now(self) -> None:
        """Let every other ready tasklet run once, then go on (``sleep(0)``).

        From the main greenlet, runs the hub until the others have had their
        turn. From the hub itself it is an error (``park()``'s).
        """
        current: Any = getcurrent()                   # a tasklet or a greenlet with a _seq
        if current.parent is self._greenlet:          # the fast path: a tasklet yields once
            self._ready.append((current._seq, current, None))
            self._switch()
        else:                                         # the main greenlet; the hub's own may
            if current is not self._greenlet:         # not wait (park() raises its error)
                self._ready.append((_wait_number(current), current, None))
            self.park()

    def wait_for_thread(self, arm: Callable[[Callable[[], None]], None]) -> None:
        """Park the current greenlet until a job in another OS thread is done.

        ``arm(done)`` is called at once; ``done()`` must then be called exactly
        once, from any thread, when the job ends. Meanwhile the job counts as
        work (``run()`` does not return, no DeadlockError, a VirtualClock
        waits in real time). A kill or Timeout ends the wait early; the job's
        later ``done()`` is then dropped. Used by ``run_in_thread``.
        """
        waiter = getcurrent()
        seq = _wait_number(waiter)
        self._threads_at_work += 1

        def finished() -> None:                       # back on the hub
            self._threads_at_work -= 1
            self._resume(waiter, seq, None)

        arm(lambda: self.call_soon_threadsafe(finished))
        self.park()

    def wait_readable(self, fd: int, timeout: float | None = None) -> bool:
        """Park until ``fd`` is readable (or has an error); False on timeout.

        The descriptor stays registered after the wait (its mask changes only
        when it must). One reader at a time: a second raises RuntimeError.
        """
        return self._wait_fd(fd, READING, timeout)

    def wait_writable(self, fd: int, timeout: float | None = None) -> bool:
        """Park until ``fd`` is writable (or has an error); False on timeout.

        One writer at a time: a second raises RuntimeError.
        """
        return self._wait_fd(fd, WRITING, timeout)

    def _wait_fd(self, fd: int, side: int, timeout: float | None) -> bool:
        watch = self._fds.get(fd) or self._watch(fd)
        self._check_free(watch, side)
        current: Any = getcurrent()
        try:                                  # _wait_number(current), inlined: a hot path
            seq = current._seq
        except AttributeError:
            seq = _wait_number(current)
        bit = SIDES[side][1]
        if not watch.mask & bit:
            self._poller.set_mask(watch, watch.mask | bit)
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
    def _check_free(watch: FdWatch, side: int) -> None:
        taken = watch.waiter[side] or watch.callback[side]
        if taken is not None:
            verb = VERB[side]
            raise RuntimeError(f"fd {watch.fd}: {taken!r} is already waiting to {verb} it"
                               f" (one {verb}er at a time)")

    def add_reader(self, fd: int, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` on the hub whenever ``fd`` is readable, until removed."""
        self._add_callback(fd, READING, callback)

    def add_writer(self, fd: int, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` on the hub whenever ``fd`` is writable, until removed."""
        self._add_callback(fd, WRITING, callback)

    def _add_callback(self, fd: int, side: int, callback: Callable[[], Any]) -> None:
        watch = self._fds.get(fd) or self._watch(fd)
        self._check_free(watch, side)
        watch.callback[side] = callback
        self._fd_waiters += 1
        self._poller.set_mask(watch, watch.mask | SIDES[side][1])

    def remove_reader(self, fd: int) -> None:
        self._remove_callback(fd, READING)

    def remove_writer(self, fd: int) -> None:
        self._remove_callback(fd, WRITING)

    def _remove_callback(self, fd: int, side: int) -> None:
        watch = self._fds.get(fd)
        if watch is not None and watch.callback[side] is not None:
            watch.callback[side] = None
            self._fd_waiters -= 1

    def forget_fd(self, fd: int) -> list[Any]:
        """Unregister ``fd`` before it is closed; return the greenlets waiting on it.

        Callbacks added with add_reader/add_writer are dropped. Most callers
        want ``close_fd()``, which also wakes those greenlets; this is for a
        descriptor handed elsewhere (``socket.detach()``) or a finalizer.
        """
        watch = self._fds.pop(fd, None)
        if watch is None:
            return []
        self._poller.forget(watch)
        waiters = [g for g in watch.waiter if g is not None]
        self._fd_waiters -= sum(callback is not None for callback in watch.callback)
        watch.waiter = [None, None]
        watch.callback = [None, None]
        return waiters

    def close_fd(self, fd: int, exc: BaseException) -> None:
        """Forget ``fd`` and raise ``exc`` in every greenlet waiting on it (trio's
        ``notify_closing``).

        Call it just before closing the descriptor, with no wait in between: a
        reused descriptor number then never inherits a stale registration,
        and every waiter (but the caller) gets ``exc`` at its wait in the
        next iteration: the first waiter ``exc`` itself, a second (a reader
        and a writer) a ``copy.copy`` of it, so their tracebacks never mix.
        """
        current = getcurrent()
        for waiter in self.forget_fd(fd):
            if waiter is not current:
                self.schedule_throw(waiter, exc)
                exc = copy.copy(exc)

    def _watch(self, fd: int) -> FdWatch:
        watch = self._fds[fd] = FdWatch(fd)
        return watch

    # ---------------------------------------------------- verbs: waking

    def schedule_wakeup(self, g: Any, value: Any = None) -> None:
        """Resume the parked greenlet ``g`` soon, its ``park()`` returning ``value``.

        Ignored if that wait has ended by the time the hub gets to it.
        """
        self._ready.append((g._seq, g, value))

    def schedule_throw(self, g: Any, exc: BaseException) -> None:
        """Raise ``exc`` in the parked greenlet ``g`` soon, at its ``park()``."""
        self._ready.append((None, self._resume, (g, g._seq, None, exc)))

    def schedule_kill(self, g: Any, exc: BaseException) -> None:
        """Deliver ``exc`` to the parked greenlet ``g`` at its next resumption.

        Whatever wakes it first (this call's own wake-up, an I/O event, a
        timer) raises ``exc`` instead of returning; every other wake-up it
        had registered becomes stale. Used by ``Tasklet.kill``.
        """
        g._kill_exc = exc
        self._ready.append((g._seq, g, None))

    def throw_now(self, g: Any, exc: BaseException) -> None:
        """From the hub only: raise ``exc`` in the parked greenlet ``g`` at once."""
        if g.dead:
            return
        self._resume(g, g._seq, None, exc)

    def _resume(self, g: Any, seq: int, value: Any, exc: BaseException | None = None) -> None:
        """The one resume path: drop a stale wake-up, bump the wait number,
        then deliver a pending kill, else ``exc``, else ``value``.
        (_run_ready inlines it for wake-ups without ``exc``.)"""
        if g._seq != seq:                    # that wait is over: a stale wake-up
            return
        g._seq = seq + 1
        self._switches += 1
        kill = g._kill_exc
        if kill is not None:
            g._kill_exc = None
            g.throw(kill)
        elif exc is not None:
            g.throw(exc)
        else:
            g.switch(value)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the hub in its next iteration (FIFO)."""
        self._ready.append((None, callback, args))

    def call_at(self, deadline: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` on the hub at ``deadline`` (hub clock); a Timer."""
        return self._timers.add(deadline, callback, args)

    def call_later(self, seconds: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` on the hub ``seconds`` from now; a Timer."""
        return self._timers.add(self.clock() + seconds, callback, args)

    # ---------------------------------------------------- other threads

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
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

    def report_error(self, tasklet: Tasklet, exc: BaseException) -> None:
        """Report a tasklet that died of ``exc`` with nobody joining it.

        Called once, at its death. Replace it (on the instance or a subclass)
        to send crashes elsewhere; the default logs the traceback.
        """
        log.error("Tasklet %r crashed with %s (nobody joined it):", tasklet.name,
                  type(exc).__name__, exc_info=(type(exc), exc, exc.__traceback__))

    def check_thread(self) -> None:
        """Raise RuntimeError unless called from the hub's own OS thread."""
        if threading.get_ident() != self.thread_id:
            raise RuntimeError(
                f"this hub belongs to thread {self.thread_id}, not to thread "
                f"{threading.get_ident()}: use hub.call_soon_threadsafe() from other threads")

    def _kill_the_living(self) -> None:
        """close()'s first step: TaskletExit to every live tasklet, and their ends run."""
        current = getcurrent()
        if not self._live or self._caller is not None or current is self._greenlet \
                or current.parent is self._greenlet:
            return                             # nobody to kill, or the hub cannot run now
        living = list(self._live)
        for tasklet in living:
            tasklet.kill(block=False)
        while self._ready and not all(tasklet.finished for tasklet in living):
            self.tick(0)

    # ---------------------------------------------------- embedding

    def run(self, tasklet: Tasklet | None = None) -> None:
        """Run the loop until ``tasklet`` has finished (hooks included) or,
        with None, until nothing is left. Use ``microthreads.run()``."""
        current = getcurrent()
        if current is not self._greenlet and current.parent is self._greenlet:
            raise RuntimeError("microthreads.run() is not re-entrant: it was called from inside"
                               " a tasklet (spawn() and join() instead)")
        if tasklet is None:
            self._enter(_RUN_ALL)
        elif not tasklet.finished:
            self._enter(_RUN_UNTIL, tasklet)

    def tick(self, timeout: float | None = 0) -> bool:
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
        return bool(self._enter(_TICK, tick_timeout=timeout))

    def fileno(self) -> int:
        """A descriptor that is readable when the hub has I/O or a thread wake-up.

        A host loop waits on it (and on ``next_deadline()``) instead of polling.
        """
        return self._poller.fileno()

    def next_deadline(self) -> float | None:
        """When the hub next needs a tick, as an absolute ``clock()`` time.

        Now if work is ready; the earliest timer; None if it waits only on I/O.
        """
        if self._ready or self._threadsafe:
            return self.clock()
        return self._timers.next_deadline()

    def install_virtual_clock(self, clock: VirtualClock) -> Callable[[], float]:
        """Run this hub on ``clock`` (its ``now`` and ``jump_to``); returns the
        clock it replaces, for ``remove_virtual_clock``. RuntimeError if a
        timer is already set (its deadline is on the old clock) or another
        VirtualClock is installed."""
        if len(self._timers):
            raise RuntimeError("VirtualClock must be installed before any timer is set")
        if self._virtual_clock is not None:
            raise RuntimeError("this hub already runs on a VirtualClock")
        saved, self.clock = self.clock, clock.now
        self._virtual_clock = clock
        return saved

    def remove_virtual_clock(self, saved: Callable[[], float]) -> None:
        """Back to the clock ``install_virtual_clock`` returned."""
        self.clock = saved
        self._virtual_clock = None

    def activity(self) -> tuple[int, bool, bool]:
        """(resumes so far, waiting in its poll now, a caller has handed it
        control): what the watchdog samples from its own thread."""
        return self._switches, self._in_poll, self._caller is not None

    def watchdog(self, milliseconds: float | None) -> Watchdog | None:
        """Report, from a monitor thread, a tasklet holding the hub too long.

        When the hub has not resumed anything nor polled for longer than
        ``milliseconds``, the stack of the code that holds it is logged as a
        warning (once per stall). ``None`` or 0 turns it off.
        """
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if milliseconds:
            self._watchdog = Watchdog(self, milliseconds / 1000.0)
            self._watchdog.start()
        return self._watchdog

    def close(self) -> None:
        """Kill the tasklets still alive, then release the hub's descriptors;
        this thread gets a new hub on next use.

        Each live tasklet gets TaskletExit where it waits (one not yet started
        never runs), so its ``finally`` blocks and finish hooks run, as
        greenlet does for a greenlet it collects. The hub runs only while
        that work is ready: a tasklet that waits again (catching TaskletExit,
        or a ``finally`` that blocks on I/O) is abandoned, as is everything
        when ``close()`` is called from inside a tasklet or a callback.
        """
        self.check_thread()
        self._kill_the_living()
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


# What the caller of run()/tick() asked the hub greenlet to do.
_TICK, _RUN_UNTIL, _RUN_ALL, _SERVE = "tick", "run until", "run all", "serve"


def _min_wait(wait: float, limit: float | None) -> float:
    """``wait`` (never below 0) within ``limit`` (None: no limit)."""
    wait = max(0.0, wait)
    return wait if limit is None else min(wait, limit)
