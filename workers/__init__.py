"""Celery workers: the app (celery_app.py), its task (tasks.py), and what a training run does (fine_tuning.py)."""
