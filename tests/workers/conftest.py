"""Worker tests run against the web app's fixtures: the same databases, store and tiny models."""

from tests.webapp.conftest import (  # noqa: F401
    _store_check_for_this_test, admin_token, app, client, database_url, object_root, runner,
)
