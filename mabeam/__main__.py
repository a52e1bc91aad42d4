"""``python -m mabeam demo [--chaos]`` (also the ``mabeam`` console script)."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mabeam", description="MABEAM: multi-agent coordination on OTP-style processes"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="multi-agent hyperparameter search on scikit-learn's digits")
    demo.add_argument("--agents", type=int, default=4, help="learner agents (OS processes), default 4")
    demo.add_argument("--rounds", type=int, default=6, help="auction/training rounds, default 6")
    demo.add_argument("--slots", type=int, default=2, help="training slots sold per round, default 2")
    demo.add_argument("--chaos", action="store_true", help="SIGKILL random agents during the run")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.agents < 1 or args.rounds < 1 or args.slots < 1:
        parser.error("--agents, --rounds and --slots must be at least 1")
    # One BLAS thread per process: the agents are the parallelism, and the
    # node's zygote must stay single threaded to fork safely.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import otp

    from .demo.run import DemoConfig, run
    from .demo.ui import Display

    config = DemoConfig(agents=args.agents, rounds=args.rounds, slots=args.slots, chaos=args.chaos, seed=args.seed)
    # The zygote imports scikit-learn once; every learner process is forked
    # with it loaded instead of importing it (about a second each).
    preload = (
        "mabeam.demo.learners",
        "sklearn.svm",
        "sklearn.neighbors",
        "sklearn.ensemble",
        "sklearn.linear_model",
        "sklearn.model_selection",
        "sklearn.datasets",
    )
    with otp.Node(name="mabeam-demo", preload=preload):
        with Display() as display:
            progress = run(config, display)
        display.summary(progress)
    return 0 if progress.winner is not None else 1


if __name__ == "__main__":
    sys.exit(main())
