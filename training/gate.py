"""The promotion gate: a candidate and its parent answer the same drawings, and the counts decide.

Plain NumPy. McNemar's exact test looks only at the drawings the two disagree on being right
about: ``fixed`` (the parent was wrong, the candidate right) and ``broken`` (the reverse). If the
candidate were no better, each of those would be a fair coin, so the chance of ``fixed`` or
more out of ``fixed + broken`` is a binomial tail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb, exp, lgamma, log

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
           mnist_first: float | None = None, counted: dict[str, np.ndarray] | None = None,
           max_share: float = 1.0, significance: float = SIGNIFICANCE) -> Decision:
    """Promote only with evidence of improvement and no significant regression anywhere.

    ``sets`` maps a set's name ("mnist", "holdout", "reference") to (labels, parent's
    predictions, candidate's predictions); empty or missing sets are skipped. In order:
    MNIST must not fall by more than ``mnist_tolerance`` (a fraction) from the parent, nor
    from ``mnist_first``, the MNIST accuracy of the version the chain of fine-tunes started
    from (each promotion may lose a little, and those losses add up); no evidence set may get
    significantly worse; no digit, over the evidence sets together, may; and the candidate must
    be significantly better on at least one evidence set. Of a set in ``counted`` (its name ->
    which drawings count, training.contributors.counted), only those drawings can show the
    improvement, so that no contributor makes more than ``max_share`` of the evidence: one
    person's drawings would measure how well the network learnt that person, not people. The
    whole set still guards against regression. The reason names the deciding check.
    """
    results = {name: paired(name, *arrays) for name, arrays in sets.items() if len(arrays[0])}
    checks = {name: result.as_dict() for name, result in results.items()}
    summary = "; ".join(result.text() for result in results.values())

    def verdict(promote: bool, why: str) -> Decision:
        return Decision(promote, f"{why} ({summary})" if summary else why, checks)

    if (mnist := results.get("mnist")) is not None and (why := _mnist_fall(mnist, mnist_tolerance, mnist_first)):
        return verdict(False, why)
    evidence = [results[name] for name in EVIDENCE_SETS if name in results]
    for result in evidence:
        if result.p_worse < significance:
            return verdict(False, f"worse on the {result.name} set: {result.broken} broken against "
                                  f"{result.fixed} fixed (p = {result.p_worse:.3f})")
    if evidence:
        labels = np.concatenate([sets[r.name][0] for r in evidence])
        parent = np.concatenate([sets[r.name][1] for r in evidence])
        candidate = np.concatenate([sets[r.name][2] for r in evidence])
        per_class = {int(digit): paired(f"digit {digit}", labels[labels == digit], parent[labels == digit],
                                        candidate[labels == digit]) for digit in np.unique(labels)}
        checks["per_class"] = {str(digit): result.as_dict() for digit, result in per_class.items() if result.size}
        for digit, result in per_class.items():
            if result.size and result.p_worse < significance:
                return verdict(False, f"worse on the digit {digit}: {result.broken} broken against "
                                      f"{result.fixed} fixed (p = {result.p_worse:.3f})")
    promote, why = _evidence(evidence, sets, checks, counted or {}, max_share, significance)
    return verdict(promote, why)


def _evidence(evidence: list[Paired], sets: dict, checks: dict, counted: dict[str, np.ndarray], max_share: float,
              significance: float) -> tuple[bool, str]:
    """Whether the candidate is significantly better on an evidence set, counting of a set in
    ``counted`` only the drawings its mask keeps (their counts go into ``checks``), and why."""
    shown, notes = [], {}
    for result in evidence:
        mask = counted.get(result.name)
        if mask is not None and not mask.all():
            part = paired(result.name, *(array[mask] for array in sets[result.name]))
            checks[result.name]["counted"] = part.as_dict()
            notes[result.name] = (f" (counting {part.size} of its {result.size} drawings, no contributor "
                                  f"over {max_share:.0%} of them)")
            result = part
        shown.append(result)
    better = [result for result in shown if result.p_better < significance]
    if not better:
        return False, "no evidence of improvement: " + (", ".join(
            f"{r.name} {r.fixed} fixed against {r.broken} broken{notes.get(r.name, '')} (p = {r.p_better:.2f})"
            for r in shown) or "nothing to judge on")
    best = min(better, key=lambda result: result.p_better)
    return True, (f"better on the {best.name} set: {best.fixed} fixed against {best.broken} broken"
                  f"{notes.get(best.name, '')} (p = {best.p_better:.3g})")


def _mnist_fall(mnist: Paired, tolerance: float, first: float | None) -> str | None:
    """Why the candidate's MNIST accuracy is too far below its parent's or the first version's, or None."""
    drop = (mnist.parent_right - mnist.candidate_right) / mnist.size
    if drop > tolerance:
        return (f"MNIST test fell {drop * 100:.2f} points, more than the {tolerance * 100:.2f} allowed "
                f"({mnist.fixed} fixed, {mnist.broken} broken)")
    # ``first`` is a stored fraction: without the margin, exactly the tolerance could read as more.
    if first is not None and (below := first - mnist.candidate_right / mnist.size) > tolerance + 1e-9:
        return (f"MNIST test would be {below * 100:.2f} points below the first version's {first:.2%}, more than "
                f"the {tolerance * 100:.2f} allowed over all promotions")
    return None


def chance_tail(successes: int, trials: int, chance: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, chance), summed in log space (trials may be thousands)."""
    if successes <= 0:
        return 1.0
    if successes > trials:
        return 0.0
    def term(k: int) -> float:
        return exp(lgamma(trials + 1) - lgamma(k + 1) - lgamma(trials - k + 1)
                   + k * log(chance) + (trials - k) * log(1 - chance))
    return min(1.0, sum(term(k) for k in range(successes, trials + 1)))


def above_chance(labels: np.ndarray, predicted: np.ndarray, *, num_classes: int,
                 significance: float = SIGNIFICANCE) -> Decision:
    """A label set's first network has no parent to beat: promote it only if it reads the set's
    holdout significantly better than guessing (accuracy 1/num_classes, exact one-sided binomial test)."""
    size, right = int(len(labels)), int((predicted == labels).sum())
    chance = 1.0 / num_classes
    checks = {"holdout": {"size": size, "right": right, "chance": round(chance, 6)}}
    if size == 0:
        return Decision(False, "no holdout drawings to judge a first version on", checks)
    p_value = chance_tail(right, size, chance)
    checks["holdout"]["p_above_chance"] = round(p_value, 6)
    summary = f"holdout: {right / size:.2%} of {size} against chance {chance:.2%}, p = {p_value:.3g}"
    if p_value < significance:
        return Decision(True, f"better than chance ({summary})", checks)
    return Decision(False, f"not significantly better than chance ({summary})", checks)


def confusion(labels: np.ndarray, predicted: np.ndarray, num_classes: int = NUM_CLASSES) -> list[list[int]]:
    """Rows: the true class; columns: what was read."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix.tolist()
