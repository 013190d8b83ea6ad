"""The writers scenarios' bookkeeping: which drawings are contributed, and how the floors judge seeds."""

from __future__ import annotations

from collections import Counter

import pytest

from training import writers


def _run(teach, exam, mnist):
    """One seed's result for both networks: the change (points) on each measure."""
    before = {"teach": 0.80, "exam": 0.90, "mnist": 0.99}
    after = {"teach": 0.80 + teach / 100, "exam": 0.90 + exam / 100, "mnist": 0.99 + mnist / 100}
    return {"before": {name: before for name in ("fnn", "cnn")},
            "after": {name: {"version": 2, **after} for name in ("fnn", "cnn")}}


def _failed(checks):
    return [label for label, passed in checks if not passed]


def test_broad_floors_pass_on_a_clear_rise_and_name_each_failure():
    from bench.continual_writers import writers_floors

    good = {seed: _run(teach=1.5, exam=0.2 if seed < 3 else -0.1, mnist=-0.1) for seed in range(5)}
    assert _failed(writers_floors("broad", good)) == []

    # Teach rises too little on average, exam rises on only two seeds, MNIST falls 0.3 once.
    bad = {seed: _run(teach=0.5, exam=0.2 if seed < 2 else -0.05, mnist=-0.3 if seed == 4 else 0.0)
           for seed in range(5)}
    failed = _failed(writers_floors("broad", bad))
    assert len(failed) == 6  # three floors, two networks
    assert any("teach held-out" in label and "mean +0.50" in label for label in failed)
    assert any("up on >= 3 of 5 seeds (up on 2)" in label for label in failed)
    assert any("MNIST" in label and "-0.30" in label for label in failed)


def test_narrow_floor_fails_when_any_one_seed_falls_too_far():
    from bench.continual_writers import writers_floors

    fine = {seed: _run(teach=3.0, exam=-0.3, mnist=0.0) for seed in range(3)}
    assert _failed(writers_floors("narrow", fine)) == []
    one_bad = {**fine, 3: _run(teach=3.0, exam=-0.4, mnist=0.0)}
    assert len(_failed(writers_floors("narrow", one_bad))) == 2


def test_contributions_share_the_count_among_writers_and_interleave_them():
    from bench.continual_writers import contributions

    try:
        chosen = writers.writers(group="teach")[:3]
    except writers.FontsMissing as exc:
        pytest.skip(str(exc))
    drawings = contributions(chosen, 30, seed=0)
    per_writer = Counter(writer.name for writer, _ in drawings)
    assert len(drawings) == 30 and set(per_writer.values()) == {10}
    assert all(drawing.writer == writer.name for writer, drawing in drawings)
    # Shuffled together, as visitors contribute: not one writer's block after another's.
    names = [writer.name for writer, _ in drawings]
    assert names != sorted(names, key=[w.name for w in chosen].index)
    # The same seed gives the same drawings; another seed others.
    assert [d.data_url for _, d in contributions(chosen, 30, seed=0)] == [d.data_url for _, d in drawings]
    assert [d.data_url for _, d in contributions(chosen, 30, seed=1)] != [d.data_url for _, d in drawings]
