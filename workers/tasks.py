"""Celery tasks: thin, taking ids; the run itself is in workers.fine_tuning.

Acknowledgement and concurrency are set once for every task, in webapp/broker.py.
"""

from __future__ import annotations

from celery import shared_task

from webapp.runs import FINE_TUNE_TASK
from workers.fine_tuning import TransientError, execute_run


@shared_task(name=FINE_TUNE_TASK, autoretry_for=(TransientError,), retry_backoff=5, retry_backoff_max=300,
             retry_jitter=True, max_retries=5)
def fine_tune_models(run_id: str) -> dict:
    """Fine-tune, gate and publish both networks for training run ``run_id``."""
    return execute_run(run_id)


@shared_task(name="inkling.prune_expired_predictions", ignore_result=True)
def prune_expired_predictions() -> dict:
    """Delete expired unrated predictions (sent by beat every PRUNE_EVERY_SECONDS)."""
    from dataclasses import asdict

    from webapp.retention import prune_expired

    return asdict(prune_expired())
