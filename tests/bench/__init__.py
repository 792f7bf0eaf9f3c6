"""``make bench`` (``python -m tests.bench [SECTION ...]``): medians of what we
promise to be fast, each beside a baseline measured in the same run (never a lone
absolute time).

One module per section (foundation, lifecycle, terminal, preview, code, files,
scale, classroom), each a function of a running test server; ``__main__`` runs the
chosen sections on one server of its own (tests/server.py) on the real engine and
prints a table; the raw numbers go to bench-results/bench.json. The modules are not
named ``test_*``, so pytest never collects them.
"""
