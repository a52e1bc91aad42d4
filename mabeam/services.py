"""MABEAM's long-lived services, as supervised gen_servers.

Importing this module (``mabeam.start()`` does) registers them in
:data:`mabeam._app.SERVICES`, so they start under ``mabeam.sup`` after the
core children, in this order:

========================  ===================================================
``mabeam.tables``         keyed registry (unique keys) the services publish
                          read-mostly state into: readers use their replica
``mabeam.telemetry``      metric store, event bus, performance alerts
``mabeam.load_balancer``  task assignment over joined (monitored) agents
``mabeam.variables``      universal variables: CAS, history, subscribers,
                          consensus updates voted by agents
``mabeam.quotas``         per-agent resource quotas enforced on the OS process
========================  ===================================================

Each is one process because each owns one piece of state with a single
writer; none runs agent code or user functions inside a call (votes and
terminations run in tasks under ``mabeam.tasks``; telemetry handlers run in
the telemetry process by design, isolated by the event bus).  Start options
for a service can be put in :data:`OPTIONS` before ``mabeam.start()``, e.g.
``OPTIONS['mabeam.quotas'] = {'period': 0.05}``; most can also be changed
at run time (``configure_quotas``, ``lb_configure``, ``set_strategy``).
"""

from __future__ import annotations

from typing import Any

import otp

from ._app import SERVICES
from ._services._common import LOAD_BALANCER, QUOTAS, TABLES, TELEMETRY, VARIABLES
from ._services.load_balancer import (
    LoadBalancer,
    assign_task,
    lb_agents,
    lb_configure,
    lb_register,
    lb_unregister,
    load_stats,
    set_strategy,
    task_completed,
    update_metrics,
)
from ._services.quotas import (
    Enforcement,
    QuotaManager,
    QuotaStatus,
    configure_quotas,
    enforcements,
    quota_status,
    quota_subscribe,
    quota_unsubscribe,
    quotas,
    remove_quota,
    set_quota,
)
from ._services.telemetry import (
    DEFAULT_THRESHOLDS,
    Alert,
    TelemetryServer,
    active_alerts,
    alert_thresholds,
    attach,
    detach,
    emit,
    handler_failures,
    handlers,
    query,
    record,
    record_agent_metrics,
    series,
    set_alert_threshold,
    subscribe_alerts,
    telemetry_stats,
)
from ._services.variables import (
    APPROVALS,
    HistoryEntry,
    UpdateRejected,
    VariableError,
    VariableExists,
    VariableNotFound,
    VariableServer,
    VersionConflict,
    delete_variable,
    get_variable,
    list_variables,
    register_variable,
    subscribe_variable,
    unsubscribe_variable,
    update_variable,
    variable_history,
    variable_info,
)

__all__ = [
    "OPTIONS",
    "TABLES",
    "TELEMETRY",
    "LOAD_BALANCER",
    "VARIABLES",
    "QUOTAS",
    # load balancer
    "LoadBalancer",
    "lb_register",
    "lb_unregister",
    "assign_task",
    "task_completed",
    "update_metrics",
    "load_stats",
    "lb_agents",
    "set_strategy",
    "lb_configure",
    # telemetry and performance monitor
    "TelemetryServer",
    "Alert",
    "DEFAULT_THRESHOLDS",
    "record",
    "emit",
    "attach",
    "detach",
    "handlers",
    "handler_failures",
    "query",
    "series",
    "record_agent_metrics",
    "set_alert_threshold",
    "alert_thresholds",
    "active_alerts",
    "subscribe_alerts",
    "telemetry_stats",
    # universal variables
    "VariableServer",
    "VariableError",
    "VariableNotFound",
    "VariableExists",
    "VersionConflict",
    "UpdateRejected",
    "HistoryEntry",
    "APPROVALS",
    "register_variable",
    "get_variable",
    "update_variable",
    "delete_variable",
    "list_variables",
    "variable_info",
    "variable_history",
    "subscribe_variable",
    "unsubscribe_variable",
    # quotas
    "QuotaManager",
    "Enforcement",
    "QuotaStatus",
    "set_quota",
    "remove_quota",
    "configure_quotas",
    "quota_subscribe",
    "quota_unsubscribe",
    "enforcements",
    "quota_status",
    "quotas",
]

#: Start options per service name (read when the app builds its child specs).
OPTIONS: dict[str, dict[str, Any]] = {}


def _server(name: str, cls: type) -> otp.ChildSpec:
    return cls.child_spec(dict(OPTIONS.get(name, {})), id=name, name=name)


SERVICES[TABLES] = lambda: otp.Registry.child_spec(keys="unique", name=TABLES, id=TABLES)
SERVICES[TELEMETRY] = lambda: _server(TELEMETRY, TelemetryServer)
SERVICES[LOAD_BALANCER] = lambda: _server(LOAD_BALANCER, LoadBalancer)
SERVICES[VARIABLES] = lambda: _server(VARIABLES, VariableServer)
SERVICES[QUOTAS] = lambda: _server(QUOTAS, QuotaManager)
