"""The benchmark suite: real processes on 127.0.0.1, a bounded load generator, ratios to targets.

Run it with `python -m bench` (see docs/performance.md). It is not a test suite: it measures.
"""
