"""HTTP on microthreads: ``WSGIServer``, a PEP 3333 server over HTTP/1.1.

::

    from microthreads.wsgi import WSGIServer
    WSGIServer(("127.0.0.1", 8000), app).serve_forever()

Or from the shell: ``python -m microthreads.wsgi MODULE:APP --bind 127.0.0.1:8000``.
It needs the ``http`` extra (``pip install 'microthreads[http]'``, for
httptools' parser); ``import microthreads`` alone does not.

Each request's environ also carries ``microthreads.connection`` (the
request's ``microthreads.net.Connection``) and ``microthreads.upgrade``, a
callable ``upgrade(status, headers) -> Connection`` that hands the
connection over to another protocol (WebSocket): see DESIGN.md.
"""

from .server import FileWrapper, WSGIServer

__all__ = ["FileWrapper", "WSGIServer"]
