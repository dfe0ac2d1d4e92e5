"""A WSGI app that says whether time.sleep was patched when it was imported,
and sleeps ?sleep=SECONDS with time.sleep before answering."""

import os
import time
from urllib.parse import parse_qs

from microthreads import monkey

PATCHED_AT_IMPORT = monkey.is_patched("time")


def application(environ, start_response):
    query = parse_qs(environ["QUERY_STRING"])
    if "sleep" in query:
        time.sleep(float(query["sleep"][0]))
    body = (f"patched={PATCHED_AT_IMPORT} pid={os.getpid()} "
            f"scheme={environ['wsgi.url_scheme']}").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def make_app():
    """A factory, for MODULE:make_app()."""
    return application
