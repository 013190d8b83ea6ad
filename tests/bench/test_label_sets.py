"""The label-set bench's bookkeeping: held-out drawings apart from the contributed ones, and its floors."""

from __future__ import annotations

from argparse import Namespace

from training.doodles import doodle_batch


def test_held_out_drawings_are_never_contributed_ones():
    from bench.label_sets import drawings

    train, held_out = drawings(0, Namespace(per_class=4, held_out=12))
    assert len(train) == 24 and len(held_out) == 12
    assert not {d.png for d in train} & {d.png for d in held_out}


def _run(status="succeeded", seconds=95):
    return {"id": "r1", "status": status, "started": "2026-12-01T10:00:00+00:00",
            "finished": f"2026-12-01T10:0{seconds // 60}:{seconds % 60:02d}+00:00", "result": {}, "error": None}


def test_online_floors_count_labels_given_as_index_or_class_name(capsys):
    from bench.label_sets import online_report

    held_out = doodle_batch(10, seed=0)
    # The CNN answers by class name, the FNN by index; the FNN is wrong on two of ten.
    answers = [{"cnn": {"label": d.name}, "fnn": {"label": d.label if i >= 2 else (d.label + 1) % 6}}
               for i, d in enumerate(held_out)]
    checks = dict(online_report(_run(), answers, held_out))
    failed = [label for label, passed in checks.items() if not passed]
    assert failed == ["fnn >= 85% (80.00%)"]
    assert "cnn >= 90% (100.00%)" in checks and "the run took <= 180 s (95.0 s)" in checks
    assert "95.0 s" in capsys.readouterr().out


def test_online_floors_fail_a_slow_or_rejected_run():
    from bench.label_sets import online_report

    held_out = doodle_batch(6, seed=0)
    answers = [{"cnn": {"label": d.label}, "fnn": {"label": d.label}} for d in held_out]
    failed = [label for label, passed in online_report(_run("rejected", 200), answers, held_out) if not passed]
    assert failed == ["the first run succeeded (rejected)", "the run took <= 180 s (200.0 s)"]
