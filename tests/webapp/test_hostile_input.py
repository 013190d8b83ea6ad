"""Untrusted uploads on every endpoint that takes an image: 4xx with a JSON error, never a 5xx,
nothing written; bombs and oversized bodies; a seeded fuzz; the same client id sent twice."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
import uuid
from urllib.parse import quote

import pytest
from PIL import Image
from sqlalchemy import func, select

from bench import corpus
from webapp.extensions import db
from webapp.models import Drawing, Prediction, Rating
from webapp.storage import get_store
from webapp.visitors import CLIENT_COOKIE, cookie_for

from .conftest import make_app, serve
from .test_storage import monkeypatch_module, s3_config, s3_endpoint  # noqa: F401  (fixtures)

IMAGE_ENDPOINTS = ("/api/v1/predictions", "/api/v1/drawings")


@pytest.fixture(autouse=True)
def empty_store(object_root):
    # Each test starts with no drawing objects, so any object is attributable to it.
    import shutil

    shutil.rmtree(object_root / "drawings", ignore_errors=True)


@pytest.fixture(params=["local", "s3"])
def any_app(request, database_url, object_root, tmp_path, tiny_models):
    """The app on this database with the local store, then with S3 over HTTP (moto's server)."""
    if request.param == "local":
        app = make_app(database_url, object_root, tmp_path)
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        app = make_app(database_url, tmp_path / "unused", tmp_path,
                       **s3_config(endpoint, S3_PREFIX=f"hostile{time.monotonic_ns()}/"))
    yield from serve(app, tiny_models[0])


@pytest.fixture(scope="module")
def bad_images():
    return corpus.bad_images()


def written(app) -> dict[str, int]:
    with app.app_context():
        found = {table.__tablename__: db.session.scalar(select(func.count()).select_from(table))
                 for table in (Drawing, Prediction, Rating)}
        found["objects"] = sum(1 for _ in get_store().list("drawings/"))
    return found


NOTHING = {"drawings": 0, "predictions": 0, "ratings": 0, "objects": 0}


def keys_match_rows(app) -> bool:
    with app.app_context():
        keys = {row.object_key for row in db.session.scalars(select(Drawing))}
        return keys == {obj.key for obj in get_store().list("drawings/")}


def post_case(client, path: str, case: corpus.Case, label=3):
    if isinstance(case.body, dict):
        body = dict(case.body)
        if path.endswith("/drawings"):
            body.setdefault("label", label)
        return client.post(path, json=body)
    return client.post(path, data=case.body, content_type=case.content_type)


def test_the_corpus_is_big_enough(bad_images):
    assert len(bad_images) >= 30
    assert len({case.name for case in bad_images}) == len(bad_images)


def test_every_bad_image_is_a_4xx_json_error_on_every_endpoint_and_writes_nothing(any_app, bad_images):
    client = any_app.test_client()
    wrong = []
    for case in bad_images:
        for path in IMAGE_ENDPOINTS:
            response = post_case(client, path, case)
            body = response.get_json(silent=True) or {}
            if response.status_code not in case.statuses or not isinstance(body.get("error"), str):
                wrong.append((case.name, path, response.status_code, body))
    assert wrong == []
    assert written(any_app) == NOTHING


@pytest.mark.parametrize("name, data", corpus.valid_images(), ids=[name for name, _ in corpus.valid_images()])
def test_unusual_but_valid_pngs_are_accepted(app, client, name, data):
    predicted = client.post("/api/v1/predictions", json={"image": corpus.data_url(data)})
    assert predicted.status_code == 200, predicted.json
    assert predicted.json["predictions"]["cnn"]["label"] in range(10)
    saved = client.post("/api/v1/drawings", json={"image": corpus.data_url(data), "label": 1})
    assert saved.status_code == 201, saved.json
    assert keys_match_rows(app) and written(app)["drawings"] == 2


@pytest.mark.parametrize("label", corpus.BAD_LABELS, ids=repr)
def test_bad_labels_are_400_on_contributions_and_feedback(app, client, label):
    image = corpus.data_url(corpus.encode(corpus.digit_image()))
    response = client.post("/api/v1/drawings", json={"image": image, "label": label})
    assert response.status_code == 400 and response.json["code"] == "invalid_label"
    predicted = client.post("/api/v1/predictions", json={"image": image}).json
    response = client.post(f"/api/v1/predictions/{predicted['id']}/feedback", json={"label": label})
    assert response.status_code == 400 and response.json["code"] == "invalid_label"
    assert written(app) == {"drawings": 1, "predictions": 2, "ratings": 0, "objects": 1}  # the prediction only


def test_non_object_feedback_bodies_are_400(app, client):
    image = corpus.data_url(corpus.encode(corpus.digit_image()))
    drawing_id = client.post("/api/v1/predictions", json={"image": image}).json["id"]
    for body in (b"not json", b"[1]", b'"4"', b"4", b"null", b'{"label": NaN}'):
        response = client.post(f"/api/v1/predictions/{drawing_id}/feedback", data=body,
                               content_type="application/json")
        assert response.status_code == 400 and response.json["error"], body
    assert written(app)["ratings"] == 0


@pytest.mark.parametrize("drawing_id", corpus.BAD_IDS, ids=repr)
def test_client_ids_that_are_not_uuids_are_400(app, client, drawing_id):
    if isinstance(drawing_id, str) and "%s" in drawing_id:
        drawing_id = drawing_id % uuid.uuid4()
    image = corpus.data_url(corpus.encode(corpus.digit_image()))
    response = client.post("/api/v1/drawings", json={"image": image, "label": 1, "id": drawing_id})
    assert response.status_code == 400 and response.json["code"] == "invalid_id"
    assert written(app) == NOTHING


def test_a_png_with_a_script_trailer_is_stored_re_encoded_and_served_as_png(any_app):
    client = any_app.test_client()
    upload = corpus.script_trailer_png()
    saved = client.post("/api/v1/drawings", json={"image": corpus.data_url(upload), "label": 1})
    assert saved.status_code == 201
    served = client.get(f"/api/v1/drawings/{saved.json['id']}/image")
    assert served.status_code == 200
    assert served.mimetype == "image/png" and served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Disposition"].endswith('.png"')
    assert b"<script" not in served.data and b"<html" not in served.data
    stored = Image.open(io.BytesIO(served.data))
    assert stored.format == "PNG"
    assert stored.convert("RGB").tobytes() == Image.open(io.BytesIO(upload)).convert("RGB").tobytes()
    with any_app.app_context():
        assert get_store().get(db.session.get(Drawing, saved.json["id"]).object_key) == served.data
    assert keys_match_rows(any_app)


@pytest.mark.parametrize("fmt, mime", [("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_a_photo_is_served_back_as_its_pixels_without_metadata_or_trailer(any_app, fmt, mime):
    client = any_app.test_client()
    upload = corpus.with_metadata(fmt)
    saved = client.post("/api/v1/drawings", json={"image": corpus.data_url(upload, mime), "label": 1})
    assert saved.status_code == 201, saved.json
    served = client.get(f"/api/v1/drawings/{saved.json['id']}/image")
    assert served.status_code == 200
    # What is served is what it says it is.
    assert served.mimetype == "image/png" and served.data.startswith(b"\x89PNG")
    assert served.headers["Content-Disposition"].endswith('.png"')
    for name, secret in corpus.SECRETS.items():
        if name != "gps":  # one byte, "N": looked for through the EXIF block instead
            assert secret not in served.data, name
    assert b"Exif" not in served.data
    stored = Image.open(io.BytesIO(served.data))
    assert not {"exif", "icc_profile", "xmp", "comment"} & set(stored.info)
    assert stored.convert("RGB").tobytes() == Image.open(io.BytesIO(upload)).convert("RGB").tobytes()
    metadata = client.get(f"/api/v1/drawings/{saved.json['id']}").json
    assert metadata["content_type"] == "image/png" and metadata["size_bytes"] == len(served.data)
    with any_app.app_context():
        assert get_store().get(db.session.get(Drawing, saved.json["id"]).object_key) == served.data
    assert keys_match_rows(any_app)


def test_a_canvas_png_is_still_stored_byte_for_byte(app, client):
    upload = corpus.encode(corpus.digit_image())
    saved = client.post("/api/v1/drawings", json={"image": corpus.data_url(upload), "label": 1})
    assert client.get(f"/api/v1/drawings/{saved.json['id']}/image").data == upload


def test_a_decompression_bomb_is_refused_from_its_header(app, client):
    bomb = corpus.bomb_png()
    assert len(bomb) < 512 * 1024
    for path in IMAGE_ENDPOINTS:
        started = time.perf_counter()
        response = client.post(path, json={"image": corpus.data_url(bomb), "label": 1})
        assert response.status_code == 413 and response.json["code"] == "image_too_large"
        # Decoding 10000x10000 RGB would take seconds and 300 MB; bench/hostile.py measures the figures.
        assert time.perf_counter() - started < 1.0
    assert written(app) == NOTHING


def test_a_60_mb_body_with_content_length_is_413(app, client):
    body = b'{"image": "' + b"A" * (60 * 1024 * 1024) + b'"}'
    for path in IMAGE_ENDPOINTS:
        response = client.post(path, data=body, content_type="application/json")
        assert response.status_code == 413 and response.json["code"] == "too_large"
    assert written(app) == NOTHING


@pytest.fixture
def served(app):
    """The app behind a real threaded HTTP server on loopback."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(timeout=10)


def post_chunked(port: int, path: str, total: int, *, multipart: bool = False, chunk: int = 64 * 1024) -> int:
    """POST ``total`` bytes with chunked transfer encoding (no Content-Length); the response status."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    content_type = "multipart/form-data; boundary=x" if multipart else "application/json"
    opening = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n' if multipart
               else b'{"image": "')
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())

    def send_body():
        piece = b"%x\r\n%s\r\n" % (chunk, b"A" * chunk)
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(opening), opening))
            for _ in range(total // chunk):
                sock.sendall(piece)
            sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server answered and closed without reading the rest
            pass

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    try:
        head = b""
        while b"\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                break
            head += data
        return int(head.split(b" ", 2)[1])
    finally:
        sock.close()
        sender.join(timeout=30)


def test_a_60_mb_chunked_body_without_content_length_is_413(app, served):
    for path in IMAGE_ENDPOINTS:
        assert post_chunked(served, path, 60 * 1024 * 1024) == 413
        assert post_chunked(served, path, 60 * 1024 * 1024, multipart=True) == 413
    # Under the limit, a chunked body is read whole and answered on its merits.
    assert post_chunked(served, "/api/v1/predictions", 64 * 1024) == 400
    assert written(app) == NOTHING


def test_fuzzed_pngs_never_get_a_5xx(app, client):
    statuses: dict[int, int] = {}
    for index, payload in enumerate(corpus.fuzz_payloads(300, seed=7)):
        path = IMAGE_ENDPOINTS[index % 2]
        response = client.post(path, json={"image": corpus.data_url(payload), "label": index % 10})
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (index, response.json)
        if response.status_code >= 400:
            assert response.json["error"], index
    assert set(statuses) <= {200, 201, 400, 413, 415, 422}
    assert statuses.get(415, 0) > 100 and statuses.get(200, 0) + statuses.get(201, 0) > 20
    assert keys_match_rows(app)


# Duplicate submissions: the same client-supplied id ------------------------------------------


def contribute(client, drawing_id: str, image: bytes, label: int = 1):
    return client.post("/api/v1/drawings", json={"image": corpus.data_url(image), "label": label, "id": drawing_id})


def test_the_same_id_sent_twice_saves_once_and_answers_the_same(any_app):
    client = any_app.test_client()
    drawing_id = str(uuid.uuid4())
    image = corpus.encode(corpus.digit_image())
    first = contribute(client, drawing_id, image)
    second = contribute(client, drawing_id.upper(), image)
    assert first.status_code == second.status_code == 201
    assert first.json == second.json and first.json["id"] == drawing_id
    counts = written(any_app)
    assert counts["drawings"] == counts["objects"] == 1 and keys_match_rows(any_app)
    # The same id with another drawing or label is a conflict, and writes nothing.
    other = corpus.encode(corpus.digit_image((120, 120)))
    assert contribute(client, drawing_id, other).status_code == 409
    assert contribute(client, drawing_id, image, label=2).status_code == 409
    assert written(any_app) == counts and keys_match_rows(any_app)
    # A prediction's id cannot be taken over by a contribution.
    predicted = client.post("/api/v1/predictions", json={"image": corpus.data_url(image)}).json["id"]
    assert contribute(client, predicted, image).status_code == 409
    assert written(any_app)["drawings"] == 2 and keys_match_rows(any_app)


def test_the_same_id_sent_concurrently_saves_once_and_answers_the_same(app, served):
    import http.client

    drawing_id = str(uuid.uuid4())
    body = json.dumps({"image": corpus.data_url(corpus.encode(corpus.digit_image())), "label": 4,
                       "id": drawing_id}).encode()
    start = threading.Barrier(8)
    answers = []
    cookie = cookie_for("c" * 24, app)  # one visitor sending it eight times

    def send():
        connection = http.client.HTTPConnection("127.0.0.1", served, timeout=30)
        start.wait()
        connection.request("POST", "/api/v1/drawings", body=body,
                           headers={"Content-Type": "application/json", "Cookie": f"{CLIENT_COOKIE}={cookie}"})
        response = connection.getresponse()
        answers.append((response.status, json.loads(response.read())))
        connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == 8
    assert {status for status, _ in answers} == {201}, answers
    assert all(body == answers[0][1] for _, body in answers) and answers[0][1]["id"] == drawing_id
    assert written(app)["drawings"] == written(app)["objects"] == 1 and keys_match_rows(app)


# Hostile requests beyond images: deep JSON, strict integers, redirect targets ----------------

# POST endpoints that read no JSON body: a deep one is not theirs to refuse. (A dataset import's
# body is the file itself, read as bytes; test_dataset_import refuses what is not a dataset.)
BODILESS = {"api.flag_drawing", "admin_api.import_dataset"}


def post_rules(app):
    return [rule for rule in app.url_map.iter_rules() if "POST" in rule.methods]


def fill(rule, value: str = "1") -> str:
    """The rule's path with every variable set to ``value`` (a version, a name or an id)."""
    return re.sub(r"<[^>]+>", value, rule.rule)


def csrf_header(client) -> dict:
    from .test_admin import csrf_from

    return {"X-CSRFToken": csrf_from(client.get("/admin/").get_data(as_text=True))}  # signed in


def test_every_endpoint_is_enumerated(app):
    endpoints = {rule.endpoint for rule in post_rules(app)}
    assert {"api.create_prediction", "api.create_drawing", "api.create_feedback", "admin_api.review_drawings",
            "admin_api.activate_version", "admin.login", "admin.logout"} <= endpoints
    assert BODILESS <= endpoints


def test_deeply_nested_json_is_400_on_every_json_endpoint(app, client, admin_token):
    from .test_admin import csrf_from, log_in

    # The forms read JSON bodies too: sign-in as a stranger, the rest as a signed-in admin.
    stranger = app.test_client()
    stranger_headers = {"X-CSRFToken": csrf_from(stranger.get("/admin/login").get_data(as_text=True))}
    assert log_in(client, password="long enough").status_code == 302
    headers = admin_token | csrf_header(client)
    wrong, checked = [], 0
    for rule in post_rules(app):
        if rule.endpoint in BODILESS:
            continue
        sender, sent_headers = (stranger, stranger_headers) if rule.endpoint == "admin.login" else (client, headers)
        for name, body in corpus.deep_json_bodies():
            response = sender.post(fill(rule), data=body, content_type="application/json", headers=sent_headers)
            checked += 1
            if response.status_code != 400:
                wrong.append((rule.rule, name, response.status_code))
            elif rule.rule.startswith("/api/"):
                if response.json.get("code") != "json_too_deep" or "nested" not in response.json["error"]:
                    wrong.append((rule.rule, name, response.json))
    assert wrong == [] and checked >= 40
    assert written(app) == NOTHING


def test_json_a_little_deep_is_still_read(app, client):
    from webapp.parsing import MAX_JSON_DEPTH

    image = corpus.data_url(corpus.encode(corpus.digit_image()))
    # Brackets inside strings, escaped quotes too, are text, not nesting.
    nested = {"image": image, "label": 1, "extra": [[[[{"a": ["]", "[" * 40 + '\\"' + "{" * 40]}]]]]}
    assert client.post("/api/v1/drawings", json=nested).status_code == 201
    too_deep = {"image": image, "label": 1, "extra": [[]]}
    for _ in range(MAX_JSON_DEPTH):
        too_deep["extra"] = [too_deep["extra"]]
    response = client.post("/api/v1/drawings", json=too_deep)
    assert response.status_code == 400 and response.json["code"] == "json_too_deep"
    assert written(app)["drawings"] == 1


def test_the_depth_scan_follows_json_strings():
    from webapp.parsing import nested_deeper_than

    assert not nested_deeper_than('["' + "[" * 100 + '"]', 3)
    assert not nested_deeper_than(r'["\"' + "[" * 100 + '"]', 3)
    assert nested_deeper_than(r'["\\"' + "[" * 100 + "]" * 100, 3)  # the string ended at the quote
    assert nested_deeper_than("[" * 4, 3) and not nested_deeper_than("[" * 3 + "]" * 3, 3)
    assert nested_deeper_than('{"a": {"b": {"c": {"d": 1}}}}', 3)
    assert not nested_deeper_than("[" + "[]," * 1000 + "[]]", 3)
    # An unterminated string full of escaped quotes is one string, read once.
    assert not nested_deeper_than('["' + '\\"' * 200_000, 3)
    assert nested_deeper_than("[" * 2000 + '"' + "]" * 10, 3)


def test_activation_refuses_a_body_that_is_not_an_object(app, client, admin_token):
    for body in (b"[1]", b'"x"', b"{", b"[" * 5000):
        response = client.post("/api/v1/models/cnn/versions/1/activate", data=body, content_type="application/json",
                               headers=admin_token)
        assert response.status_code == 400 and response.json["error"], body
    response = client.post("/api/v1/models/cnn/versions/1/activate", headers=admin_token)
    assert response.status_code == 200 and response.json["status"] == "active"


@pytest.mark.parametrize("value", corpus.BAD_INTEGERS, ids=repr)
def test_integer_parameters_take_ascii_digits_only(app, client, admin_token, value):
    from .test_admin import log_in

    for name in ("page", "label"):
        response = client.get("/api/v1/drawings", query_string={name: value})
        assert response.status_code == 400 and response.json["code"] == f"invalid_{name}", (name, response.json)
    assert log_in(client, password="long enough").status_code == 302
    for path in ("/admin/review", "/admin/dataset"):
        for name in ("page", "label"):
            response = client.get(path, query_string={name: value})
            assert response.status_code == 400 and b"<html" in response.data, (path, name)
    # In a path, such a number matches no route.
    response = client.post(f"/api/v1/models/cnn/versions/{quote(value)}/activate", headers=admin_token)
    assert response.status_code in (404, 405) and response.json["error"]


def test_integer_parameters_in_range_still_work(app, client, admin_token):
    from .test_admin import log_in

    assert client.get("/api/v1/drawings?page=1&label=0").status_code == 200
    assert client.get("/api/v1/drawings?page=01").json["page"] == 1
    assert client.get("/api/v1/drawings?page=0").status_code == 400
    assert client.get("/api/v1/drawings?label=10").status_code == 400
    assert log_in(client, password="long enough").status_code == 302
    assert client.get("/admin/review?page=999999999&label=7").status_code == 200


@pytest.mark.parametrize("value", corpus.BAD_DATES, ids=repr)
def test_date_filters_take_plain_iso_dates_only(app, client, admin_token, value):
    from .test_admin import log_in

    assert log_in(client, password="long enough").status_code == 302
    for name in ("since", "until"):
        response = client.get("/admin/review", query_string={name: value})
        assert response.status_code == 400 and b"<html" in response.data, name
    assert client.get("/admin/review?since=2026-01-01&until=2026-12-31").status_code == 200


def test_every_get_endpoint_survives_hostile_integers_and_dates(app, client, admin_token):
    """Every GET route, path variables filled, with each bad value in every integer or date parameter."""
    from .test_admin import log_in

    assert log_in(client, password="long enough").status_code == 302
    rules = [rule for rule in app.url_map.iter_rules() if "GET" in rule.methods and rule.endpoint != "static"
             and not rule.endpoint.endswith(".static") and rule.endpoint != "admin_api.export_dataset"]
    failures = []
    for rule in rules:
        for value in corpus.BAD_INTEGERS + corpus.BAD_DATES:
            query = {name: value for name in ("page", "label", "since", "until", "version")}
            response = client.get(fill(rule), query_string=query, headers=admin_token)
            if response.status_code >= 500:
                failures.append((rule.rule, value, response.status_code))
    assert failures == [] and len(rules) >= 15
    assert written(app) == NOTHING


def is_local(location: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(location)
    return (location.startswith("/") and not location.startswith("//") and not parts.netloc
            and all(" " < char < "\x7f" for char in location) and "\\" not in location)


def test_redirect_targets_with_control_characters_stay_on_the_site(app, client, admin_token):
    from .test_admin import log_in

    wrong = []  # a 500 here (a newline in the Location header) is a ValueError from Werkzeug: it fails too
    for target in corpus.BAD_REDIRECTS:
        response = client.get("/language/ja", query_string={"next": target})
        if response.status_code != 302 or not is_local(response.headers["Location"]):
            wrong.append(("language", target, response.status_code, response.headers.get("Location")))
    assert log_in(client, password="long enough").status_code == 302
    for target in corpus.BAD_REDIRECTS:
        response = client.get("/admin/login", query_string={"next": target})
        if response.status_code != 302 or not is_local(response.headers["Location"]):
            wrong.append(("login", target, response.status_code, response.headers.get("Location")))
    assert wrong == []

