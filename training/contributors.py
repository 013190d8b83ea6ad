"""How much of a set of drawings any one contributor may make: a run's training batch and the gate's evidence.

Plain NumPy. One person's drawings must not steer what a network learns (the batch is capped)
nor be the proof that it reads people better (the holdout's evidence is capped the same way).
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def share_limit(counts: list[int] | np.ndarray, *, share: float) -> int:
    """The largest number of drawings each contributor may give at which the biggest one's part
    is still at most ``share`` of the whole, given each contributor's count; 0 if none is (fewer
    than 1/share contributors, or one far above the rest with too few others to balance it)."""
    ordered = np.sort(np.asarray(counts, dtype=np.int64))
    if len(ordered) == 0 or ordered[-1] <= 0:
        return 0
    levels = np.arange(1, ordered[-1] + 1)
    below = np.searchsorted(ordered, levels, side="left")  # contributors with fewer than the level
    totals = np.concatenate([[0], np.cumsum(ordered)])[below] + levels * (len(ordered) - below)
    allowed = levels[levels <= share * totals]
    return int(allowed.max()) if len(allowed) else 0


def counted(contributors: np.ndarray, *, share: float) -> np.ndarray:
    """Which drawings count when no contributor may make more than ``share`` of those that do:
    each contributor's first ones (in the given order), up to share_limit. Drawings of no known
    contributor (None: imports) count as one contributor's, as the training cap counts them."""
    keys = list(contributors)
    seen: Counter = Counter()
    limit = share_limit(list(Counter(keys).values()), share=share)
    mask = np.zeros(len(keys), bool)
    for index, key in enumerate(keys):
        seen[key] += 1
        mask[index] = seen[key] <= limit
    return mask

