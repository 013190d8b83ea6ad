"""The production smoke test is a script (`make prod-smoke`), not part of the pytest suite."""

collect_ignore_glob = ["*.py"]
