"""Benchmarks and stress scripts (run by hand or by tox, never by the unit suite).

``python -m stress`` runs the benchmark suite (``--help``; stress/README.md
explains what is measured, the statistics and the regression rule);
``python -m stress.soak`` runs the bounded soak.
"""
