"""The promotion gate: a candidate and its parent answer the same drawings, and the counts decide.

Plain NumPy. McNemar's exact test looks only at the drawings the two disagree on being right
about: ``fixed`` (the parent was wrong, the candidate right) and ``broken`` (the reverse). If the
candidate were no better, each of those would be a fair coin, so the chance of ``fixed`` or
more out of ``fixed + broken`` is a binomial tail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb

import numpy as np

from training import NUM_CLASSES

SIGNIFICANCE = 0.05  # one-sided: how unlikely the counts must be under "no difference"
# Sets on which improvement counts as evidence; MNIST only guards against forgetting.
EVIDENCE_SETS = ("holdout", "reference")


def binomial_tail(successes: int, trials: int) -> float:
    """P(X >= successes) for X ~ Binomial(trials, 1/2): exact, in integers."""
    if successes <= 0:
        return 1.0
    if successes > trials:
        return 0.0
    return sum(comb(trials, k) for k in range(successes, trials + 1)) / 2 ** trials


@dataclass(frozen=True)
class Paired:
    """Parent and candidate on one set of drawings."""

    name: str
    size: int
    parent_right: int
    candidate_right: int
    fixed: int
    broken: int

    @property
    def p_better(self) -> float:
        return binomial_tail(self.fixed, self.fixed + self.broken)

    @property
    def p_worse(self) -> float:
        return binomial_tail(self.broken, self.fixed + self.broken)

    def text(self) -> str:
        return (f"{self.name}: {self.parent_right / self.size:.2%} -> {self.candidate_right / self.size:.2%} "
                f"of {self.size}, {self.fixed} fixed, {self.broken} broken")

    def as_dict(self) -> dict:
        return {"size": self.size, "parent_right": self.parent_right, "candidate_right": self.candidate_right,
                "fixed": self.fixed, "broken": self.broken,
                "p_better": round(self.p_better, 6), "p_worse": round(self.p_worse, 6)}


def paired(name: str, labels: np.ndarray, parent: np.ndarray, candidate: np.ndarray) -> Paired:
    """Count, for the drawings ``labels``, what the two predicted (class indices) got right."""
    parent_ok, candidate_ok = parent == labels, candidate == labels
    return Paired(name=name, size=int(len(labels)), parent_right=int(parent_ok.sum()),
                  candidate_right=int(candidate_ok.sum()), fixed=int((candidate_ok & ~parent_ok).sum()),
                  broken=int((parent_ok & ~candidate_ok).sum()))


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    checks: dict = field(default_factory=dict)


def decide(sets: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], *, mnist_tolerance: float,
           significance: float = SIGNIFICANCE) -> Decision:
    """Promote only with evidence of improvement and no significant regression anywhere.

    ``sets`` maps a set's name ("mnist", "holdout", "reference") to (labels, parent's
    predictions, candidate's predictions); empty or missing sets are skipped. In order:
    MNIST must not fall by more than ``mnist_tolerance`` (a fraction); no evidence set may get
    significantly worse; no digit, over the evidence sets together, may; and the candidate must
    be significantly better on at least one evidence set. The reason names the deciding check.
    """
    results = {name: paired(name, *arrays) for name, arrays in sets.items() if len(arrays[0])}
    checks = {name: result.as_dict() for name, result in results.items()}
    summary = "; ".join(result.text() for result in results.values())

    def verdict(promote: bool, why: str) -> Decision:
        return Decision(promote, f"{why} ({summary})" if summary else why, checks)

    if (mnist := results.get("mnist")) is not None:
        drop = (mnist.parent_right - mnist.candidate_right) / mnist.size
        if drop > mnist_tolerance:
            return verdict(False, f"MNIST test fell {drop * 100:.2f} points, more than the "
                                  f"{mnist_tolerance * 100:.2f} allowed ({mnist.fixed} fixed, {mnist.broken} broken)")
    evidence = [results[name] for name in EVIDENCE_SETS if name in results]
    for result in evidence:
        if result.p_worse < significance:
            return verdict(False, f"worse on the {result.name} set: {result.broken} broken against "
                                  f"{result.fixed} fixed (p = {result.p_worse:.3f})")
    if evidence:
        labels = np.concatenate([sets[r.name][0] for r in evidence])
        parent = np.concatenate([sets[r.name][1] for r in evidence])
        candidate = np.concatenate([sets[r.name][2] for r in evidence])
        per_class = {digit: paired(f"digit {digit}", labels[labels == digit], parent[labels == digit],
                                   candidate[labels == digit]) for digit in range(NUM_CLASSES)}
        checks["per_class"] = {str(digit): result.as_dict() for digit, result in per_class.items() if result.size}
        for digit, result in per_class.items():
            if result.size and result.p_worse < significance:
                return verdict(False, f"worse on the digit {digit}: {result.broken} broken against "
                                      f"{result.fixed} fixed (p = {result.p_worse:.3f})")
    better = [result for result in evidence if result.p_better < significance]
    if not better:
        return verdict(False, "no evidence of improvement: "
                       + (", ".join(f"{r.name} {r.fixed} fixed against {r.broken} broken (p = {r.p_better:.2f})"
                                    for r in evidence) or "nothing to judge on"))
    best = min(better, key=lambda result: result.p_better)
    return verdict(True, f"better on the {best.name} set: {best.fixed} fixed against {best.broken} broken "
                         f"(p = {best.p_better:.3g})")


def confusion(labels: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    """Rows: the true digit; columns: what was read."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix.tolist()
