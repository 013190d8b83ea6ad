"""HTTP errors: the exceptions that carry a status, and their handlers (JSON {"error", "code"} under /api/ and
/healthz, a readable page elsewhere)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from training.preprocess import PreprocessError
from webapp.extensions import db
from webapp.registry import ModelsUnavailable
from webapp.storage import StorageError

log = logging.getLogger(__name__)

class ServiceError(Exception):
    """A failure with an HTTP status and a machine-readable code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class DuplicateId(ServiceError):
    """Another request committed a drawing under the same client-supplied id first."""

    def __init__(self):
        super().__init__(409, "id_taken", "a drawing was already saved under this id")


CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
         415: "unsupported_media_type", 429: "rate_limited"}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def error_response(status: int, code: str, message: str):
    if wants_json():
        return jsonify({"error": message, "code": code}), status
    titles = {404: "Page not found", 413: "Too large", 503: "Temporarily unavailable"}
    return render_template("errors/error.html", status=status, title=titles.get(status, "Something went wrong"),
                           message=message), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(PreprocessError)
    def preprocess_error(exc: PreprocessError):
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(ModelsUnavailable)
    def models_unavailable(exc: ModelsUnavailable):
        return error_response(503, "models_unavailable", f"the models are not ready: {exc}")

    @app.errorhandler(StorageError)
    def storage_error(exc: StorageError):
        log.warning("storage error: %s", exc)
        return error_response(503, "storage_unavailable", "image storage is unavailable; try again shortly")

    @app.errorhandler(SQLAlchemyError)
    def database_error(exc: SQLAlchemyError):
        db.session.rollback()
        log.warning("database error: %s", exc)
        return error_response(503, "database_unavailable", "the database is unavailable; try again shortly")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = f"the request is too large; the limit is {app.config['MAX_CONTENT_LENGTH']:,} bytes"
        return error_response(status, CODES.get(status, exc.name.lower().replace(" ", "_")), message)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "something went wrong on our side")
