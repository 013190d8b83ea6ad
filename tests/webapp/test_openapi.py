"""The OpenAPI document: public, valid OpenAPI 3, and exactly the /api/v1 routes the app serves."""

from __future__ import annotations

from apispec_webframeworks.flask import FlaskPlugin
from openapi_spec_validator import validate

METHODS = {"get", "post", "put", "patch", "delete"}


def served_operations(app) -> set[tuple[str, str]]:
    return {(FlaskPlugin.flaskpath2openapi(rule.rule), method.lower())
            for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def test_the_document_is_public_and_valid_openapi_3(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.get_json()
    validate(document)
    assert document["openapi"].startswith("3.")


def test_it_holds_every_api_route_and_method_and_nothing_else(app, client):
    document = client.get("/api/v1/openapi.json").get_json()
    described = {("/api/v1" + path if not path.startswith("/api/v1") else path, method)
                 for path, operations in document["paths"].items() for method in operations if method in METHODS}
    served = served_operations(app)
    assert len(served) > 20
    assert described == served
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            assert op["summary"] and "." not in op["summary"].split()[0], (path, method)


def test_admin_routes_say_they_need_credentials_and_public_ones_do_not(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert "security" in paths["/api/v1/models/{name}/versions/{version}/activate"]["post"]
    assert "`admin`" in paths["/api/v1/tokens"]["post"]["description"]
    assert "`review`" in paths["/api/v1/drawings/review"]["post"]["description"]
    assert "security" not in paths["/api/v1/predictions"]["post"]
    assert "security" not in paths["/api/v1/openapi.json"]["get"]
    version = paths["/api/v1/models/{name}/versions/{version}/activate"]["post"]["parameters"]
    assert {"name": "version", "in": "path", "required": True, "schema": {"type": "integer"}} in version


def test_the_query_parameters_come_from_the_code(client):
    from webapp.models import STATUSES

    listing = client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/drawings"]["get"]
    status = next(p for p in listing["parameters"] if p["name"] == "status")
    assert status["schema"]["enum"] == list(STATUSES)
