"""The benchmark of ozonetel-purge: ``python -m bench`` (``make bench``).

Not part of the test suite: it starts real processes (redis-server, the
simulator, one to eight workers, the importer), measures them from the
outside, and prints what it saw. See ``bench/README.md``.
"""
