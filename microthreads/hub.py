"""The hub: one greenlet per OS thread that runs the loop.

It keeps a FIFO of ready entries (their format is this module's alone), a
heap of timers (``timers.py``) on a ``Clock``, and the live tasklets. Its
descriptors are its I/O manager's (``io.py``); other threads and signals
reach it through its waker (``waker.py``); the run modes (who handed it
control, until when) are ``handoff.py``'s, a deadlock's verdict
``deadlock.py``'s. Every wait is built from two verbs: ``park()`` the
current tasklet, ``schedule_wakeup()`` another.

A wake-up is stamped with the number of the wait it was meant for; each
resume bumps it, so a wake-up that arrives after its wait ended (a kill, a
timeout, another wake-up first) is dropped, never resuming a later wait.
That number (``_seq``) and a kill not yet delivered (``_kill_exc``) are kept
on every greenlet that parks (``WAIT_STATE``, Tasklet's slots), set by
``start()`` and ``wait_number()``.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from greenlet import getcurrent, greenlet

from .deadlock import schedule_errors
from .env import env_number
from .handoff import RUN_ALL, RUN_UNTIL, SERVE, TICK, Handoff
from .io import IOManager
from .stacks import Watchdog
from .timers import TIMED_OUT, Clock, MonotonicClock, Timer, TimerHeap
from .waker import Waker

if TYPE_CHECKING:
    from .tasklet import Tasklet

__all__ = ["TIMED_OUT", "WAIT_STATE", "Hub", "current_hub", "get_hub", "sleep"]

log = logging.getLogger("microthreads")

#: The attributes the hub keeps on each greenlet that parks (Tasklet's slots).
WAIT_STATE = ("_seq", "_kill_exc")

_local = threading.local()

#: While work keeps coming, poll for I/O at least once per this many wake-ups.
POLL_EVERY = 32


class _ThreadEnd:
    """Held by the thread-local beside its hub: dropped when the thread ends."""

    __slots__ = ("__weakref__",)


def get_hub() -> Hub:
    """This OS thread's hub, made on first use.

    A hub its thread never ``close()``\\ s releases its descriptors when the
    thread ends.
    """
    try:
        return _local.hub  # type: ignore[no-any-return]
    except AttributeError:
        hub = _local.hub = Hub()
        end = _local.end = _ThreadEnd()
        weakref.finalize(end, hub.release).atexit = False
        return hub


def current_hub() -> Hub | None:
    """This OS thread's hub if it has one; never makes one (for finalizers)."""
    return getattr(_local, "hub", None)


def _forget_hub(hub: Hub) -> None:
    if getattr(_local, "hub", None) is hub:
        del _local.hub
        del _local.end


def sleep(seconds: float = 0) -> None:
    """Suspend the current tasklet for ``seconds``; the hub runs others meanwhile.

    ``sleep(0)`` yields once: every other tasklet that is ready runs before
    this one resumes, so tasklets looping on ``sleep(0)`` interleave in order.
    A kill or a Timeout interrupts it. (``microthreads.sleep``: here, with
    ``Hub.yield_now`` inlined, because ``sleep(0)`` is the hottest call.)
    """
    current: Any = getcurrent()
    try:
        hub: Hub = current._hub                       # a tasklet's runner knows its hub
    except AttributeError:                            # (a slot: faster than the thread-local)
        hub = get_hub()                               # not a tasklet: the main greenlet
        if seconds > 0:
            hub.park(seconds)
        else:
            hub.yield_now()
        return
    if seconds > 0:
        hub.park(seconds)
    else:                                             # Hub.yield_now, inlined
        hub._ready.append((current._seq, current, None))
        hub._switch()


