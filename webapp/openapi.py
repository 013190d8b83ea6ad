"""The OpenAPI 3 document of /api/v1, built from the app's own routes and served at /api/v1/openapi.json."""

from __future__ import annotations

import inspect
import re

from apispec import APISpec
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Flask, current_app, jsonify

from webapp.dataset import FORMATS
from webapp.models import SOURCES, STATUSES
from webapp.strokes import MAX_POINTS, MAX_STROKES

PREFIX = "/api/v1"
bp = Blueprint("openapi", __name__, url_prefix=PREFIX)

ERROR = {"$ref": "#/components/schemas/Error"}
IMAGE = {"type": "string", "description": "a data URL or base64 of a PNG, JPEG or WebP image"}
LABEL = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string"}],
         "description": "a class of the label set: its index (a digit 0-9 for digits) or its name"}
LABEL_SET = {"type": "string", "default": "digits",
             "description": "a label set's slug (GET /api/v1/label-sets lists them); digits when absent"}
STROKES = {"type": "array", "minItems": 1, "maxItems": MAX_STROKES,
           "description": f"optional: the strokes as drawn, at most {MAX_POINTS:,} points in all; x and y in "
                          "pixels of the image, t in ms since the first point, never decreasing",
           "items": {"type": "object", "required": ["x", "y", "t"], "additionalProperties": False, "properties": {
               axis: {"type": "array", "minItems": 1, "items": {"type": "number"}} for axis in ("x", "y", "t")}}}
# Query parameters, by endpoint: the route rules carry only the path's.
QUERY = {
    "api.list_drawings": [("label_set", LABEL_SET), ("label", {"type": "integer", "minimum": 0}),
                          ("status", {"type": "string", "enum": list(STATUSES)}),
                          ("source", {"type": "string", "enum": list(SOURCES)}), ("page", {"type": "integer", "minimum": 1})],
    "api.list_models": [("label_set", LABEL_SET)],
    "api.stats": [("label_set", LABEL_SET)],
    "api.dataset_needs": [("label_set", LABEL_SET)],
    "admin_api.list_training_runs": [("label_set", LABEL_SET)],
    "admin_api.export_dataset": [("format", {"type": "string", "enum": list(FORMATS)}), ("label_set", LABEL_SET)],
}
# JSON bodies, by endpoint.
BODIES = {
    "api.create_prediction": {"type": "object", "required": ["image"], "properties": {
        "image": IMAGE, "label_set": LABEL_SET, "strokes": STROKES}},
    "api.create_feedback": {"type": "object", "required": ["label"], "properties": {"label": LABEL}},
    "api.create_drawing": {"type": "object", "required": ["image"], "properties": {
        "image": IMAGE, "label_set": LABEL_SET, "label": LABEL, "not_digit": {"type": "boolean"}, "strokes": STROKES,
        "id": {"type": "string", "format": "uuid", "description": "optional: makes a retried upload idempotent"}}},
    "admin_api.review_drawing": {"type": "object", "required": ["status"], "properties": {
        "status": {"type": "string", "enum": ["confirmed", "rejected"]}, "label": LABEL,
        "not_digit": {"type": "boolean"}}},
    "admin_api.create_training_run": {"type": "object", "properties": {"label_set": LABEL_SET}},
    "admin_api.activate_version": {"type": "object", "properties": {
        "label_set": LABEL_SET, "reason": {"type": "string"}}},
    "admin_api.review_drawings": {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "maxItems": 500, "items": {"type": "object", "required": ["id", "status"]}}}},
    "admin_api.create_token": {"type": "object", "required": ["name", "scopes"], "properties": {
        "name": {"type": "string"}, "user": {"type": "string"}, "expires_days": {"type": "integer"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "predict_limit": {"type": "string"}, "contribute_limit": {"type": "string"}}},
}
# A line for the routes whose view has no docstring to take it from.
SUMMARIES = {
    "api.create_prediction": "Both networks' answers for one drawing, and the id to rate them by",
    "api.create_feedback": "Rate a prediction: the digit it really was (its visitor, or staff)",
    "api.create_drawing": "Contribute a labelled drawing, or one flagged as not a digit",
    "api.flag_drawing": "Flag a drawing as not a digit (its visitor, or staff)",
    "api.list_drawings": "A page of drawings, newest first",
    "api.get_drawing": "One drawing's metadata",
    "api.drawing_image": "One drawing's image as stored, always PNG",
    "api.list_models": "Every version of each network, its status and metrics",
    "api.stats": "Counts by label, status and source; each network's accuracy from ratings",
    "api.me": "The visitor's anonymous id and contribution count",
    "admin_api.review_drawing": "Confirm or reject a drawing",
    "admin_api.create_training_run": "Start a training run, or return the one running",
    "admin_api.list_training_runs": "Training runs, newest first",
    "admin_api.get_training_run": "One training run: status, progress and decisions",
    "admin_api.activate_version": "Make a model version active (rollback or manual promotion)",
    "admin_api.list_tokens": "Every API token (never its secret)",
    "admin_api.revoke_token": "Revoke an API token",
    "openapi.openapi_document": "This document",
}
SUCCESS = {"api.create_feedback": "201", "api.create_drawing": "201", "admin_api.create_token": "201",
           "admin_api.create_training_run": "202"}
