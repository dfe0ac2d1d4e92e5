"""The runtime's exceptions, in one place so every module can raise them."""

from greenlet import GreenletExit


class TaskletExit(GreenletExit):
    """Raised inside a tasklet by ``kill()``: a normal end, not an error.

    It derives from ``BaseException`` (through ``greenlet.GreenletExit``), so a
    user's ``except Exception`` does not swallow it. A tasklet that ends with
    it is ``successful()``, its ``value`` and ``exception`` are None, and
    nothing is logged.
    """


class DeadlockError(RuntimeError):
    """Raised in every blocked wait when nothing left could ever wake it.

    The message names each blocked tasklet, what it waits on and where
    (file:line), e.g.::

        DeadlockError: nothing left can wake these tasklets:
          <Tasklet 'consumer'> waits on Queue.get() at app.py:42
    """


class NeverRanWarning(RuntimeWarning):
    """Warned at interpreter exit when the main thread's hub never ran.

    Tasklets were spawned (a ``StreamServer`` started is one: its accept
    loop) but the program ended without ``microthreads.run()``, so none of
    them ran. The warning names them; filter it as any warning
    (``warnings.filterwarnings("ignore", category=NeverRanWarning)``; the
    command line's ``-W`` cannot name it: it is read before the package
    can be imported).
    """
