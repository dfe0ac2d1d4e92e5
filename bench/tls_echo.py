"""TLS against plain TCP on one echo server, and 200 concurrent handshakes.

    python bench/tls_echo.py [--runs 3] [--seconds 3] [--clients 20]

The server is a microthreads ``StreamServer`` echoing lines, in its own
process (TCP, or TLS with an EC P-256 certificate made here with the openssl
program); the client is one microthreads process: ``--clients`` connections,
each sending a 64-byte line and waiting for its echo, for ``--seconds``.
TCP and TLS runs alternate, ``--runs`` each; the medians are printed with
their ratio, and the median of each run's TLS/TCP ratio (the pair ran back to
back, so it shares the machine's load of the moment). Then 200 TLS clients
connect at once (handshake, one echo, close), ``--runs`` times against a
fresh server each: the median wall time.
Not part of ``make bench``: a check of what TLS costs here, as a ratio.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

LINE = b"x" * 63 + b"\n"


def serve(kind, cert, key):
    import ssl

    import microthreads
    from microthreads import net

    def echo(conn):
        for line in conn:
            conn.write(line)

    context = None
    if kind == "tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)

    def main():
        server = net.StreamServer(("127.0.0.1", 0), echo, ssl=context, backlog=512).start()
        print(server.address[1], flush=True)
        server.serve_forever()

    microthreads.run(main)


def _start_server(kind, cert, key):
    proc = subprocess.Popen([sys.executable, __file__, "serve", kind, cert, key],
                            stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def _client_context(cert):
    import ssl
    return ssl.create_default_context(cafile=cert)


def echo_rate(kind, port, cert, clients, seconds):
    """Requests per second over ``clients`` connections for ``seconds``."""
    import microthreads
    from microthreads import net
    counts = []

    def client(deadline):
        context = _client_context(cert) if kind == "tls" else None
        conn = net.connect(("127.0.0.1", port), ssl=context, server_hostname="localhost")
        hub = microthreads.get_hub()
        done = 0
        while hub.clock() < deadline:
            conn.sendall(LINE)
            conn.recv_line()
            done += 1
        counts.append(done)
        conn.close()

    def main():
        deadline = microthreads.get_hub().clock() + seconds
        microthreads.joinall([microthreads.spawn(client, deadline) for _ in range(clients)])

    microthreads.run(main)
    return sum(counts) / seconds


def handshakes(port, cert, count=200):
    """Wall time for ``count`` clients connecting at once: handshake, one echo, close."""
    import microthreads
    from microthreads import net
    context = _client_context(cert)

    def client():
        conn = net.connect(("127.0.0.1", port), ssl=context, server_hostname="localhost",
                           timeout=60)
        conn.sendall(LINE)
        conn.recv_line()
        conn.close()

    def main():
        started = time.perf_counter()
        microthreads.joinall([microthreads.spawn(client) for _ in range(count)])
        return time.perf_counter() - started

    return microthreads.run(main)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost"], check=True, capture_output=True)
        rates = {"tcp": [], "tls": []}
        for run in range(args.runs):
            for kind in ("tcp", "tls"):
                proc, port = _start_server(kind, cert, key)
                try:
                    rates[kind].append(echo_rate(kind, port, cert, args.clients, args.seconds))
                finally:
                    proc.kill()
                    proc.wait()
                print(f"run {run + 1} {kind}: {rates[kind][-1]:,.0f} req/s", flush=True)
        walls = []
        for run in range(args.runs):
            proc, port = _start_server("tls", cert, key)
            try:
                walls.append(handshakes(port, cert))
            finally:
                proc.kill()
                proc.wait()
            print(f"run {run + 1}: 200 concurrent TLS handshakes in {walls[-1]:.3f} s",
                  flush=True)
    tcp, tls = statistics.median(rates["tcp"]), statistics.median(rates["tls"])
    paired = statistics.median(b / a for a, b in zip(rates["tcp"], rates["tls"], strict=True))
    import ssl
    print(f"\n{ssl.OPENSSL_VERSION}, Python {sys.version.split()[0]}, {args.clients} clients,"
          f" 64-byte lines, {args.seconds:g} s, median of {args.runs}")
    print(f"echo over TCP: {tcp:,.0f} req/s")
    print(f"echo over TLS: {tls:,.0f} req/s ({tls / tcp:.2f}x TCP; median of the per-run"
          f" ratios {paired:.2f}x)")
    print(f"200 concurrent handshakes (+ one echo each): {statistics.median(walls):.3f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(*sys.argv[2:5])
    else:
        main()
