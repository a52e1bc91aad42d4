"""A node of a test cluster, run as its own OS process (in a network
namespace, for the partition tests): it joins the cluster and answers
commands, one JSON object per line on stdin, one per line on stdout.

    python cluster_node.py '{"node": "n0", "endpoints": [...], "cluster": "t", "lease_ttl": 3}'

Commands: ``register`` / ``whereis`` a global name, ``await_nodes`` (wait,
on the member's MemberUp/MemberDown messages, until this node sees exactly the
given nodes), ``quit``.  The first line it prints says it is ready, with
its OS pids (to check that a killed node leaves nothing behind) and the
directory of its otp node.
"""

from __future__ import annotations

import json
import sys
import time

import psutil

import otp
from otp import cluster, global_


def _view_after(view: dict, msg: object) -> None:
    if type(msg) is cluster.MemberUp:
        view[msg.node] = msg.info
    elif type(msg) is cluster.MemberDown:
        view.pop(msg.node, None)


def _await_nodes(view: dict, want: set, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while set(view) != want:
        left = deadline - time.monotonic()
        if left <= 0:
            return {"error": "timeout", "nodes": sorted(view)}
        try:
            msg = otp.receive(left, lambda m: type(m) in (cluster.MemberUp, cluster.MemberDown))
        except otp.Timeout:
            continue
        _view_after(view, msg)
    return {"nodes": sorted(view)}


def _answer(view: dict, command: dict) -> dict:
    op = command["op"]
    started = time.monotonic()
    try:
        if op == "register":
            out: dict = {"ok": global_.register_name(command["name"], otp.self(), timeout=command.get("timeout", 5.0))}
        elif op == "whereis":
            pid = global_.whereis_name(command["name"], timeout=command.get("timeout", 5.0))
            out = {"holder": None if pid is None else pid.node}
        elif op == "await_nodes":
            out = _await_nodes(view, set(command["nodes"]), command.get("timeout", 30.0))
        else:
            out = {"error": f"unknown op {op!r}"}
    except otp.OTPError as exc:
        out = {"error": type(exc).__name__, "why": str(exc)}
    out["elapsed"] = time.monotonic() - started
    return out


def main(config: dict) -> None:
    with otp.Node(name=config["node"], base_dir=config.get("base_dir", "/tmp")) as node:
        otp.trap_exit(True)
        cluster_config = cluster.ClusterConfig(
            tuple(config["endpoints"]), config["cluster"], config["node"], lease_ttl=config.get("lease_ttl", 3)
        )
        cluster.start_link(cluster_config)
        view = cluster.subscribe()
        pids = [p.pid for p in psutil.Process().children(recursive=True)]
        print(json.dumps({"ready": True, "dir": node.info.dir, "pids": pids}), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "quit":
                break
            print(json.dumps(_answer(view, command)), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
