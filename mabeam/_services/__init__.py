"""Implementations of the long-lived MABEAM services; the public entry point
is :mod:`mabeam.services`."""
