"""``python -m mabeam demo [options]`` (also the ``mabeam`` console script).

Exit status: 0 the run chose a winner, 1 it did not, 2 bad usage or the
``demo`` extra is not installed, 130 interrupted.

Ctrl-C stops the run and every process of the node, and says so in one
line; another Ctrl-C while they stop exits at once (the node's zygote, which
watches this process, still kills and reaps every process and removes the
node's directory).

Log records of every process of the node go through this process's logging
(see :mod:`otp._logging`): to stderr, above the live display, or to
``--log-file``.

``--nodes N`` (N > 1) runs the learners on N nodes: this process's node,
which runs MABEAM, and N - 1 more, each a separate OS process, all talking
tcp + CURVE on 127.0.0.1 (see :mod:`mabeam.demo.nodes`: keys in a
temporary directory removed at the end, nodes stopped by pid).  Their log
records go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import signal
import sys
import tempfile
from types import FrameType

import otp

from . import demo as _demo_package

#: The modules of the ``demo`` extra (setup.cfg), checked before anything starts.
DEMO_MODULES = ("numpy", "sklearn", "rich")
MISSING_EXTRA = "mabeam demo needs its extra: pip install 'mabeam[demo]'"
EXIT_INTERRUPTED = 130
#: What each node's zygote imports once (scikit-learn): see mabeam.demo.
PRELOAD = _demo_package.PRELOAD


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mabeam", description="MABEAM: multi-agent coordination on OTP-style processes"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to run: demo")
    demo = sub.add_parser(
        "demo",
        help="multi-agent hyperparameter search on scikit-learn's digits",
        description="Learner agents (one OS process each) bid for training slots, train real scikit-learn "
        "models, share their scores and vote on the winning configuration.",
    )
    demo.add_argument("--agents", type=_positive, default=4, help="learner agents, OS processes (default: %(default)s)")
    demo.add_argument("--rounds", type=_positive, default=6, help="auction/training rounds (default: %(default)s)")
    demo.add_argument("--slots", type=_positive, default=2, help="training slots sold per round (default: %(default)s)")
    demo.add_argument(
        "--chaos",
        action="store_true",
        help="SIGKILL random agents during the run, and with --nodes one whole node (default: off)",
    )
    demo.add_argument(
        "--nodes",
        type=_positive,
        default=1,
        help="nodes the learners run on, each an OS process on 127.0.0.1 talking tcp+CURVE (default: %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the agents' searches (default: %(default)s)")
    demo.add_argument(
        "--observe",
        action="store_true",
        help="serve the observer's web view of the node during the run and print its URL, with its access token "
        "(default: off)",
    )
    demo.add_argument(
        "--observe-port", type=int, default=0, help="the observer's port on 127.0.0.1 (default: one the OS picks)"
    )
    demo.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="least severe log record shown, from any process of the node (default: %(default)s)",
    )
    demo.add_argument("--log-file", help="write log records to this file (default: stderr, above the display)")
    demo.add_argument(
        "--base-dir", default="/tmp", help="where the node makes its socket directory (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = [name for name in DEMO_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(f"{MISSING_EXTRA} (missing: {', '.join(missing)})", file=sys.stderr)
        return 2
    if args.observe:
        from .demo._observe import MISSING_OBSERVER_EXTRA, missing_observer_extra

        if missing_observer_extra():
            print(MISSING_OBSERVER_EXTRA, file=sys.stderr)
            return 2
    # One BLAS thread per process: the agents are the parallelism, and the
    # node's zygote must stay single threaded to fork safely.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    ctrl_c = _CtrlC()
    previous = signal.signal(signal.SIGINT, ctrl_c)
    try:
        status = _demo(args, ctrl_c)
    except KeyboardInterrupt:  # before the node ran or while it stopped: it cleaned up itself
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if not ctrl_c.seen:  # else another Ctrl-C until exit still exits without a traceback
            signal.signal(signal.SIGINT, previous)
    if status == EXIT_INTERRUPTED:
        print(" done", file=sys.stderr)
    return status


class _CtrlC:
    """SIGINT handler: the first raises KeyboardInterrupt (the run unwinds
    and the node stops its processes); a later one exits at once, without a
    traceback through whatever was stopping."""

    def __init__(self) -> None:
        self.seen = False
        self.node: otp.Node | None = None
        self.running: int | None = None  # the node's processes when interrupted

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.seen:
            os.write(2, b" interrupted again: exiting now\n")  # no buffered stream: it may be mid-write
            os._exit(EXIT_INTERRUPTED)
        self.seen = True
        if self.node is not None:
            try:
                self.running = len(self.node.os_pids(embryos=False))
            except Exception:  # noqa: BLE001 - only the count in the message is lost
                pass
        raise KeyboardInterrupt


def _demo(args: argparse.Namespace, ctrl_c: _CtrlC) -> int:
    # The demo's modules need its extra (numpy, scikit-learn, rich), checked by main first.
    from .demo._observe import observing
    from .demo.run import DemoConfig, run
    from .demo.ui import Display

    _configure_logging(args)
    config = DemoConfig(agents=args.agents, rounds=args.rounds, slots=args.slots, chaos=args.chaos, seed=args.seed)
    with contextlib.ExitStack() as stack:
        cluster = None
        options: dict = {"name": "mabeam-demo"}
        if args.nodes > 1:
            from .demo.nodes import DemoNodes

            key_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mabeam-demo-keys-"))
            cluster = DemoNodes(args.nodes, key_dir, base_dir=args.base_dir)
            options = cluster.home_options()
            stack.callback(cluster.stop)  # if this node does not start
            cluster.launch()  # the extra nodes start while this one does
        node = stack.enter_context(otp.Node(preload=PRELOAD, base_dir=args.base_dir, **options))
        ctrl_c.node = node
        try:
            if cluster is not None:
                try:
                    stack.enter_context(cluster)  # connected; stopped before this node stops
                except RuntimeError as exc:  # a node that did not start or cannot be reached
                    print(f"mabeam demo: {exc}", file=sys.stderr)
                    return 1
            stack.enter_context(observing(args.observe, port=args.observe_port))
            with Display() as display:
                progress = run(config, display, cluster)
            display.summary(progress)
        except KeyboardInterrupt:
            count = "the node's processes" if ctrl_c.running is None else f"{ctrl_c.running} processes"
            print(f"interrupted; stopping {count}...", end="", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED  # leaving the block stops every process
        finally:
            ctrl_c.node = None
    return 0 if progress.winner is not None else 1


def _configure_logging(args: argparse.Namespace) -> None:
    plain = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if args.log_file:
        logging.basicConfig(filename=args.log_file, level=args.log_level, format=plain)
        return
    from rich.console import Console  # the demo extra, checked by main first
    from rich.logging import RichHandler

    console = Console(stderr=True)
    if not console.is_terminal:
        logging.basicConfig(level=args.log_level, format=plain)
        return
    # rich prints this console's lines above the live display.
    handler = RichHandler(console=console, show_path=False)
    logging.basicConfig(level=args.log_level, format="%(name)s: %(message)s", handlers=[handler])


if __name__ == "__main__":
    sys.exit(main())
