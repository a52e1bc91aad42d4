"""Peers: the same workloads on Thespian and Ray, for ``python -m stress --peers``.

Each peer runs in its own subprocess (``python -m stress._peers PEER PARAMS
OUT``), after our benchmarks and with our node stopped, so a peer's
background processes (Ray's GCS and raylet, Thespian's admin) never share
the machine with our measurements, and a peer's imports and signal handlers
never touch the runner.  The subprocess records every process the peer
started (its descendants, and every process in the sessions they created:
Thespian's admin daemonizes with ``setsid``), shuts the peer down (Ray:
``ray.shutdown()``, Thespian: ``ActorSystem().shutdown()``), waits for those
processes to go, and kills and reports any that are left.  If the subprocess
itself has to be killed (timeout), the runner does the same from the pid file
it keeps up to date.

Workloads (same operations as ours; see each peer module): call round trip,
cast throughput (one-way messages, then one final round trip), spawn + first
reply, SIGKILL -> notification.  Death detection waits at most
``detect_timeout`` seconds and reports the number of kills never detected
rather than a figure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Set as AbstractSet

from ._common import descendants

__all__ = ["PEERS", "WORKLOADS", "peer_params", "run_peers", "installed"]

#: peer name -> (module that implements it, the distribution to install)
PEERS = {"thespian": ("stress._peer_thespian", "thespian"), "ray": ("stress._peer_ray", "ray")}
WORKLOADS = ("call_round_trip", "cast_throughput", "spawn_first_reply", "sigkill_to_down")

#: Caps (rounds, n, warmup) per peer and workload.  Peers are 10x to 1000x
#: slower at some workloads (a Ray actor is a fresh worker process, about a
#: second each); the caps keep the default run within its time budget.  The
#: sample counts actually used are reported next to every figure.
LIMITS = {
    "thespian": {
        "call_round_trip": (5, 1000, 100),
        "cast_throughput": (5, 2000, 200),
        "spawn_first_reply": (5, 40, 5),
        "sigkill_to_down": (5, 20, 2),
    },
    "ray": {
        "call_round_trip": (5, 1000, 100),
        "cast_throughput": (5, 2000, 200),
        "spawn_first_reply": (5, 8, 1),
        "sigkill_to_down": (5, 8, 1),
    },
}
DETECT_TIMEOUT_S = 10.0
PEER_TIMEOUT_S = 400.0


def installed(peer: str) -> bool:
    return importlib.util.find_spec(PEERS[peer][1]) is not None


def peer_params(peer: str, workload: str, rounds: int, n: int, warmup: int, quick: bool) -> dict:
    lr, ln, lw = LIMITS[peer][workload]
    params: dict[str, float] = {"rounds": min(rounds, lr), "n": max(1, min(n, ln)), "warmup": min(warmup, lw)}
    if workload == "sigkill_to_down":
        params["detect_timeout"] = 5.0 if quick else DETECT_TIMEOUT_S
    return params


# ------------------------------------------------------------ processes


def _proc_key(pid: int):
    """(pid, start time) or None if gone; the start time tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None
        return (pid, int(fields[19]))
    except (OSError, IndexError, ValueError):
        return None


def _descendants(root: int) -> set[int]:
    return set(descendants(root))


def _in_sessions(sids: set[int]) -> set[int]:
    out: set[int] = set()
    if not sids:
        return out
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getsid(int(name)) in sids:
                    out.add(int(name))
            except OSError:
                pass
    return out


def snapshot(extra_sids: AbstractSet[int] = frozenset()) -> set[tuple]:
    """Live processes this process started, directly or not (see module doc)."""
    me = os.getpid()
    mine = _descendants(me)
    own = {os.getsid(0)}
    sids = set(extra_sids)
    for pid in mine:
        try:
            sid = os.getsid(pid)
        except OSError:
            continue
        if sid not in own:
            sids.add(sid)
    pids = mine | _in_sessions(sids - own)
    pids.discard(me)
    return {k for k in (_proc_key(p) for p in pids) if k is not None}


def reap_leftovers(keys, wait_s: float) -> list[int]:
    """Wait up to ``wait_s`` for the processes ``keys`` to be gone; SIGKILL
    (by pid, start time checked) those that are not; return their pids."""
    keys = {tuple(k) for k in keys}
    deadline = time.monotonic() + wait_s
    while True:
        alive = [k for k in keys if _proc_key(k[0]) == k]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.1)  # polling for exits: not a timed region
    for pid, _ in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    # Reap any that were our own children.
    for pid, _ in alive:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return sorted(pid for pid, _ in alive)


# ------------------------------------------------------------ subprocess side