class Hub:
    """The loop of one OS thread. Get it with ``get_hub()``.

    User code runs in tasklets, never in the hub's own greenlet. Verbs for
    embedding: ``tick``, ``fileno``, ``next_deadline``, ``clock``,
    ``set_clock``, ``call_soon_threadsafe``, ``watchdog``, ``close``. For
    building primitives: ``park``, ``schedule_wakeup``, ``schedule_throw``,
    ``schedule_kill``, ``cancel_wakeups``, ``yield_now``, ``call_soon``,
    ``call_at``, ``call_later``, ``poll_soon``, ``wait_for_thread``, and the
    descriptor verbs of ``io.py`` (``wait_readable``, ``close_fd``, ...). For
    the runtime's own modules: ``start``, ``start_later``, ``retire``,
    ``interrupt``, ``resume``.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or MonotonicClock()
        #: The hub's clock: ``now()`` of its ``Clock``, absolute seconds.
        self.clock: Callable[[], float] = self._clock.now
        self._sleep_time = self._clock.deadline_to_sleep_time
        #: The OS thread this hub belongs to.
        self.thread_id = threading.get_ident()
        # (seq, greenlet, value): a wake-up for wait number seq of greenlet;
        # (None, callback, args): a call. Run in FIFO order; private to this module.
        self._ready: deque[tuple[Any, Any, Any]] = deque()
        self._timers = TimerHeap()
        self._threads_at_work = 0          # run_in_thread jobs not yet returned
        self._live: dict[Tasklet, None] = {}   # started or scheduled, not ended; spawn order
        self._interrupt: BaseException | None = None   # to raise in the caller
        self._switches = 0                 # resumes so far: the watchdog watches it
        self._polled_at = -POLL_EVERY      # _switches at the last poll
        self._in_poll = False
        self._watchdog: Watchdog | None = None
        self._closed = False
        root = getcurrent()
        while root.parent is not None:
            root = root.parent
        self.wait_number(root)             # the main greenlet can park too
        self._greenlet = greenlet(self._main, parent=root)
        self._switch = self._greenlet.switch
        io = self._io = IOManager(self)
        self._poller_poll = io.poller.poll
        # The descriptor verbs are the I/O manager's own (io.py documents them).
        self.wait_readable = io.wait_readable
        self.wait_writable = io.wait_writable
        self.add_reader, self.remove_reader = io.add_reader, io.remove_reader
        self.add_writer, self.remove_writer = io.add_writer, io.remove_writer
        self.forget_fd, self.close_fd = io.forget_fd, io.close_fd
        self._waker = Waker(self._ready, self.interrupt)
        self._threadsafe = self._waker.items   # sent from other threads, not yet drained
        io.add_reader(self._waker.fileno(), self._waker.drain)
        io.waiters -= 1                    # the waker alone never keeps the loop alive
        self._handoff = Handoff(self, self._waker, self._has_work)
        self._enter = self._handoff.enter
        ms = env_number("MICROTHREADS_WATCHDOG_MS", "milliseconds (0: off)")
        if ms:
            self.watchdog(ms)

    def __repr__(self) -> str:
        return (f"<Hub thread={self.thread_id} tasklets={len(self._live)} "
                f"ready={len(self._ready)} timers={len(self._timers)} fds={len(self._io)}>")

    @property
    def greenlet(self) -> greenlet:
        """The hub's own greenlet: every tasklet's parent. It never waits."""
        return self._greenlet

    # ------------------------------------------------------------ the loop

    def _main(self) -> None:
        """The hub greenlet's body: iterate, and hand control back when asked."""
        handoff = self._handoff
        live = self._live
        while True:
            try:
                self._iterate()
            except BaseException as exc:            # a bug of ours, or a signal
                if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    log.critical("microthreads hub: internal error (this is a bug)", exc_info=True)
                self._interrupt = exc
            if self._interrupt is not None:
                interrupt, self._interrupt = self._interrupt, None
                handoff.throw_back(interrupt)
            # RUN_UNTIL's target cannot have finished while it is live (not yet
            # retired): a dict lookup instead of two calls on every turn
            elif (handoff.mode != RUN_UNTIL or handoff.target not in live) and handoff.done():
                handoff.hand_back()

    def _iterate(self) -> None:
        """One loop iteration (its contract: docs/DESIGN.md, "A loop turn"):
        1 the entries ready when it began; 2 how long I/O may wait (2a
        deadlock, 2b a jumping clock); 3 the poll; 4 the timers due by now."""
        self._run_ready()                                    # 1
        limit: float | None
        if self._ready or self._threadsafe or self._interrupt is not None:
            timeout: float | None = 0                        # 2: work is queued: no wait
        elif self._handoff.mode == TICK:
            limit = self._handoff.tick_timeout               # the host's budget
            timeout = 0 if limit == 0 else self._wait_for_timers(limit)
        elif self._handoff.done():
            timeout = 0
        else:
            timeout = self._wait_for_timers(None)
        # Thread-safe callbacks reach _ready only through the waker's fd: poll
        # for them, or a signal handler's call_soon_threadsafe() spins forever.
        # Nothing queued (a tick(0), a due timer): poll, or I/O is never seen.
        if timeout != 0 or not self._ready or self._threadsafe or \
                self._switches - self._polled_at >= POLL_EVERY:
            self._polled_at = self._switches
            self._io.dispatch(self._poll(timeout))           # 3
        if self._timers.heap:                                # 4 (most turns have none)
            self._timers.fire_due(self.clock())

    def _wait_for_timers(self, limit: float | None) -> float | None:
        """Phase 2 with nothing queued: how long the poll may wait, within
        ``limit`` (None: no limit), for the earliest timer; 2a and 2b."""
        deadline = self._timers.next_deadline()
        if deadline is None:
            if self._handoff.mode != TICK and not self._can_wake() \
                    and self._nothing_can_wake() is not None:
                return 0                                     # 2a
            return limit
        wait = self._sleep_time(deadline)
        if limit is not None and wait > limit:
            return limit
        if wait and self._clock.autojump_threshold is not None:
            return self._autojump(deadline, limit)           # 2b
        return wait

    def _autojump(self, deadline: float, limit: float | None) -> float | None:
        """Phase 2b, a clock that may jump: poll real I/O once (up to its
        ``autojump_threshold`` real seconds) and, if nothing came, move the
        clock to ``deadline`` (its timers fire in phase 4). A thread job at
        work ends in real time: the hub waits for it instead."""
        if self._threads_at_work:
            return limit
        if self._io.waiters:
            events = self._poll(self._clock.autojump_threshold)
            if events:
                self._io.dispatch(events)
                return 0
        self._clock.jump_to(deadline)
        return 0

    def poll_soon(self) -> None:
        """Make the next iteration poll for I/O even with work queued: for a
        tasklet yielding after a long run of work (``nonblocking.EagerBudget``),
        so others' I/O gets in after that run, not after POLL_EVERY of them."""
        self._polled_at = self._switches - POLL_EVERY

    def _run_ready(self) -> None:
        """Phase 1: the entries ready when it began (``_ready``'s, in order)."""
        ready = self._ready
        popleft = ready.popleft
        for _ in range(len(ready)):          # a snapshot: newcomers wait a turn
            seq, target, arg = popleft()
            if seq is None:
                try:
                    target(*arg)
                except Exception:
                    log.exception("microthreads: callback %r failed", target)
            # The rest is resume(target, seq, arg) inlined: this is the hottest path.
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
            return self._poller_poll(timeout)
        finally:
            self._in_poll = False

    # ---------------------------------------------- what is left

    def _can_wake(self) -> bool:
        """Is anything left that could wake a tasklet: ready work, a timer, a
        watched descriptor or a thread job (signal handlers are asked apart)?"""
        return bool(self._ready or self._threadsafe or len(self._timers) or self._io.waiters
                    or self._threads_at_work)

    def _has_work(self) -> bool:
        return bool(self._live) or self._can_wake()

    def interrupt(self, exc: BaseException) -> None:
        """Raise ``exc`` to the caller of run()/tick() at the end of this
        iteration (a tasklet that died of KeyboardInterrupt or SystemExit, Ctrl-C)."""
        self._interrupt = exc

    # ------------------------------------------------------------ deadlock

    def _nothing_can_wake(self, host_handlers: tuple[Any, ...] = ()) -> bool | None:
        """Phase 2a: nothing is left that could wake a tasklet. None if a
        Python signal handler other than ``host_handlers`` still may (the poll
        blocks on signals); else whether DeadlockError was scheduled for
        anyone blocked (``deadlock.py``)."""
        if self._waker.signal_handlers_installed(host_handlers):
            return None
        handoff = self._handoff
        return schedule_errors(self, self._live,
                               handoff.caller if handoff.mode == SERVE else None)

    def detect_deadlock(self, host_handlers: tuple[Any, ...] = ()) -> bool:
        """For a host loop with nothing left that could act (``microthreads.aio``):
        if tasklets are blocked and nothing the hub knows of could wake them
        (ready work, a timer, a watched descriptor, a thread job, a Python
        signal handler other than ``host_handlers``, the host's own), each
        gets DeadlockError at the next tick, as under ``run()``: True; else False."""
        return not self._can_wake() and bool(self._nothing_can_wake(host_handlers))

    # ----------------------------------------------------- verbs: tasklets

    def start(self, tasklet: Tasklet) -> None:
        """Count ``tasklet`` as live and switch into it in the next iteration
        (after the entries already ready). Used by ``spawn()``."""
        self._admit(tasklet)
        self._ready.append((0, tasklet, None))

    def start_later(self, seconds: float, tasklet: Tasklet) -> Timer:
        """Count ``tasklet`` as live and switch into it ``seconds`` from now;
        the Timer, which ``cancel()`` disarms. Used by ``spawn_later()``."""
        self._admit(tasklet)
        return self.call_later(seconds, self.resume, tasklet, 0, None)

    def _admit(self, tasklet: Any) -> None:
        tasklet._seq = 0                      # its wait state (WAIT_STATE)
        tasklet._kill_exc = None
        self._live[tasklet] = None

    def retire(self, tasklet: Tasklet) -> None:
        """``tasklet`` has ended: it no longer keeps ``run()`` going."""
        self._live.pop(tasklet, None)

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
        timer = self.call_later(timeout, self.resume, current, self.wait_number(current),
                                TIMED_OUT)
        try:
            return self._suspend(current)
        finally:
            timer.cancel()

    def _suspend(self, current: Any) -> Any:
        if current.parent is self._greenlet:          # a tasklet: the fast path
            return self._switch()
        self.wait_number(current)
        return self._enter(SERVE)

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
                self._ready.append((self.wait_number(current), current, None))
            self.park()

    def wait_for_thread(self, arm: Callable[[Callable[[], None]], None]) -> None:
        """Park the current greenlet until a job in another OS thread is done.

        ``arm(done)`` is called at once; ``done()`` must then be called exactly
        once, from any thread, when the job ends. Meanwhile the job counts as
        work (``run()`` does not return, no DeadlockError, a jumping clock
        waits in real time). A kill or Timeout ends the wait early; the job's
        later ``done()`` is then dropped. Used by ``run_in_thread``.
        """
        waiter = getcurrent()
        seq = self.wait_number(waiter)
        self._threads_at_work += 1

        def finished() -> None:                       # back on the hub
            self._threads_at_work -= 1
            self.resume(waiter, seq, None)

        arm(lambda: self.call_soon_threadsafe(finished))
        self.park()

    # ---------------------------------------------------- verbs: waking

    def schedule_wakeup(self, g: Any, value: Any = None) -> None:
        """Resume the parked greenlet ``g`` soon, its ``park()`` returning
        ``value``; ignored if that wait has ended by the time the hub gets to it."""
        self._ready.append((g._seq, g, value))

    def schedule_throw(self, g: Any, exc: BaseException) -> None:
        """Raise ``exc`` in the parked greenlet ``g`` soon, at its ``park()``."""
        self._ready.append((None, self.resume, (g, g._seq, None, exc)))

    def schedule_kill(self, g: Any, exc: BaseException) -> None:
        """Deliver ``exc`` to the parked greenlet ``g`` at its next resumption:
        whatever wakes it first (this call's own wake-up, an I/O event, a
        timer) raises ``exc`` instead of returning; its other wake-ups become
        stale. Used by ``Tasklet.kill``."""
        g._kill_exc = exc
        self._ready.append((g._seq, g, None))

    def cancel_wakeups(self, g: Any) -> None:
        """Make every wake-up already scheduled for ``g``'s current wait stale
        (a tasklet killed before it started: its start is one)."""
        g._seq = self.wait_number(g) + 1
        g._kill_exc = None                   # a kill not yet delivered is one of them

    def throw_now(self, g: Any, exc: BaseException) -> None:
        """From the hub only: raise ``exc`` in the parked greenlet ``g`` at once."""
        if g.dead:
            return
        self.resume(g, g._seq, None, exc)

    def resume(self, g: Any, seq: int, value: Any, exc: BaseException | None = None) -> None:
        """From the hub only: the one resume path. Drop a stale wake-up (``seq``
        is not ``g``'s current wait number), bump the wait number, then
        deliver a pending kill, else ``exc``, else ``value``, at once."""
        # _run_ready inlines this for wake-ups without exc (a hot path).
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

    @staticmethod
    def new_waiter(g: Any) -> None:
        """Give ``g``, a greenlet the hub has not seen, its wait state now (wait
        number 0, no kill pending): what ``wait_number``'s first call would do,
        without the failed lookup (a caught AttributeError costs ~0.5 us)."""
        g._seq = 0
        g._kill_exc = None

    @staticmethod
    def wait_number(g: Any) -> int:
        """The number of ``g``'s current wait, for ``resume``; a greenlet new to
        the hub gets its wait state here, from ``new_waiter`` (the one place it
        is made for greenlets that are not tasklets)."""
        try:
            return g._seq  # type: ignore[no-any-return]
        except AttributeError:
            Hub.new_waiter(g)
            return 0

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the hub in its next iteration (FIFO)."""
        self._ready.append((None, callback, args))

    def call_at(self, deadline: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` on the hub at ``deadline`` (hub clock); a Timer."""
        return self._timers.add(deadline, callback, args)

    def call_later(self, seconds: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` on the hub ``seconds`` from now; a Timer."""
        return self._timers.add(self.clock() + seconds, callback, args)

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        """From any OS thread: run ``callback(*args)`` on this hub soon, waking
        it from its poll. Safe from signal handlers."""
        self._waker.send((None, callback, args))

    def report_error(self, tasklet: Tasklet, exc: BaseException) -> None:
        """Report a tasklet that died of ``exc`` with nobody joining it, once.
        Replace it (on the instance or a subclass) to send crashes elsewhere;
        the default logs the traceback."""
        log.error("Tasklet %r crashed with %s (nobody joined it):", tasklet.name,
                  type(exc).__name__, exc_info=(type(exc), exc, exc.__traceback__))

    def check_thread(self) -> None:
        """Raise RuntimeError unless called from the hub's own OS thread."""
        if threading.get_ident() != self.thread_id:
            raise RuntimeError(
                f"this hub belongs to thread {self.thread_id}, not to thread "
                f"{threading.get_ident()}: use hub.call_soon_threadsafe() from other threads")

    # ---------------------------------------------------- embedding

    def run(self, tasklet: Tasklet | None = None) -> None:
        """Run the loop until ``tasklet`` has finished (hooks included) or,
        with None, until nothing is left. Use ``microthreads.run()``."""
        if getcurrent().parent is self._greenlet:
            raise RuntimeError("microthreads.run() is not re-entrant: it was called from inside"
                               " a tasklet (spawn() and join() instead)")
        if tasklet is None:
            self._enter(RUN_ALL)
        elif not tasklet.finished:
            self._enter(RUN_UNTIL, tasklet)

    def tick(self, timeout: float | None = 0) -> bool:
        """One loop iteration, for a foreign main loop (a game loop, a GUI):
        runs the ready entries, waits for I/O at most ``timeout`` seconds
        (less if a timer is due sooner; 0 polls), wakes what is ready and
        fires due timers. False when nothing is left (no tasklet, timer,
        descriptor or thread job). No deadlock detection: a host loop may feed
        work later. A Ctrl-C during the tick raises KeyboardInterrupt here."""
        if getcurrent().parent is self._greenlet:
            raise RuntimeError("Hub.tick() was called from inside a tasklet")
        return bool(self._enter(TICK, tick_timeout=timeout))

    def fileno(self) -> int:
        """A descriptor readable when the hub has I/O or a thread wake-up: a
        host loop waits on it (and on ``next_deadline()``) instead of polling."""
        return self._io.poller.fileno()

    def next_deadline(self) -> float | None:
        """When the hub next needs a tick, as an absolute ``clock()`` time: now
        if work is ready; the earliest timer; None if it waits only on I/O."""
        if self._ready or self._threadsafe:
            return self.clock()
        return self._timers.next_deadline()

    def current_clock(self) -> Clock:
        """The ``Clock`` this hub runs on (``timers.Clock``)."""
        return self._clock

    def set_clock(self, clock: Clock, keep_timers: bool = False) -> Clock:
        """Run this hub on ``clock`` (the ``timers.Clock`` protocol); returns
        the clock it replaces. RuntimeError if a timer is set (its deadline is
        on the old clock), unless ``keep_timers``: they stay as they are."""
        if len(self._timers) and not keep_timers:
            raise RuntimeError("a new clock must be set before any timer is")
        saved, self._clock = self._clock, clock
        self.clock = clock.now
        self._sleep_time = clock.deadline_to_sleep_time
        return saved

    def activity(self) -> tuple[int, bool, bool]:
        """(resumes so far, waiting in its poll now, a caller has handed it
        control): what the watchdog samples from its own thread."""
        return self._switches, self._in_poll, self._handoff.caller is not None

    def watchdog(self, milliseconds: float | None) -> Watchdog | None:
        """Report, from a monitor thread, the stack of the code holding the hub
        once per stall (``Watchdog``): the hub has not resumed anything nor
        polled for longer than ``milliseconds``. ``None`` or 0 turns it off."""
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if milliseconds:
            self._watchdog = Watchdog(self, milliseconds / 1000.0)
            self._watchdog.start()
        return self._watchdog

    def release(self) -> None:
        """Stop the watchdog and close the hub's descriptors (poller, wake
        pipe), from any thread, without running anything; idempotent. For a
        hub whose thread ended: ``get_hub()`` arranges it; else use ``close()``."""
        if self._closed:
            return
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.stop()
        self._waker.close()
        self._io.close()

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
        self.release()
        self._live.clear()
        self._ready.clear()
        _forget_hub(self)

    def _kill_the_living(self) -> None:
        """close()'s first step: TaskletExit to every live tasklet, and their ends run."""
        current = getcurrent()
        if not self._live or self._handoff.caller is not None or current is self._greenlet \
                or current.parent is self._greenlet:
            return                             # nobody to kill, or the hub cannot run now
        living = list(self._live)
        for tasklet in living:
            tasklet.kill(block=False)
        while self._ready and not all(tasklet.finished for tasklet in living):
            self.tick(0)

