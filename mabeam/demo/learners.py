"""Learner agents: each searches hyperparameters of one model family on
scikit-learn's digits data set (it ships inside scikit-learn: no download).

Everything an agent answers is computed: a training request runs a real
cross-validation, a bid comes from the agent's own estimate of what another
training slot is worth to it, a vote from evaluating the candidates on the
agent's own held-out sample.

scikit-learn's modules are imported where they are used: a learner loads
only its own family's model class (each costs about a second unless the
node's zygote preloaded it).
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import mabeam

__all__ = ["Learner", "FAMILIES", "load_data", "build_model", "evaluate", "describe"]

#: Search spaces: (name, sampler(rng) -> params, perturb(rng, params) -> params)
FAMILIES = ("svc", "knn", "forest", "logreg")


def load_data(seed: int = 0):
    """The digits data set split once, the same way in every process."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return train_test_split(x / 16.0, y, test_size=0.25, random_state=seed, stratify=y)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return 10 ** rng.uniform(math.log10(low), math.log10(high))


def sample(family: str, rng: random.Random) -> dict:
    if family == "svc":
        return {"C": _log_uniform(rng, 0.1, 1000), "gamma": _log_uniform(rng, 1e-4, 1.0)}
    if family == "knn":
        return {"n_neighbors": rng.randint(1, 25), "weights": rng.choice(["uniform", "distance"])}
    if family == "forest":
        return {
            "n_estimators": rng.choice([20, 40, 80]),
            "max_depth": rng.choice([4, 8, 16, None]),
            "max_features": rng.choice(["sqrt", 0.5]),
        }
    if family == "logreg":
        return {"C": _log_uniform(rng, 1e-3, 100)}
    raise ValueError(f"unknown family {family!r}")


def perturb(family: str, params: dict, rng: random.Random) -> dict:
    """A neighbour of ``params`` (local search around the best known)."""
    p = dict(params)
    if family in ("svc", "logreg"):
        for key in ("C", "gamma"):
            if key in p:
                p[key] = p[key] * 10 ** rng.gauss(0, 0.4)
    elif family == "knn":
        p["n_neighbors"] = max(1, min(30, p["n_neighbors"] + rng.choice([-2, -1, 1, 2])))
    else:
        return sample(family, rng)
    return p


def build_model(family: str, params: dict):
    if family == "svc":
        from sklearn.svm import SVC

        return SVC(**params)
    if family == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(**params)
    if family == "forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(random_state=0, n_jobs=1, **params)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=300, **params)


def evaluate(family: str, params: dict, x, y, folds: int = 3) -> float:
    from sklearn.model_selection import cross_val_score

    return float(cross_val_score(build_model(family, params), x, y, cv=folds).mean())


def describe(config: dict) -> str:
    params = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config["params"].items())
    )
    return f"{config['family']}({params})"


class Learner(mabeam.Agent):
    """Searches one family; bids for training slots; votes on the winner."""

    capabilities = frozenset({"training"})

    def setup(self, args: dict) -> None:
        self.family = args["family"]
        self.rng = random.Random(args.get("seed", 0))
        self.x, _, self.y, _ = load_data(args.get("data_seed", 0))
        self.best: dict | None = None  # best result of our family seen so far
        self.tried = 0
        self.budget = float(args.get("budget", 100.0))

    # -------------------------------------------------------------- work

    def handle_request(self, message: Any) -> Any:
        kind = message[0]
        if kind == "train":
            return self._train(message[1])
        if kind == "charge":  # the auction's price for the slot we won
            self.budget = max(0.0, self.budget - float(message[1]))
            return self.budget
        if kind == "status":
            return {"family": self.family, "best": self.best, "tried": self.tried, "budget": self.budget}
        raise ValueError(f"unknown request {kind!r}")

    def _train(self, round_number: int) -> dict:
        if self.best is not None and self.rng.random() < 0.7:
            params = perturb(self.family, self.best["params"], self.rng)
        else:
            params = sample(self.family, self.rng)
        started = time.monotonic()
        score = evaluate(self.family, params, self.x, self.y)
        self.tried += 1
        result = {
            "family": self.family,
            "params": params,
            "score": score,
            "agent": self.agent_id,
            "round": round_number,
            "seconds": time.monotonic() - started,
        }
        self._learn(result)
        return result

    def _learn(self, result: dict) -> None:
        if result["family"] == self.family and (self.best is None or result["score"] > self.best["score"]):
            self.best = result

    def handle_event(self, topic: Any, event: Any) -> None:
        if topic == "mabeam.demo.scores":
            for result in event:
                self._learn(result)

    # ----------------------------------------------------------- economy

    def handle_bid(self, auction: dict) -> Any:
        """What one more training slot is worth to us: the room left above
        our family's best score (unexplored families value it most), scaled
        to the budget we still have; never more than we can pay."""
        best = self.best["score"] if self.best else 0.5
        value = (1.0 - best) * 100 * (1.0 + 0.5 * self.rng.random())
        bid = round(min(self.budget, max(1.0, value)), 2)
        return bid if self.budget >= 1.0 else None

    # -------------------------------------------------------------- vote

    def handle_vote(self, proposal: dict) -> Any:
        """Evaluate each candidate on our own random half of the training
        data and vote for the best one."""
        candidates = proposal["candidates"]
        idx = self.rng.sample(range(len(self.y)), len(self.y) // 2)
        x, y = self.x[idx], self.y[idx]
        scores = [evaluate(c["family"], c["params"], x, y, folds=2) for c in candidates]
        return max(range(len(candidates)), key=lambda i: (scores[i], -i))
