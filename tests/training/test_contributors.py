"""How much any one contributor may make of a batch or of the gate's evidence (training.contributors)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from training.contributors import counted, share_limit


def test_the_limit_is_the_largest_at_which_no_one_is_over_the_share():
    # One contributor with 60 and six with 10: at 20 each the big one is 20 of 80, a quarter.
    assert share_limit([60] + [10] * 6, share=0.25) == 20
    assert share_limit([5] * 8, share=0.25) == 5  # nobody is over the share
    assert share_limit([10] * 4, share=0.25) == 10  # exactly the share is allowed
    assert share_limit([150], share=0.25) == 0  # alone, no limit keeps one person to a quarter
    assert share_limit([50, 50, 50], share=0.25) == 0
    assert share_limit([], share=0.25) == 0
    assert share_limit([7, 3], share=1.0) == 7  # no cap


def test_the_limit_agrees_with_trying_every_level():
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = rng.integers(1, 40, size=rng.integers(1, 12)).tolist()
        share = float(rng.choice([0.1, 0.2, 0.25, 0.5]))
        slow = max([level for level in range(1, max(counts) + 1)
                    if level <= share * sum(min(count, level) for count in counts)], default=0)
        assert share_limit(counts, share=share) == slow, (counts, share)


def test_each_contributor_counts_up_to_the_limit_first_ones_first():
    contributors = np.array(["a"] * 6 + ["b", "c", "d", "a", "b", "c", "d"], dtype=object)
    mask = counted(contributors, share=0.25)
    # a made 7, b, c and d 2 each: the limit is 2, so only a's first two count.
    assert mask.tolist() == [True, True, False, False, False, False, True, True, True, False, True, True, True]
    assert max(Counter(contributors[mask].tolist()).values()) == 0.25 * mask.sum()


def test_drawings_of_no_known_contributor_count_as_one_contributor():
    imports = np.array([None] * 9 + ["a"], dtype=object)
    assert not counted(imports, share=0.25).any()
    assert counted(imports, share=1.0).all()
    many = np.array([None] * 3 + ["a", "b", "c", "d", "e", "f", "g", "h", "i"] * 3, dtype=object)
    assert counted(many, share=0.25).tolist() == [True] * 30  # three of 30, a tenth: all count
    assert len(counted(np.array([], dtype=object), share=0.25)) == 0
