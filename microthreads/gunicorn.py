"""A gunicorn worker: ``gunicorn -k microthreads.gunicorn.Worker MODULE:APP``.

Each worker process runs one hub and a ``microthreads.wsgi.WSGIServer`` on
every socket gunicorn gives it, a tasklet per connection, as gevent's worker
runs greenlets. It needs gunicorn and the ``http`` extra.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.workers.base import Worker as _GunicornWorker  # type: ignore[import-untyped]

from . import monkey
from .hub import Hub, get_hub
from .sync import Event
from .tasklet import joinall, run, spawn
from .timers import Timer


class Worker(_GunicornWorker):  # type: ignore[misc]
    """gunicorn's worker interface on microthreads.

    - ``monkey.patch_all()`` before the application is imported, so its own
      ``socket``, ``ssl`` and ``time.sleep`` calls (``requests``, redis-py)
      park only their tasklet.
    - A hub timer notifies the arbiter every ``min(1, --timeout / 2)``
      seconds: a worker whose requests are busy but whose hub turns is never
      killed for a timeout; one whose hub is stuck (a blocking call) is.
    - ``--worker-connections`` bounds the connections of each socket (503
      beyond); ``--keep-alive`` is the idle keep-alive timeout;
      ``--limit-request-line``, ``--limit-request-fields`` and
      ``--limit-request-field_size`` are the server's limits (0: none).
    - ``--max-requests`` (with its jitter): after that many requests the
      worker stops gracefully and the arbiter starts a fresh one.
    - SIGTERM (the arbiter's graceful stop, on its own TERM or on HUP's
      reload): stop accepting, close idle connections, let requests in flight
      finish within ``--graceful-timeout``. SIGQUIT and SIGINT: stop at once.
    - ``--access-logfile``: one line per request on gunicorn's access logger
      (the server's own combined format, not ``--access-logformat``).
    """

    def init_process(self) -> None:
        """Called by gunicorn in the new worker process: patch the stdlib
        (``monkey.patch_all()``) before the application is imported, then let
        gunicorn load it and call ``run()``. An import error of the app is
        gunicorn's to report (the worker exits and the arbiter says why).
        """
        monkey.patch_all()
        self._quit: Event | None = None
        self._hub: Hub | None = None
        self._graceful = True
        self._notifier: Timer | None = None
        super().init_process()           # loads the application, then calls run()

    def run(self) -> None:
        """Serve on this process's hub until gunicorn stops the worker (SIGTERM:
        gracefully; SIGQUIT, SIGINT: at once); called by gunicorn, not by users.
        """
        run(self._serve)

    # ------------------------------------------------------------ signals

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: stop gracefully (from a signal handler: the hub is told)."""
        self.alive = False
        self._wake()

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGQUIT, SIGINT: stop now."""
        self.alive = False
        self._graceful = False
        self._wake()

    def _wake(self) -> None:
        if self._hub is not None and self._quit is not None:
            self._hub.call_soon_threadsafe(self._quit.set)

    # ------------------------------------------------------------ serving

    def _serve(self) -> None:
        from gunicorn.sock import ssl_context  # type: ignore[import-untyped]

        from .net.server import Listener
        from .wsgi import WSGIServer

        self._hub = get_hub()
        self._quit = Event()
        cfg = self.cfg
        context = ssl_context(cfg) if cfg.is_ssl else None
        access_log = getattr(self.log, "access_log", None) if cfg.accesslog else None
        environ = {"wsgi.multiprocess": cfg.workers > 1}
        app = self._counted(self.wsgi)
        servers = []
        for sock in self.sockets:
            listener = Listener(sock.sock, ssl=context)
            servers.append(WSGIServer(
                listener, app, max_connections=cfg.worker_connections,
                keepalive_timeout=cfg.keepalive, access_log=access_log or False,
                max_request_line=cfg.limit_request_line or (1 << 20),
                max_headers=cfg.limit_request_fields or 32768,
                max_header_size=cfg.limit_request_field_size or (1 << 20),
                environ=environ).start())
        interval = min(1.0, self.timeout / 2) if self.timeout else 1.0
        self._notify_every(interval)
        try:
            while self.alive:
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
                self._quit.wait(interval)
            timeout = cfg.graceful_timeout if self._graceful else None
            stoppers = [spawn(server.stop, timeout) for server in servers]
            joinall(stoppers)
        finally:
            if self._notifier is not None:
                self._notifier.cancel()

    def _notify_every(self, interval: float) -> None:
        """Tell the arbiter this worker is alive, and come back in ``interval`` s."""
        self.notify()
        assert self._hub is not None
        self._notifier = self._hub.call_later(interval, self._notify_every, interval)

    def _counted(self, app: Any) -> Any:
        """``app``, counting requests against ``--max-requests``."""
        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            self.nr += 1
            if self.nr >= self.max_requests and self.alive:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
                assert self._quit is not None
                self._quit.set()
            return app(environ, start_response)
        return counted
