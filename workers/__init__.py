"""Celery workers: the app (celery_app.py) and its tasks (tasks.py)."""
