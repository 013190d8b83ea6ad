"""Retention on SQLite and PostgreSQL, with the local store and S3 (moto's server): expired unrated
predictions pruned, object and row; everything people gave kept; a failure halfway leaves no row
without its object."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from webapp.extensions import db
from webapp.models import AuditEvent, Drawing, Prediction, Rating, utcnow
from webapp.storage import StorageUnavailable, get_store

from .conftest import stored_drawing_keys
from .test_reconcile import any_app  # noqa: F401  (fixture: the app on a local store, then on S3)
from .test_storage import monkeypatch_module, s3_config, s3_endpoint, s3_store  # noqa: F401  (fixtures)

PASSWORD = "long enough"


def predict(client, drawing) -> str:
    response = client.post("/api/v1/predictions", json={"image": drawing.data_url})
    assert response.status_code == 200 and response.json["id"], response.json
    return response.json["id"]


def contribute(client, drawing) -> str:
    response = client.post("/api/v1/drawings", json={"image": drawing.data_url, "label": drawing.label})
    assert response.status_code == 201, response.json
    return response.json["id"]


def backdate(app, ids, days: float) -> None:
    with app.app_context():
        db.session.execute(update(Drawing).where(Drawing.id.in_(ids))
                           .values(created_at=utcnow() - timedelta(days=days)))
        db.session.commit()


def present(app, drawing_id) -> tuple[bool, bool, int, int]:
    """(row, object, prediction rows, rating rows) of a drawing."""
    with app.app_context():
        row = db.session.get(Drawing, drawing_id)
        key = row.object_key if row else None
        predictions = db.session.scalar(select(func.count()).select_from(Prediction)
                                        .where(Prediction.drawing_id == drawing_id))
        ratings = db.session.scalar(select(func.count()).select_from(Rating).where(Rating.drawing_id == drawing_id))
        return row is not None, bool(key) and get_store().exists(key), predictions, ratings


def prune(app, *args):
    return app.test_cli_runner().invoke(args=["storage", "prune", *args])


# ---- retention ----------------------------------------------------------------------------------

def test_prune_removes_expired_unrated_predictions_and_keeps_everything_else(any_app, canvas_drawings):
    app, client = any_app, any_app.test_client()
    expired = [predict(client, drawing) for drawing in canvas_drawings[:5]]
    young = predict(client, canvas_drawings[5])
    rated = predict(client, canvas_drawings[6])
    assert client.post(f"/api/v1/predictions/{rated}/feedback", json={"label": 3}).status_code == 201
    flagged = predict(client, canvas_drawings[7])
    assert client.post(f"/api/v1/drawings/{flagged}/not-a-digit").status_code == 200
    contributed = contribute(client, canvas_drawings[8])
    kept_old = [rated, flagged, contributed]
    backdate(app, expired + kept_old, days=8)
    backdate(app, [young], days=6)

    result = prune(app, "--batch-size", "2")  # several batches
    assert result.exit_code == 0, result.output
    assert "deleted 5 expired predictions and 5 objects" in result.output
    for drawing_id in expired:
        assert present(app, drawing_id) == (False, False, 0, 0)
    assert present(app, rated) == (True, True, 2, 1)
    for drawing_id in (young, flagged, contributed):
        assert present(app, drawing_id)[:3] == (True, True, 2)
    # Nothing left to do the second time.
    assert "deleted 0 expired" in prune(app).output
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "drawing.delete")).all()
        assert sorted(event.detail["count"] for event in events) == [1, 2, 2]
        assert {event.actor for event in events} == {"retention"}


def test_the_retention_period_is_configurable(app, client, canvas_drawings):
    app.config["PREDICTION_RETENTION"] = timedelta(hours=1)
    old, new = predict(client, canvas_drawings[0]), predict(client, canvas_drawings[1])
    backdate(app, [old], days=0.1)  # 2.4 hours
    assert prune(app).exit_code == 0
    assert present(app, old)[0] is False and present(app, new)[0] is True


@pytest.mark.orphans
def test_the_store_failing_halfway_leaves_no_row_without_its_object(any_app, canvas_drawings, monkeypatch):
    app, client = any_app, any_app.test_client()
    expired = [predict(client, drawing) for drawing in canvas_drawings[:6]]
    backdate(app, expired, days=30)
    store = app.extensions["inkling.store"]
    real_delete_many, batches = store.delete_many, []

    def failing_delete_many(keys):
        if len(batches) == 1:
            raise StorageUnavailable("S3 delete failed: the network went away")
        batches.append(keys)
        real_delete_many(keys)

    monkeypatch.setattr(store, "delete_many", failing_delete_many)
    result = prune(app, "--batch-size", "2")
    assert result.exit_code != 0 and "flask storage reconcile" in result.output
    rows, objects = stored_drawing_keys(app)
    assert rows <= objects, "a row points at a deleted object"
    assert len(rows) == 2 and len(objects) == 4  # the second batch's rows went, its objects did not
    # The objects left behind are orphans the reconciler removes; the next prune does the rest.
    monkeypatch.setattr(store, "delete_many", real_delete_many)
    assert app.test_cli_runner().invoke(args=["storage", "reconcile", "--older-than", "0"]).exit_code == 0
    assert prune(app).exit_code == 0
    assert stored_drawing_keys(app) == (set(), set())


def test_a_database_failure_deletes_nothing(app, client, canvas_drawings, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from webapp import retention

    expired = [predict(client, drawing) for drawing in canvas_drawings[:2]]
    backdate(app, expired, days=30)

    def broken(*args, **kwargs):
        raise OperationalError("DELETE", {}, Exception("server closed the connection"))

    monkeypatch.setattr(retention, "_delete_rows", broken)
    assert prune(app).exit_code != 0
    for drawing_id in expired:
        assert present(app, drawing_id)[:2] == (True, True)


def test_the_worker_task_prunes_and_beat_schedules_it(app, client, canvas_drawings):
    from workers.tasks import prune_expired_predictions

    old = predict(client, canvas_drawings[0])
    backdate(app, [old], days=8)
    with app.app_context():
        assert prune_expired_predictions.run()["rows"] == 1
    schedule = app.extensions["celery"].conf.beat_schedule
    assert [entry["task"] for entry in schedule.values()] == ["inkling.prune_expired_predictions"]


def test_s3_deletes_many_objects_per_request(s3_store):
    keys = [f"drawings/ab/{index}.png" for index in range(1003)]  # more than one request's worth
    for key in keys[:3] + keys[-3:]:
        s3_store.put(key, b"png", content_type="image/png")
    calls = []
    real = s3_store.client.delete_objects
    s3_store.client.delete_objects = lambda **kwargs: calls.append(kwargs) or real(**kwargs)
    s3_store.delete_many(keys[1:])  # missing keys are no error, as for delete()
    assert [obj.key for obj in s3_store.list("drawings/")] == [keys[0]]
    assert [len(call["Delete"]["Objects"]) for call in calls] == [1000, 2]
