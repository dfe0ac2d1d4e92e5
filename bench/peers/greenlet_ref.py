"""The reference under every greenlet library: two raw greenlets switching to
each other, no hub. `python -m bench.peers.greenlet_ref switch [--target S]`
prints nanoseconds per round trip (there and back: two switches, as a
sleep(0) through a hub is).
"""

import argparse
import math
from time import perf_counter

from greenlet import getcurrent, greenlet

from bench.peers import common


def switch_pairs(rounds):
    main = getcurrent()

    def partner():
        while True:
            main.switch()

    switch = greenlet(partner).switch
    started = perf_counter()
    for _ in range(rounds):
        switch()
    return perf_counter() - started


def main():
    parser = argparse.ArgumentParser(prog="python -m bench.peers.greenlet_ref")
    parser.add_argument("mode", choices=["switch"])
    parser.add_argument("--target", type=float, default=0.5)
    args = parser.parse_args()
    switch_pairs(1000)
    rounds = 10000
    elapsed = switch_pairs(rounds)
    rounds = max(rounds, math.ceil(rounds * args.target / elapsed))
    common.emit(switch_pair_ns=switch_pairs(rounds) / rounds * 1e9)


if __name__ == "__main__":
    main()