RULE_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
CONVERTERS = {"int": {"type": "integer"}, "default": {"type": "string"}, "string": {"type": "string"}}


def required_permission(view) -> str | None:
    """The permission auth.permission_required wraps the view in, if any."""
    try:
        return inspect.getclosurevars(view).nonlocals.get("permission")
    except (TypeError, ValueError):
        return None


def summary(endpoint: str, view) -> str:
    """The view docstring's first paragraph, else the line above."""
    first = (inspect.getdoc(view) or "").split("\n\n")[0]
    return " ".join(first.split()) or SUMMARIES.get(endpoint, endpoint)


def operation(endpoint: str, rule, view) -> dict:
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": CONVERTERS.get(converter or "default", {"type": "string"})}
                  for converter, name in RULE_ARGUMENT.findall(rule.rule)]
    parameters += [{"name": name, "in": "query", "required": False, "schema": schema}
                   for name, schema in QUERY.get(endpoint, [])]
    status = SUCCESS.get(endpoint, "200")
    content = ({"image/png": {"schema": {"type": "string", "format": "binary"}}} if endpoint == "api.drawing_image"
               else {kind.mimetype: {"schema": {"type": "string", "format": "binary"}} for kind in FORMATS.values()}
               if endpoint == "admin_api.export_dataset" else {"application/json": {"schema": {"type": "object"}}})
    responses = {status: {"description": "success", "content": content},
                 "4XX": {"description": "refused: see `code`", "content": {"application/json": {"schema": ERROR}}},
                 "5XX": {"description": "a service is down", "content": {"application/json": {"schema": ERROR}}}}
    result = {"summary": summary(endpoint, view), "operationId": endpoint.replace(".", "_"), "responses": responses,
              "tags": ["admin" if endpoint.startswith("admin_api.") else "public"]}
    if parameters:
        result["parameters"] = parameters
    if endpoint in BODIES:
        result["requestBody"] = {"required": "required" in BODIES[endpoint],
                                 "content": {"application/json": {"schema": BODIES[endpoint]}}}
    if permission := required_permission(view):
        result["security"] = [{"bearer": []}, {"session": []}]
        result["description"] = f"Needs the `{permission}` permission: a token with that scope, or the session " \
                                "(and CSRF token) of a user whose role has it."
    return result


def build_document(app: Flask) -> dict:
    spec = APISpec(title="Inkling API", version="1", openapi_version="3.0.3", plugins=[FlaskPlugin()],
                   info={"description": "Handwritten digits (and admins' other label sets), two networks, "
                                        "and the data they learn from. "
                                        "Errors are {\"error\": English sentence, \"code\": machine code}."})
    spec.components.schema("Error", {"type": "object", "required": ["error", "code"], "properties": {
        "error": {"type": "string"}, "code": {"type": "string"}}})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("session", {"type": "apiKey", "in": "cookie", "name": "session"})
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: (rule.rule, rule.endpoint)):
        if not rule.rule.startswith(PREFIX + "/"):
            continue
        view = app.view_functions[rule.endpoint]
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        spec.path(view=view, app=app,
                  operations={method.lower(): operation(rule.endpoint, rule, view) for method in methods})
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi_document():
    document = current_app.extensions.get("openapi")
    if document is None:
        document = current_app.extensions["openapi"] = build_document(current_app)
    return jsonify(document)

