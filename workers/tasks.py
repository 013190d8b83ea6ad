"""Celery tasks: thin, taking ids; the work is in webapp.retraining and training/."""

from __future__ import annotations

from celery import shared_task

from webapp.retraining import TransientError


@shared_task(name="inkling.fine_tune_models", bind=True, acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(TransientError,), retry_backoff=5, retry_backoff_max=300, retry_jitter=True,
             max_retries=5)
def fine_tune_models(self, run_id: str) -> dict:
    """Fine-tune, gate and publish both networks for training run ``run_id``."""
    from webapp.retraining import execute_run

    return execute_run(run_id)


@shared_task(name="inkling.prune_expired_predictions", ignore_result=True)
def prune_expired_predictions() -> dict:
    """Delete expired unrated predictions (sent by beat every PRUNE_EVERY_SECONDS)."""
    from dataclasses import asdict

    from webapp.retention import prune_expired

    return asdict(prune_expired())
