"""Celery tasks: thin, taking ids; the work is in training/ and webapp/services."""
