"""``python -m stress --compare`` catches a deliberately slowed build.

A quick baseline of one cheap benchmark (call round trip, small sample
counts), then the same run with the stress harness's test hook
``STRESS_INJECT_DELAY_US`` (a busy-wait added to every operation of ours,
inside the timed region) compared against it: --compare must exit 1 and name
the benchmark.  Comparing the baseline with itself must exit 0.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--only", "call_round_trip", "--rounds", "3", "--n", "150", "--warmup", "30"]
#: Far above a loaded machine's call round trip (0.1 to 1 ms here), so the
#: slowdown is unmistakable even when the baseline is noisy.
DELAY_US = "2000"


def _stress(*args: str, env_extra: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("STRESS_INJECT_DELAY_US", None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "stress", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _only_json(directory: str, prefix: str) -> str:
    found = glob.glob(os.path.join(directory, f"{prefix}-*.json"))
    assert len(found) == 1, found
    return found[0]


def test_compare_flags_a_slowed_build_and_not_a_run_against_itself(tmp_path):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    out = str(tmp_path)

    base = _stress(*SMALL, "--out", out, "--name", "base")
    assert base.returncode == 0, base.stdout + base.stderr
    base_json = _only_json(out, "base")
    assert os.path.exists(base_json[: -len(".json")] + ".png"), "every run writes a PNG"
    with open(base_json) as f:
        report = json.load(f)
    assert report["inject_delay_us"] == 0
    r = report["results"]["call_round_trip"]
    assert r["params"] == {"rounds": 3, "n": 150, "warmup": 30}
    assert r["ours"]["n"] == 450 and r["floor"]["n"] == 450
    assert r["ours"]["ci95"][0] <= r["ours"]["median"] <= r["ours"]["ci95"][1]

    slowed = _stress(
        *SMALL, "--out", out, "--name", "slowed", "--no-plot", "--compare", base_json,
        env_extra={"STRESS_INJECT_DELAY_US": DELAY_US},
    )  # fmt: skip
    assert slowed.returncode == 1, slowed.stdout + slowed.stderr
    assert "REGRESSIONS: call_round_trip" in slowed.stdout, slowed.stdout
    row = next(
        line for line in slowed.stdout.splitlines() if line.startswith("call_round_trip") and "REGRESSION" in line
    )
    assert "+" in row  # the change is shown, and it is for the worse
    with open(_only_json(out, "slowed")) as f:
        assert json.load(f)["inject_delay_us"] == float(DELAY_US)  # a slowed run says so

    same = _stress("--compare", base_json, "--against", base_json)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no significant regression" in same.stdout
    assert "REGRESSION" not in same.stdout.replace("no significant regression", "")

    leaked = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE
    ]
    assert not leaked, f"processes outlived the stress runs: {leaked}"
