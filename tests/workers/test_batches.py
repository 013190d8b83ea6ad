"""What a run's end does to the drawings it took: a rejected run's stay tried (they no longer
count towards RETRAIN_EVERY, and a later run trains on them with what is new by then); a
failed run's wait again, whichever way it failed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.webapp.test_retraining import contribute, many_drawings, queued  # noqa: F401
from webapp.extensions import db
from webapp.models import Drawing, TrainingRun


@pytest.fixture
def one_contributor(app):
    app.config.update(AUTO_CONFIRM=True, RETRAIN_EVERY=0, CONTRIBUTOR_SHARE=1.0, HOLDOUT_FRACTION=0.0)


@pytest.fixture
def rejecting(monkeypatch):
    """Runs whose networks see the data they would train on, and reject every candidate."""
    import workers.fine_tuning as fine_tuning

    seen = []

    def fine_tune_and_publish(run, name, *, parent, data, mnist, index):
        seen.append((name, len(data.new), len(data.replay)))
        return {"decision": "rejected", "reason": "test", "new_samples": len(data.new)}

    monkeypatch.setattr(fine_tuning, "_fine_tune_and_publish", fine_tune_and_publish)
    monkeypatch.setattr(fine_tuning, "load_reference", lambda mnist: None)
    return seen


def start_run(client, token) -> str:
    response = client.post("/api/v1/training-runs", headers=token)
    assert response.status_code == 202
    return response.json["id"]


def waiting() -> int:
    from webapp.curation import waiting_count

    return waiting_count()


def test_a_rejected_batch_is_tried_and_trains_again_only_with_new_drawings(app, client, admin_token, many_drawings,
                                                                          queued, one_contributor, rejecting):
    from workers.fine_tuning import execute_run

    contribute(client, many_drawings[:10])
    first = start_run(client, admin_token)
    with app.app_context():
        execute_run(first)
        assert db.session.get(TrainingRun, first).status == "rejected"
        assert waiting() == 0  # tried: RETRAIN_EVERY no longer counts them
    assert rejecting == [("fnn", 10, 0), ("cnn", 10, 0)]

    # Asked again with nothing new, a run does not retrain on the tried batch alone.
    second = start_run(client, admin_token)
    with app.app_context():
        result = execute_run(second)
    assert {entry["decision"] for entry in result.values()} == {"skipped"} and len(rejecting) == 2

    # With new drawings, the next run trains on them and on the tried batch together.
    contribute(client, many_drawings[10:14])
    with app.app_context():
        assert waiting() == 4
        execute_run(start_run(client, admin_token))
    assert rejecting[2:] == [("fnn", 14, 0), ("cnn", 14, 0)]


def test_a_run_that_raises_gives_its_batch_back(app, client, admin_token, many_drawings, queued, one_contributor,
                                                monkeypatch):
    import workers.fine_tuning as fine_tuning

    def crash(run):
        raise RuntimeError("out of disk")

    contribute(client, many_drawings[:10])
    run_id = start_run(client, admin_token)
    monkeypatch.setattr(fine_tuning, "_train_all", crash)
    with app.app_context():
        fine_tuning.execute_run(run_id)
        run = db.session.get(TrainingRun, run_id)
        assert run.status == "failed" and "out of disk" in run.error and run.started_at is not None
        assert waiting() == 10
        assert db.session.scalar(select(func.count()).select_from(Drawing)
                                 .where(Drawing.batched_at.is_not(None))) == 0


def test_the_next_run_takes_what_a_failed_run_left(app, client, admin_token, many_drawings, queued, one_contributor,
                                                   monkeypatch, rejecting):
    import workers.fine_tuning as fine_tuning

    contribute(client, many_drawings[:10])
    failing = start_run(client, admin_token)
    train_all = fine_tuning._train_all
    monkeypatch.setattr(fine_tuning, "_train_all", lambda run: 1 / 0)
    with app.app_context():
        fine_tuning.execute_run(failing)
    monkeypatch.setattr(fine_tuning, "_train_all", train_all)
    contribute(client, many_drawings[10:12])
    with app.app_context():
        fine_tuning.execute_run(start_run(client, admin_token))
        assert waiting() == 0
    assert rejecting == [("fnn", 12, 0), ("cnn", 12, 0)]


@pytest.mark.parametrize("how", ["worker went silent", "worker lost too often"])
def test_a_killed_run_gives_its_batch_back(app, client, admin_token, many_drawings, queued, one_contributor, how):
    from webapp.models import utcnow
    from webapp.runs import live_run
    from workers.fine_tuning import _begin_attempt, execute_run

    contribute(client, many_drawings[:10])
    run_id = start_run(client, admin_token)
    with app.app_context():
        run = db.session.get(TrainingRun, run_id)
        assert _begin_attempt(run)  # the worker took the batch, then was killed mid-run
        assert waiting() == 0
        if how == "worker went silent":
            run.heartbeat_at = utcnow() - timedelta(seconds=app.config["STALE_RUN_SECONDS"] + 1)
            db.session.commit()
            assert live_run() is None
        else:
            run.attempts = app.config["MAX_RUN_ATTEMPTS"]
            db.session.commit()
            assert execute_run(run_id) == {}
        assert db.session.get(TrainingRun, run_id).status == "failed"
        assert waiting() == 10