def _child_main(peer: str, params_path: str, out_path: str) -> int:
    with open(params_path) as f:
        params = json.load(f)
    pids_path = out_path + ".pids"
    module = importlib.import_module(PEERS[peer][0])
    impl = {"thespian": "ThespianPeer", "ray": "RayPeer"}[peer]
    impl = getattr(module, impl)()
    result = {"peer": peer, "version": impl.version(), "workloads": {}, "how": impl.how}
    observed: set[tuple] = set()

    def record() -> None:
        observed.update(snapshot(impl.sessions()))
        with open(pids_path, "w") as f:
            json.dump(sorted(observed), f)

    t0 = time.perf_counter()
    try:
        impl.start()
        result["start_s"] = time.perf_counter() - t0
        record()
        for workload, p in params["workloads"].items():
            print(f"  {peer}: {workload} ({p['rounds']} rounds x {p['n']}) ...", file=sys.stderr, flush=True)
            w0 = time.perf_counter()
            try:
                res = getattr(impl, workload)(**p)
                res["params"] = p
            except Exception as exc:  # noqa: BLE001 - reported, the other workloads still run
                res = {"error": f"{type(exc).__name__}: {exc}"}
            res["wall_s"] = time.perf_counter() - w0
            result["workloads"][workload] = res
            record()
    except Exception as exc:  # noqa: BLE001
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            record()
        except Exception:  # noqa: BLE001
            pass
        s0 = time.perf_counter()
        sessions = impl.sessions()
        try:
            impl.stop()
        except Exception as exc:  # noqa: BLE001
            result["stop_error"] = f"{type(exc).__name__}: {exc}"
        observed.update(snapshot(sessions))  # anything that appeared late
        result["left_behind"] = reap_leftovers(observed, 15.0)
        result["stop_s"] = time.perf_counter() - s0
        result["processes_seen"] = len(observed)
        with open(out_path, "w") as f:
            json.dump(result, f)
    return 0


# ------------------------------------------------------------ runner side


def run_peers(peers: list[str], workloads: dict[str, tuple], timeout: float = PEER_TIMEOUT_S) -> dict:
    """Run ``workloads`` ({workload: (rounds, n, warmup, quick)}) on each peer.

    Returns ``{peer: result}``; a peer that is not installed gets
    ``{"skipped": "..."}``."""
    out = {}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for peer in peers:
        if not installed(peer):
            out[peer] = {"skipped": f"not installed (pip install {PEERS[peer][1]}, or the 'peers' extra)"}
            print(f"peer {peer}: skipped, not installed", file=sys.stderr, flush=True)
            continue
        print(f"peer {peer}: starting", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix=f"stress-{peer}-") as tmp:
            params_path = os.path.join(tmp, "params.json")
            out_path = os.path.join(tmp, "result.json")
            with open(params_path, "w") as f:
                json.dump({"workloads": {w: peer_params(peer, w, *p) for w, p in workloads.items()}}, f)
            env = dict(os.environ)
            env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            env.pop("STRESS_INJECT_DELAY_US", None)  # the test hook never applies to peers
            log_path = os.path.join(tmp, "log.txt")
            t0 = time.perf_counter()
            # Output goes to a file, not a pipe: a daemonized peer process that
            # inherited the pipe would keep it open and hang a reader.
            with open(log_path, "w") as log:
                child = subprocess.Popen(
                    [sys.executable, "-m", "stress._peers", peer, params_path, out_path],
                    cwd=root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                try:
                    child.wait(timeout)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                    timed_out = True
            wall = time.perf_counter() - t0
            try:
                with open(out_path) as f:
                    result = json.load(f)
            except (OSError, ValueError):
                result = {"error": "timed out" if timed_out else f"exited with {child.returncode} without a result"}
            # Whatever the child saw and did not clean up (it was killed, or
            # its own reaping failed): gone now, by pid and start time.
            try:
                with open(out_path + ".pids") as f:
                    seen = [tuple(k) for k in json.load(f)]
            except (OSError, ValueError):
                seen = []
            late = reap_leftovers(seen, 5.0)
            if late:
                result.setdefault("left_behind", [])
                result["left_behind"] = sorted(set(result["left_behind"]) | set(late))
            result["wall_s"] = wall
            with open(log_path) as f:
                log_text = f.read()
            for line in log_text.splitlines():
                if line.startswith("  "):
                    print(line, file=sys.stderr, flush=True)
            if result.get("error") or child.returncode:
                result["log_tail"] = log_text[-3000:]
                print(f"peer {peer}: {result.get('error', 'failed')}; log tail:\n{log_text[-1500:]}", file=sys.stderr)
            print(
                f"peer {peer}: done in {wall:.1f} s; {len(result.get('left_behind', []))} processes left behind"
                + (" (killed)" if result.get("left_behind") else ""),
                file=sys.stderr,
                flush=True,
            )
            out[peer] = result
    return out


if __name__ == "__main__":
    sys.exit(_child_main(*sys.argv[1:4]))
