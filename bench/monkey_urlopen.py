"""Patched urllib: N urlopen() calls that each take 0.3 s on the server, in N
tasklets at once against one after another.

    python bench/monkey_urlopen.py [--runs 3] [-n 5]

The server is ``tests/monkey_helpers.py serve`` (a threaded http.server whose
``/slow`` answers after 0.3 s); each client run is a fresh interpreter that
calls ``microthreads.monkey.patch_all()`` first and then uses
``urllib.request.urlopen`` unmodified. Prints each run and the medians.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                      "monkey_helpers.py")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-n", type=int, default=5)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, HELPER, "serve"], stdout=subprocess.PIPE,
                              text=True)
    try:
        url = f"http://127.0.0.1:{int(server.stdout.readline())}"
        times = {"concurrent": [], "serial": []}
        for run in range(args.runs):
            for mode in times:
                out = subprocess.run([sys.executable, HELPER, "client", "urlopen", url,
                                      str(args.n), "-", mode], capture_output=True, text=True,
                                     check=True).stdout
                result = json.loads(out)
                times[mode].append(result["elapsed"])
                print(f"run {run + 1} {mode}: {result['elapsed']:.3f} s,"
                      f" {result['ticks']} ticker ticks meanwhile", flush=True)
    finally:
        server.kill()
        server.wait()
    concurrent, serial = (statistics.median(times[m]) for m in ("concurrent", "serial"))
    print(f"\n{args.n} patched urlopen() calls of 0.3 s each, median of {args.runs}:"
          f" {concurrent:.3f} s at once, {serial:.3f} s one after another"
          f" ({serial / concurrent:.1f}x)")


if __name__ == "__main__":
    main()
