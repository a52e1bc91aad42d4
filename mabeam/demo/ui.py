"""Live progress in the terminal (rich), or plain lines when not a TTY."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from .learners import describe
from .run import Progress

__all__ = ["Display"]


class Display:
    """Shows a run's progress: live tables on a terminal, one line per
    round otherwise; :meth:`summary` prints the final table."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.live: Live | None = None
        self._last_round: tuple[int, str] | None = None
        self._node_kills_told = 0

    def __enter__(self) -> Display:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=8, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def __call__(self, progress: Progress) -> None:
        for kill in progress.node_kills[self._node_kills_told :]:
            self._node_kills_told += 1
            lost = ", ".join(map(str, kill.lost)) or "none"
            self.console.print(
                f"[{time.monotonic() - progress.started:5.1f}s] chaos: node {kill.node} SIGKILLed in round "
                f"{kill.round} (its learners: {lost}); they are restarted on live nodes"
            )
        if self.live is not None:
            self.live.update(self.render(progress))
        elif progress.phase in ("training", "done") and (progress.round, progress.phase) != self._last_round:
            self._last_round = (progress.round, progress.phase)
            best = progress.leaderboard(1)
            lead = f"best {best[0]['score']:.4f} {describe(best[0])}" if best else "no result yet"
            self.console.print(
                f"[{time.monotonic() - progress.started:5.1f}s] round {progress.round}/{progress.config.rounds} "
                f"{progress.phase}: {len(progress.results)} trainings, {len(progress.kills)} kills, {lead}"
            )

    def render(self, progress: Progress) -> Group:
        head = (
            f"round {progress.round}/{progress.config.rounds} - {progress.phase} - "
            f"{time.monotonic() - progress.started:.1f}s - kills {len(progress.kills)}"
        )
        several = len(progress.nodes) > 1
        agents = Table(title="learner agents (OS processes)", expand=False)
        for col in ("agent", "family", "status", "restarts", *(("node",) if several else ())):
            agents.add_column(col)
        for agent_id, info in sorted(progress.agents.items()):
            row = [str(agent_id), info["family"], info["status"], str(info["restarts"])]
            agents.add_row(*row, *((info["node"] or "-",) if several else ()))
        board = Table(title="leaderboard (3-fold CV accuracy)")
        for col in ("score", "configuration", "agent", "round"):
            board.add_column(col)
        for r in progress.leaderboard(5):
            board.add_row(f"{r['score']:.4f}", describe(r), str(r["agent"]), str(r["round"]))
        return Group(head, agents, board)

    def summary(self, progress: Progress) -> None:
        table = Table(title="mabeam demo: multi-agent hyperparameter search on digits")
        table.add_column("item")
        table.add_column("value")
        auctions = [a for a in progress.auctions if a.winner is not None]
        table.add_row("learner agents", str(progress.config.agents))
        if len(progress.nodes) > 1:
            table.add_row("nodes (OS processes, tcp + CURVE)", ", ".join(progress.nodes))
        table.add_row("rounds x slots", f"{progress.config.rounds} x {progress.config.slots}")
        table.add_row("trainings (real cross-validations)", str(len(progress.results)))
        table.add_row("auctions cleared (Vickrey)", f"{len(auctions)} of {len(progress.auctions)}")
        table.add_row(
            "mean price paid", f"{sum(a.price or 0.0 for a in auctions) / len(auctions):.2f}" if auctions else "-"
        )
        table.add_row("chaos kills (SIGKILL)", str(len(progress.kills)))
        for kill in progress.node_kills:
            moved = ", ".join(f"{a} -> {node or 'not running'}" for a, node in kill.now.items()) or "no learner"
            table.add_row(f"chaos: node killed in round {kill.round}", f"{kill.node}; restarted: {moved}")
        table.add_row("agent restarts (supervisor)", str(sum(a["restarts"] for a in progress.agents.values())))
        table.add_row("failed requests (tolerated)", str(len(progress.failures)))
        if progress.winner is not None:
            votes = ", ".join(f"#{i + 1}: {n}" for i, n in sorted(progress.vote_counts.items()))
            if progress.vote is not None and progress.vote.failed:  # e.g. a voter killed by the chaos
                votes += f" (no vote from {', '.join(sorted(map(str, progress.vote.failed)))})"
            table.add_row("vote on the top 3 (learners' own held-out samples)", votes or "-")
            table.add_row("voted winner", describe(progress.winner))
            table.add_row("its CV accuracy", f"{progress.winner['score']:.4f}")
            table.add_row("its test accuracy", f"{progress.test_accuracy:.4f}")
        table.add_row("wall time", f"{time.monotonic() - progress.started:.1f}s")
        self.console.print(table)
