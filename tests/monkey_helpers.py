"""Processes for the monkey-patching tests (patching is process-wide: each
scenario gets a fresh interpreter, as eventlet's isolated tests do).

``python tests/monkey_helpers.py serve [CERT KEY]``: a threaded ``http.server``
on a free loopback port (HTTPS with CERT/KEY) whose ``/slow`` answers after
0.3 s and ``/brief`` after 0.02 s; prints its port, then serves until killed.

``python tests/monkey_helpers.py client KIND TARGET N [CA] [serial]``: in a
process that calls ``monkey.patch_all()`` first, N unmodified clients of KIND
(``urlopen``, ``http.client``, ``requests``, ``redis``) each make one 0.3 s
request to TARGET, in N tasklets at once (or one after another with
``serial``), beside a ticker tasklet; prints JSON: the wall time of the
requests, the ticks seen meanwhile and the answers.
"""

import sys

if __name__ == "__main__" and sys.argv[1] == "client":
    from microthreads import monkey
    monkey.patch_all()      # before anything else is imported, as a user would

import json
import ssl
import time

#: What one request makes the server wait (seconds).
SLOW = 0.3
#: What a ``/brief`` request makes it wait.
BRIEF = 0.02


def serve(cert=None, key=None):
    import http.server

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/slow"):
                time.sleep(SLOW)          # the server is not patched: one thread per request
            elif self.path.startswith("/brief"):
                time.sleep(BRIEF)
            body = f"ok {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


def fetch(kind, target, i, ca):
    path = f"/slow/{i}"
    if kind == "urlopen":
        import urllib.request
        context = ssl.create_default_context(cafile=ca) if ca else None
        with urllib.request.urlopen(target + path, timeout=10, context=context) as reply:
            return reply.read().decode()
    if kind == "http.client":
        import http.client
        host, port = target.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", path)
        answer = conn.getresponse().read().decode()
        conn.close()
        return answer
    if kind == "requests":
        import requests
        return requests.get(target + path, timeout=10, verify=ca or True).text
    if kind == "redis":
        import redis
        client = redis.Redis.from_url(target, socket_timeout=10)
        answer = client.blpop([f"nothing:{i}"], timeout=SLOW)   # waits SLOW, then None
        client.close()
        return repr(answer)
    raise ValueError(kind)


def client(kind, target, count, ca=None, mode="concurrent"):
    import microthreads
    ticks = []

    def ticker():
        while True:
            microthreads.sleep(0.01)
            ticks.append(time.monotonic())

    def main():
        ticking = microthreads.spawn(ticker)
        started = time.monotonic()
        if mode == "serial":
            answers = [fetch(kind, target, i, ca) for i in range(count)]
        else:
            tasklets = [microthreads.spawn(fetch, kind, target, i, ca) for i in range(count)]
            answers = [t.get() for t in tasklets]
        elapsed = time.monotonic() - started
        ticking.kill()
        return {"elapsed": elapsed, "ticks": len(ticks), "answers": answers}

    print(json.dumps(microthreads.run(main)), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(*sys.argv[2:4])
    else:
        kind, target, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
        ca = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
        client(kind, target, count, ca, *sys.argv[6:7])
