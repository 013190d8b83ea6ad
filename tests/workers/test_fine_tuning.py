"""A training run as a worker executes it, task body called directly: fine-tune, gate, publish, resume."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.webapp.test_retraining import contribute, fast_training, many_drawings, queued  # noqa: F401
from webapp.extensions import db
from webapp.models import Drawing, ModelVersion, TrainingRun
from workers.fine_tuning import first_mnist_accuracy


def test_a_run_fine_tunes_gates_and_publishes_both_networks(app, client, many_drawings, admin_token, queued,
                                                          fast_training):
    from workers.fine_tuning import execute_run

    # One test client is one contributor: without the cap, the whole batch trains at once.
    app.config.update(AUTO_CONFIRM=True, CONTRIBUTOR_SHARE=1.0)
    contribute(client, many_drawings[:120])
    response = client.post("/api/v1/training-runs", headers=admin_token)
    assert response.status_code == 202 and response.json["status"] == "queued" and response.json["created"]
    run_id = response.json["id"]
    assert queued == [[run_id]]
    again = client.post("/api/v1/training-runs", headers=admin_token)
    assert again.json["id"] == run_id and not again.json["created"]  # no duplicate while one is live

    with app.app_context():
        result = execute_run(run_id)
    body = client.get(f"/api/v1/training-runs/{run_id}", headers=admin_token).json
    assert body["status"] in ("succeeded", "rejected") and body["progress"]["percent"] == 100.0
    assert set(result) == {"fnn", "cnn"}
    for name, entry in result.items():
        assert entry["decision"] in ("promoted", "rejected") and entry["reason"]
        assert entry["version"] == 2 and entry["parent"] == 1
        assert entry["before"]["holdout_size"] == entry["after"]["holdout_size"] > 0
        assert entry["new_samples"] > 0
    with app.app_context():
        for name, entry in result.items():
            rows = db.session.scalars(select(ModelVersion).where(ModelVersion.name == name)
                                      .order_by(ModelVersion.version)).all()
            assert [row.version for row in rows] == [1, 2]
            expected = ["retired", "active"] if entry["decision"] == "promoted" else ["active", "rejected"]
            assert [row.status for row in rows] == expected
            # Both are judged on the same holdout, and keep their matrix of it for the dashboard.
            for row in rows:
                assert sum(map(sum, row.metrics["holdout_confusion"])) == entry["after"]["holdout_size"]
            assert app.extensions["inkling.store"].exists(rows[1].onnx_key)
            # The holdout was never trained on: the version's samples exclude it.
            holdout = db.session.scalar(select(func.count()).select_from(Drawing).where(Drawing.holdout))
            assert rows[1].samples_used == 120 - holdout
        # Running the same run again (a redelivered message) publishes nothing more.
        execute_run(run_id)
        assert db.session.scalar(select(func.count()).select_from(ModelVersion)) == 4
        assert db.session.get(TrainingRun, run_id).lock is None
    listing = client.get("/api/v1/training-runs", headers=admin_token).json
    assert [item["id"] for item in listing["items"]] == [run_id]


def test_a_poisoned_batch_is_not_promoted(app, client, many_drawings, admin_token, queued, fast_training):
    from workers.fine_tuning import execute_run

    app.config.update(AUTO_CONFIRM=True, FINETUNE_EPOCHS=6, CONTRIBUTOR_SHARE=1.0)
    contribute(client, many_drawings[:100])  # honest drawings: the holdout comes from these
    from webapp.models import utcnow

    with app.app_context():  # as if version 1 had trained on the honest drawings
        now = utcnow()
        db.session.execute(ModelVersion.__table__.update().values(data_until=now))
        db.session.execute(Drawing.__table__.update().where(~Drawing.holdout).values(batched_at=now))
        db.session.commit()
    contribute(client, many_drawings[100:220], wrong=True)  # then every label is wrong
    run_id = client.post("/api/v1/training-runs", headers=admin_token).json["id"]
    with app.app_context():
        result = execute_run(run_id)
        for name in ("fnn", "cnn"):
            assert result[name]["decision"] == "rejected", result[name]
            active = db.session.scalar(select(ModelVersion).where(ModelVersion.name == name,
                                                                  ModelVersion.status == "active"))
            assert active.version == 1
        assert db.session.get(TrainingRun, run_id).status == "rejected"


def test_nothing_new_means_nothing_to_train(app, client, admin_token, queued, fast_training):
    from workers.fine_tuning import execute_run

    run_id = client.post("/api/v1/training-runs", headers=admin_token).json["id"]
    with app.app_context():
        result = execute_run(run_id)
    assert {entry["decision"] for entry in result.values()} == {"skipped"}
    assert client.get(f"/api/v1/training-runs/{run_id}", headers=admin_token).json["status"] == "succeeded"


def test_a_run_that_keeps_losing_its_worker_ends_failed(app, client, admin_token, queued):
    from workers.fine_tuning import execute_run

    run_id = client.post("/api/v1/training-runs", headers=admin_token).json["id"]
    with app.app_context():
        db.session.get(TrainingRun, run_id).attempts = app.config["MAX_RUN_ATTEMPTS"]
        db.session.commit()
        assert execute_run(run_id) == {}
        run = db.session.get(TrainingRun, run_id)
        assert run.status == "failed" and "lost 3 times" in run.error and run.lock is None
        assert db.session.scalar(select(func.count()).select_from(ModelVersion)) == 2  # only the v1s


def test_the_mnist_figure_to_keep_is_the_first_version_of_the_chain(app):
    with app.app_context():
        base = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "fnn", ModelVersion.version == 1))
        base.metrics = {**base.metrics, "mnist_test_accuracy": 0.97}
        for version, parent, accuracy in ((2, 1, 0.968), (3, 2, 0.966), (4, None, 0.5), (5, 4, 0.49)):
            db.session.add(ModelVersion(name="fnn", version=version, parent_version=parent, status="rejected",
                                        object_prefix=f"x/{version}/", onnx_sha256="0" * 64,
                                        metrics={"mnist_test_accuracy": accuracy}))
        db.session.add(ModelVersion(name="cnn", version=2, parent_version=1, status="rejected", object_prefix="y/",
                                    onnx_sha256="0" * 64, metrics={"mnist_test_accuracy": 0.1}))
        db.session.commit()
        versions = {row.version: row for row in db.session.scalars(select(ModelVersion)
                                                                      .where(ModelVersion.name == "fnn"))}
        assert first_mnist_accuracy(versions[3]) == 0.97  # through v2 to the base, not the parent's 0.968
        assert first_mnist_accuracy(versions[1]) == 0.97
        assert first_mnist_accuracy(versions[5]) == 0.5  # another chain (an imported version) keeps its own
        versions[2].parent_version = 3  # a broken record (a loop) ends the walk instead of hanging it
        assert first_mnist_accuracy(versions[3]) in (0.968, 0.966)
        base.metrics = {key: value for key, value in base.metrics.items() if key != "mnist_test_accuracy"}
        versions[2].parent_version = 1
        db.session.commit()
        assert first_mnist_accuracy(versions[3]) is None


def test_the_holdout_a_run_is_judged_on_knows_who_made_each_drawing(app, client, many_drawings, admin_token,
                                                                   queued, fast_training):
    """The gate counts no contributor over CONTRIBUTOR_SHARE of its evidence, so the holdout the
    worker loads carries each drawing's contributor, earliest confirmed first."""
    from workers.fine_tuning import _begin_attempt, _training_data

    app.config.update(AUTO_CONFIRM=True)
    other = app.test_client()  # another cookie jar: another contributor
    contribute(client, many_drawings[:30])
    contribute(other, many_drawings[30:60])
    run_id = client.post("/api/v1/training-runs", headers=admin_token).json["id"]
    with app.app_context():
        run = db.session.get(TrainingRun, run_id)
        assert _begin_attempt(run)
        parent = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "cnn"))
        data = _training_data(run, parent, reference=None)
        expected = db.session.execute(select(Drawing.client_id).where(Drawing.holdout)
                                      .order_by(Drawing.first_confirmed_at, Drawing.id)).scalars().all()
    assert len(set(expected)) == 2 and len(data.holdout) == len(expected) > 0
    assert data.holdout.contributors.tolist() == expected


def test_a_run_judges_with_the_deployments_contributor_share(app, client, many_drawings, admin_token, queued,
                                                            fast_training, monkeypatch):
    import training.finetune
    from workers.fine_tuning import execute_run

    judged = []
    real_judge = training.finetune.judge

    def spy(*args, **kwargs):
        judged.append((kwargs["max_share"], list(kwargs["holdout"].contributors)))
        return real_judge(*args, **kwargs)

    monkeypatch.setattr(training.finetune, "judge", spy)
    app.config.update(AUTO_CONFIRM=True, CONTRIBUTOR_SHARE=0.3)
    contribute(client, many_drawings[:60])
    run_id = client.post("/api/v1/training-runs", headers=admin_token).json["id"]
    with app.app_context():
        execute_run(run_id)
        holdout = db.session.execute(select(Drawing.client_id).where(Drawing.holdout)).scalars().all()
    assert [share for share, _ in judged] == [0.3, 0.3]  # both networks, the deployment's share
    assert all(sorted(contributors) == sorted(holdout) for _, contributors in judged)
