"""A deployment in a folder, for benchmarks: the app on SQLite with a local object store, the
base versions active, the reference set stored, and runs executed by the workers' code.

Everything goes through the product's own paths: drawings are posted to the API by test
clients (one client cookie each, so one contributor each), confirmed by the AUTO_CONFIRM
policy, runs start automatically every RETRAIN_EVERY drawings (and as follow-ups) and once
through the admin API for what still waits, and workers.fine_tuning.execute_run executes
them. Only the task queue is replaced: a queued run is executed as soon as the drawing that
queued it is stored, as an idle worker would.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import select

from training import MODEL_NAMES


class Deployment:
    def __init__(self, folder: Path, *, models_root: Path, reference: bytes | None, **config):
        from flask_migrate import upgrade

        from training.reference import from_bytes, reference_key
        from training.versions import load
        from webapp import create_app
        from webapp.cli import import_version
        from webapp.extensions import db
        from webapp.storage import get_store

        self.queued: list[str] = []
        self.app = create_app({
            "TESTING": True,  # a throwaway secret key; nothing here outlives the folder
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'inkling.sqlite'}",
            "INSTANCE_PATH": str(folder),
            "LOCAL_STORAGE_PATH": str(folder / "objects"),
            "MIGRATIONS": True,
            "PREDICTION_WRITE_BEHIND": False,
            # The simulated contributors post from one address within minutes, standing for
            # days of honest writing: the limits and the flood quarantine are for abuse.
            "RATELIMIT_ENABLED": False,
            "QUARANTINE_MIN_LABELS": 10**9,
            "AUTO_CONFIRM_DAILY_CAP": 10**9,
            "AUTO_CONFIRM": True,
            **config,
        })
        self.app.extensions["celery"].send_task = self._send_task
        with self.app.app_context():
            upgrade()
            for name in MODEL_NAMES:
                import_version(load(models_root, name), activate=True)
            if reference is not None:
                get_store().put(reference_key(from_bytes(reference)["version"]), reference,
                                content_type="application/octet-stream")
            db.session.commit()
        runner = self.app.test_cli_runner()
        runner.invoke(args=["users", "create-admin", "root", "--password", "a long enough password"])
        token = runner.invoke(args=["users", "issue-token", "root"]).output.strip().splitlines()[-1]
        self.admin = {"Authorization": f"Bearer {token}"}

    def _send_task(self, name, args=None, **kwargs):
        self.queued.append(args[0])

        class Result:
            id = f"bench-{len(self.queued)}"

        return Result()

    def contributor(self):
        """A new visitor: its own client cookie, so its own contributor id."""
        return self.app.test_client()

    def contribute(self, client, data_url: str, label: int) -> list[dict]:
        """Post one drawing; the results of the runs it started (with their follow-ups)."""
        response = client.post("/api/v1/drawings", json={"image": data_url, "label": int(label)})
        if response.status_code != 201:
            raise RuntimeError(f"contribution refused: {response.status_code} {response.get_json()}")
        return self.execute_queued()

    def execute_queued(self) -> list[dict]:
        from workers.fine_tuning import execute_run

        results = []
        while self.queued:
            with self.app.app_context():
                results.append(execute_run(self.queued.pop(0)))
        return results

    def train_the_rest(self, *, max_runs: int = 20) -> list[dict]:
        """Ask for runs as an admin does while confirmed drawings still wait (the contributor
        cap leaves a lone contributor's drawings to several runs); each run's result."""
        from webapp.curation import waiting_count

        client, results = self.app.test_client(), []
        while len(results) < max_runs:
            with self.app.app_context():
                if waiting_count() == 0:
                    break
            response = client.post("/api/v1/training-runs", headers=self.admin)
            if response.status_code != 202:
                raise RuntimeError(f"run not started: {response.status_code} {response.get_json()}")
            executed = self.execute_queued()
            results += executed
            if not all(executed):  # a failed run returns nothing: asking again would fail again
                raise RuntimeError("a training run failed; see the log above")
        return results

    def active_models(self) -> dict:
        """The active version of each network, loaded in Keras, with its version number."""
        import keras

        from training.versions import KERAS_FILE
        from webapp.extensions import db
        from webapp.models import ModelVersion
        from webapp.storage import get_store

        out = {}
        with self.app.app_context(), tempfile.TemporaryDirectory(prefix="inkling-bench-") as tmp:
            for name in MODEL_NAMES:
                row = db.session.scalar(select(ModelVersion).where(ModelVersion.name == name,
                                                                   ModelVersion.status == "active"))
                path = Path(tmp) / f"{name}-{KERAS_FILE}"
                path.write_bytes(get_store().get(f"{row.object_prefix}{KERAS_FILE}"))
                out[name] = (row.version, keras.models.load_model(path))
        return out
