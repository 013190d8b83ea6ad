"""Learning that generalises, the database side: the frozen holdout, the per-contributor cap,
follow-up runs, and a review queue of what can be reviewed."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import func, select

from tests.webapp.test_admin import signed_in, admin  # noqa: F401
from tests.webapp.test_retraining import contribute, many_drawings, queued  # noqa: F401
from webapp.extensions import db
from webapp.models import Drawing, Prediction, TrainingRun
from webapp.storage import get_store


def add_drawing(*, client_id: str | None = None, label: int | None = 3, source: str = "contribution") -> Drawing:
    drawing_id = str(uuid.uuid4())
    row = Drawing(id=drawing_id, source=source, label=label, status="pending", object_key=f"drawings/{drawing_id[:2]}/{drawing_id}.png",
                  content_type="image/png", sha256="0" * 64, size_bytes=1, width=28, height=28,
                  pixels=bytes(784), client_id=client_id)
    db.session.add(row)
    # Every row has its object: the fixtures check the store against the rows after each test.
    get_store().put(row.object_key, b"\x89PNG", content_type="image/png")
    return row


def review(client, token, drawing_id, **item):
    response = client.post(f"/api/v1/drawings/{drawing_id}/review", json=item, headers=token)
    assert response.status_code == 200, response.json
    return response.json


def flags(app, ids):
    with app.app_context():
        return {row.id: (row.holdout, row.first_confirmed_at) for row in
                db.session.scalars(select(Drawing).where(Drawing.id.in_(ids)))}


@pytest.fixture
def confirmed_both_sides(app, client, many_drawings):
    """Confirmed drawings, some in the holdout and some not; returns (holdout ids, training ids)."""
    app.config.update(AUTO_CONFIRM=True, RETRAIN_EVERY=0, HOLDOUT_FRACTION=0.3)
    ids = contribute(client, many_drawings[:20])
    held = [i for i, (holdout, _) in flags(app, ids).items() if holdout]
    trained = [i for i in ids if i not in held]
    assert held and trained
    return held, trained


@pytest.mark.parametrize("path", ["relabel", "reconfirm", "reject_and_restore", "quarantine_recall"])
def test_the_holdout_flag_never_changes_after_the_first_confirmation(app, client, admin_token, confirmed_both_sides,
                                                                     path):
    held, trained = confirmed_both_sides
    before = flags(app, held + trained)
    for ids, fraction in ((held, 0.0), (trained, 1.0)):
        # The share a fresh decision would use now puts every drawing on the other side.
        app.config["HOLDOUT_FRACTION"] = fraction
        for drawing_id in ids[:3]:
            if path == "relabel":
                label = client.get(f"/api/v1/drawings/{drawing_id}").json["label"]
                review(client, admin_token, drawing_id, status="confirmed", label=(label + 1) % 10)
            elif path == "reconfirm":
                review(client, admin_token, drawing_id, status="confirmed")
            elif path == "reject_and_restore":
                assert review(client, admin_token, drawing_id, status="rejected")["holdout"] == (ids is held)
                review(client, admin_token, drawing_id, status="confirmed")
            else:  # sent back to review by a quarantine, then confirmed by a reviewer
                with app.app_context():
                    db.session.execute(Drawing.__table__.update().where(Drawing.id == drawing_id)
                                       .values(status="pending", confirmed_at=None))
                    db.session.commit()
                review(client, admin_token, drawing_id, status="confirmed")
    assert flags(app, held + trained) == before


def test_with_enough_contributors_the_holdout_is_whole_contributors(app):
    from webapp.curation import confirm, holdout_contributor

    app.config.update(HOLDOUT_MIN_CONTRIBUTORS=5, HOLDOUT_FRACTION=0.5)
    with app.app_context():
        clients = [f"client-{n}" for n in range(12)]
        rows = [add_drawing(client_id=client, label=n % 10) for n in range(4) for client in clients]
        for row in rows:
            confirm(row, reason="test")
            db.session.flush()
        db.session.commit()
        # Until the fifth contributor, drawings were split per drawing; from then on, by contributor.
        later = rows[4:]
        for row in later:
            assert row.holdout == holdout_contributor(row.client_id, fraction=0.5)
        sides = {row.client_id: row.holdout for row in rows[len(clients):]}
        assert set(sides.values()) == {True, False}


def test_contributor_limit():
    from webapp.curation import contributor_limit

    # One contributor with 60, six with 10: 20 keeps the big one at 20 of 80, a quarter.
    assert contributor_limit([60] + [10] * 6, share=0.25, minimum=2) == 20
    assert contributor_limit([5] * 8, share=0.25, minimum=2) == 5  # nobody is over the share
    # A lone contributor can never be under a quarter: a slice at a time.
    assert contributor_limit([150], share=0.25, minimum=25) == 25
    assert contributor_limit([], share=0.25, minimum=25) == 25


def test_a_batch_caps_each_contributor_and_the_rest_waits(app):
    from webapp.curation import confirm, take_batch, waiting_count
    from webapp.models import utcnow

    app.config.update(CONTRIBUTOR_SHARE=0.25, RETRAIN_EVERY=8, HOLDOUT_FRACTION=0.0)
    with app.app_context():
        big = [add_drawing(client_id="big") for _ in range(60)]
        small = [add_drawing(client_id=f"small-{n}") for n in range(6) for _ in range(10)]
        for row in big + small:
            confirm(row, reason="test")
        db.session.commit()
        assert waiting_count() == 120
        now = utcnow()
        assert take_batch(until=now) == 80
        db.session.commit()
        taken = db.session.execute(select(Drawing.client_id, func.count()).where(Drawing.batched_at.is_not(None))
                                   .group_by(Drawing.client_id)).all()
        assert dict(taken)["big"] == 20 and sum(count for _, count in taken) == 80
        # The oldest of the big contributor's drawings went first; the rest wait.
        assert all(row.batched_at is not None for row in big[:20]) and all(row.batched_at is None for row in big[20:])
        assert waiting_count() == 40


def _finish_quickly(monkeypatch, during=None):
    """Run the task body with the training itself replaced: what is tested is the lifecycle."""
    import workers.fine_tuning as fine_tuning

    def train_all(run):
        if during is not None:
            during()
        return {"fnn": {"decision": "skipped"}, "cnn": {"decision": "skipped"}}

    monkeypatch.setattr(fine_tuning, "_train_all", train_all)
    return fine_tuning.execute_run


def test_a_trigger_during_a_live_run_schedules_exactly_one_follow_up(app, client, admin_token, many_drawings,
                                                                   queued, monkeypatch):
    app.config.update(AUTO_CONFIRM=True, RETRAIN_EVERY=0, CONTRIBUTOR_SHARE=1.0)
    contribute(client, many_drawings[:5])
    first = client.post("/api/v1/training-runs", headers=admin_token).json
    for _ in range(3):  # the admin presses "retrain" again, three times, while it is live
        again = client.post("/api/v1/training-runs", headers=admin_token).json
        assert again["id"] == first["id"] and not again["created"] and again["follow_up"]
    execute_run = _finish_quickly(monkeypatch, during=lambda: contribute(client, many_drawings[5:8]))
    with app.app_context():
        execute_run(first["id"])
        runs = db.session.scalars(select(TrainingRun).order_by(TrainingRun.created_at)).all()
        assert [run.trigger for run in runs] == ["admin", "follow-up"]
        assert runs[1].status == "queued" and len(queued) == 2
        # The follow-up, with nothing asked of it and little waiting, starts none.
        execute_run(runs[1].id)
        assert db.session.scalar(select(func.count()).select_from(TrainingRun)) == 2


def test_a_run_that_ends_with_enough_waiting_starts_the_next(app, client, admin_token, many_drawings, queued,
                                                             monkeypatch):
    app.config.update(AUTO_CONFIRM=True, RETRAIN_EVERY=1000, CONTRIBUTOR_SHARE=0.25, HOLDOUT_FRACTION=0.0)
    contribute(client, many_drawings[:30])  # one contributor: the cap takes a slice a run
    app.config["RETRAIN_EVERY"] = 8  # min slice: 2 drawings
    run_id = client.post("/api/v1/training-runs", headers=admin_token).json["id"]
    execute_run = _finish_quickly(monkeypatch)
    with app.app_context():
        execute_run(run_id)
        batched = db.session.scalar(select(func.count()).select_from(Drawing).where(Drawing.batched_at.is_not(None)))
        assert batched == 2
        runs = db.session.scalars(select(TrainingRun).order_by(TrainingRun.created_at)).all()
        assert [run.trigger for run in runs] == ["admin", "follow-up"] and runs[1].status == "queued"


def test_the_automatic_trigger_leaves_a_live_run_alone(app, client, many_drawings, queued):
    app.config.update(AUTO_CONFIRM=True, RETRAIN_EVERY=4, CONTRIBUTOR_SHARE=1.0)
    contribute(client, many_drawings[:12])
    assert len(queued) == 1
    with app.app_context():
        run = db.session.scalar(select(TrainingRun))
        assert run.trigger == "auto" and not run.follow_up


def test_the_review_queue_leaves_out_unrated_predictions_and_puts_disagreement_first(app, signed_in):
    from webapp.dashboard import counts

    with app.app_context():
        unrated = add_drawing(source="prediction", label=None)
        calm = add_drawing(client_id="a", label=4)
        unsure = add_drawing(client_id="a", label=5)
        disputed = add_drawing(client_id="a", label=6)
        db.session.flush()
        for row, label, confidence in ((calm, 4, 0.99), (unsure, 5, 0.55), (disputed, 1, 0.97), (unrated, 2, 0.9)):
            for name in ("fnn", "cnn"):
                db.session.add(Prediction(drawing_id=row.id, model_name=name, model_version=1, label=label,
                                          confidence=confidence, probabilities=[0.1] * 10, latency_ms=1.0))
        db.session.commit()
        ids = {"unrated": unrated.id, "calm": calm.id, "unsure": unsure.id, "disputed": disputed.id}
        numbers = counts()
        assert numbers["by_status"]["pending"] == 3 and numbers["unrated"] == 1
    for url in ("/admin/review", "/admin/review?status=pending"):
        page = signed_in.get(url).get_data(as_text=True)
        shown = re.findall(r'data-id="([^"]+)"', page)
        assert shown == [ids["disputed"], ids["unsure"], ids["calm"]], url
