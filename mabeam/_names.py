"""Registered names of the application's own processes.

A leaf module: features import the names of the supervisors they start
children under from here, and :mod:`mabeam._app` imports the features' child
specs, so neither imports the other's package at load time.
"""

from __future__ import annotations

__all__ = ["APP", "TOPICS", "COORDINATION", "ECONOMICS", "TASKS"]

#: The application's top supervisor.
APP = "mabeam.sup"
#: The keyed registry (duplicate keys) of pub/sub topics.
TOPICS = "mabeam.topics"
#: Dynamic supervisor of coordination sessions and primitives.
COORDINATION = "mabeam.coordination"
#: Dynamic supervisor of auctions and markets.
ECONOMICS = "mabeam.economics"
#: Task supervisor for short helper work.
TASKS = "mabeam.tasks"
