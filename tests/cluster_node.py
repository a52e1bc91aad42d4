"""A node of a test cluster, run as its own OS process (in a network
namespace, for the partition tests): it joins the cluster and answers
commands, one JSON object per line on stdin, one per line on stdout.

    python cluster_node.py '{"node": "n0", "endpoints": [...], "cluster": "t", "lease_ttl": 3}'

(:class:`RemoteNode` starts it and talks to it, from a test.)  With
``"discover": true`` the node listens on 127.0.0.1 with a fresh key pair
and finds the other nodes through the store.

With ``"listen_host": ADDRESS`` it listens on that address instead (its
namespace's, in the partition tests), with discovery, and
``"net_ticktime"`` sets its tick time.

Commands: ``register`` / ``whereis`` a global name, ``await_nodes`` (wait,
on the member's MemberUp/MemberDown messages, until this node sees exactly the
given nodes), ``connect`` (to each of ``nodes``), ``rpc_node`` (a call on
another node), ``pg_join`` (the node's root process joins ``group`` of the
default pg scope), ``pg_await`` (wait, on the PgJoin/PgLeave messages of a
monitor of the scope taken at start, until the members of ``group`` are
exactly one per given node), ``quit``.  The first line it prints says it is ready, with
its OS pids (to check that a killed node leaves nothing behind) and the
directory of its otp node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import psutil

import otp
from otp import cluster, global_
from otp._keys import generate_keypair

#: How long the test side waits for a node's answer beyond its own timeout.
WAIT = 60.0
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RemoteNode:
    """This script run as a node of the test's cluster: ``prefix`` is what
    runs it (``ip netns exec NS``, or nothing), ``options`` go into its
    configuration (``cluster``, ``lease_ttl``, ``discover``)."""

    def __init__(self, name: str, endpoints: list[str], base_dir: str, prefix: Sequence[str] = (), **options) -> None:
        self.name = name
        config = {"node": name, "endpoints": endpoints, "base_dir": base_dir, "cluster": "test", **options}
        argv = [*prefix, sys.executable, os.path.abspath(__file__), json.dumps(config)]
        env = {**os.environ, "PYTHONPATH": _ROOT}
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=base_dir
        )
        self.ready = self._line(WAIT)
        assert self.ready.get("ready"), self.ready

    def _line(self, timeout: float) -> dict:
        """The node's next line; the read runs in a thread so that a node
        that says nothing fails the test at ``timeout`` instead of hanging."""
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not out or not out[0]:
            raise AssertionError(f"{self.name} said nothing within {timeout} s (exit code {self.proc.poll()})")
        return json.loads(out[0])

    def ask(self, op: str, **args) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._line(WAIT + args.get("timeout", 0))

    def quit(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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


def _await_pg(ref: otp.Ref, group: str, want: list, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        members = sorted(p.node for p in otp.pg.get_members(group))
        if members == sorted(want):
            return {"nodes": members}
        left = deadline - time.monotonic()
        if left <= 0:
            return {"error": "timeout", "nodes": members}
        try:
            otp.receive(left, lambda m: type(m) in (otp.pg.PgJoin, otp.pg.PgLeave) and m.ref == ref)
        except otp.Timeout:
            continue


def _answer(view: dict, command: dict, pg_ref: otp.Ref | None = None) -> dict:
    op = command["op"]
    started = time.monotonic()
    try:
        if op == "register":
            out: dict = {"ok": global_.register_name(command["name"], otp.self(), timeout=command.get("timeout", 5.0))}
        elif op == "whereis":
            pid = global_.whereis_name(command["name"], timeout=command.get("timeout", 5.0))
            out = {"holder": None if pid is None else pid.node}
        elif op == "rpc_node":  # a call that needs a connection to the other node
            out = {"node": otp.rpc.call(command["node"], otp.node, timeout=command.get("timeout", 10.0))}
        elif op == "connect":
            timeout = command.get("timeout", 10.0)
            out = {"up": {n: otp.connect_node(n, timeout=timeout) for n in command["nodes"] if n != otp.node()}}
        elif op == "pg_join":
            otp.pg.join(command["group"])
            out = {"ok": True}
        elif op == "pg_await" and pg_ref is not None:
            out = _await_pg(pg_ref, command["group"], command["nodes"], command.get("timeout", 30.0))
        elif op == "await_nodes":
            out = _await_nodes(view, set(command["nodes"]), command.get("timeout", 30.0))
        else:
            out = {"error": f"unknown op {op!r}"}
    except otp.OTPError as exc:
        out = {"error": type(exc).__name__, "why": str(exc)}
    out["elapsed"] = time.monotonic() - started
    return out


def main(config: dict) -> None:
    listen: dict = {}
    if config.get("listen_host"):
        config["discover"] = True
        listen = {"listen": f"tcp://{config['listen_host']}:0", "keys": generate_keypair()}
        listen["net_ticktime"] = config.get("net_ticktime", 8.0)
    elif config.get("discover"):
        listen = {"listen": "tcp://127.0.0.1:0", "keys": generate_keypair()}
    with otp.Node(name=config["node"], base_dir=config.get("base_dir", "/tmp"), **listen) as node:
        otp.trap_exit(True)
        cluster_config = cluster.ClusterConfig(
            tuple(config["endpoints"]),
            config["cluster"],
            config["node"],
            lease_ttl=config.get("lease_ttl", 3),
            discover=bool(config.get("discover")),
        )
        cluster.start_link(cluster_config)
        view = cluster.subscribe()
        pg_ref = otp.pg.monitor_scope()[0] if listen else None
        pids = [p.pid for p in psutil.Process().children(recursive=True)]
        print(json.dumps({"ready": True, "dir": node.info.dir, "pids": pids}), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "quit":
                break
            print(json.dumps(_answer(view, command, pg_ref)), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
