"""The servers and microbenchmarks under test, one module per library.

Each runs as `python -m bench.peers.<name> MODE ...` (see common.py); the
harness starts it pinned to its own CPU. Keep this package free of imports:
a peer decides what it loads first.
"""
