"""MICS benchmark suite: see suite.py and docs/performance.md."""
