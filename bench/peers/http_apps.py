"""The HTTP tables' applications (WSGI and ASGI), and the gevent.pywsgi server.

``hello``: GET anything -> 200 "Hello, world!" (text/plain, with a
Content-Length). ``echo``: POST -> 200 with the request body. The same for
every row; each server adds its own Date and Server headers.

    python -m bench.peers.http_apps gevent --port P   # gevent.pywsgi.WSGIServer, no log
"""

import argparse

HELLO = b"Hello, world!"


def wsgi_app(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
    else:
        body = HELLO
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":          # lifespan: nothing to set up
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        return
    body = b""
    if scope["method"] == "POST":
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
    else:
        body = HELLO
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("server", choices=["gevent"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    from gevent.pywsgi import WSGIServer
    WSGIServer(("127.0.0.1", args.port), wsgi_app, log=None).serve_forever()


if __name__ == "__main__":
    main()
