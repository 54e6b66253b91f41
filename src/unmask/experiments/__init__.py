"""Reproductions of published experiments (run with the ``unmask`` command line)."""
