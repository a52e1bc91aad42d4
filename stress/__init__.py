"""Benchmarks and stress scripts (run by hand or by tox, never by the unit suite).

``python -m stress`` runs the benchmark suite; see ``python -m stress --help``.
"""
