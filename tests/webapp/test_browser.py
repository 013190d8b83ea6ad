"""The pages in a real browser: draw with a mouse or a finger, read both networks' answers, rate them, contribute."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select
from werkzeug.serving import make_server

from webapp.extensions import db
from webapp.models import Drawing, LabelSet, Rating
from webapp.strokes import load_strokes

ROOT = Path(__file__).resolve().parents[2]
# Debian's package: Playwright's own browser download is not available on every machine that runs this.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WAIT_MS = 15_000  # a prediction runs both networks on a shared, possibly busy CPU
# expect() waits 5 s by default, which a review card once overran on a busy 2-core machine.
expect.set_options(timeout=WAIT_MS)
MODELS = ("fnn", "cnn")

# A "7" in two strokes, as fractions of the canvas: the bar, then the stem down to the foot.
SEVEN = [[(0.22, 0.22), (0.78, 0.22)], [(0.78, 0.22), (0.60, 0.55), (0.42, 0.86)]]
# The same "7" drawn from the foot up, so a finger that scrolled the page would scroll it down, away from 0.
SEVEN_UPWARDS = [[(0.42, 0.86), (0.60, 0.55), (0.78, 0.22)], [(0.22, 0.22), (0.78, 0.22)]]


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("INKLING_SCREENSHOTS") or ROOT / "instance" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        message = f"the browser tests need Chromium at {CHROMIUM} (Debian package `chromium`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def live_server(app):
    """The test app served over real HTTP on a free port, for as long as the test runs."""
    if "postgresql" in app.config["SQLALCHEMY_DATABASE_URI"]:
        pytest.skip("one browser pass is enough: the pages are tested on SQLite, the API tests cover PostgreSQL")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def desktop(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  has_touch=True, is_mobile=True)
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


def watch_for_errors(page) -> list[str]:
    """Every console error, uncaught exception and HTTP error the page meets, as readable lines.

    Each is also printed, so a test that fails earlier for another reason still shows them.
    """
    errors: list[str] = []

    def record(line):
        print(line)
        errors.append(line)

    def on_console(message):
        if message.type == "error":
            record(f"console error: {message.text} at {message.location}")

    def on_response(response):
        if response.status >= 400:
            record(f"HTTP {response.status} for {response.request.method} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: record(f"uncaught {error.name}: {error.message}\n{error.stack}"))
    page.on("response", on_response)
    return errors


def canvas_point(page, point: tuple[float, float]) -> tuple[float, float]:
    box = page.locator("#pad-canvas").bounding_box()
    return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]


def draw_with_mouse(page, strokes, *, steps: int = 12) -> None:
    page.locator("#pad-canvas").scroll_into_view_if_needed()
    for stroke in strokes:
        page.mouse.move(*canvas_point(page, stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*canvas_point(page, point), steps=steps)
        page.mouse.up()


def swipe(cdp, points, *, steps: int = 12) -> None:
    """One finger along `points` (viewport pixels), through the browser's real touch input pipeline.

    Playwright's touchscreen only taps; DevTools' Input.dispatchTouchEvent moves a finger, and the browser
    then decides, as on a phone, whether that finger draws (pointer events) or scrolls the page.
    """
    def touch(kind, x=None, y=None):
        cdp.send("Input.dispatchTouchEvent",
                 {"type": kind, "touchPoints": [] if x is None else [{"x": x, "y": y}]})

    touch("touchStart", *points[0])
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        for step in range(1, steps + 1):
            touch("touchMove", x0 + (x1 - x0) * step / steps, y0 + (y1 - y0) * step / steps)
    touch("touchEnd")


def shown_labels(page) -> dict[str, int]:
    """Both cards' answers, after checking each card shows a whole, consistent prediction."""
    labels = {}
    for model in MODELS:
        label = page.locator(f"#{model}-label")
        expect(label).to_have_text(re.compile(r"^[0-9]$"))
        labels[model] = int(label.inner_text())
        bars = page.locator(f"#{model}-bars li.prob-row")
        expect(bars).to_have_count(10)
        expect(bars.locator(".prob-value")).to_have_text([re.compile(r"\d+(\.\d)?\s?%")] * 10)
        expect(page.locator(f"#{model}-bars li.is-top")).to_have_attribute("data-digit", str(labels[model]))
        expect(page.locator(f"#{model}-version")).to_have_text("v1")
    expect(page.locator("#preview-image")).to_be_visible()
    expect(page.locator("#preview-image")).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
    return labels


def test_a_mouse_drawing_is_read_by_both_networks_and_rated(app, live_server, desktop):
    page = desktop.new_page()
    errors = watch_for_errors(page)
    page.goto(live_server + "/")
    results = page.locator("#results")
    expect(results).to_have_attribute("data-state", "idle")
    for model in MODELS:
        expect(page.locator(f"#{model}-label")).to_have_text("?")
    expect(page.locator("#rating")).to_be_hidden()

    draw_with_mouse(page, SEVEN)
    expect(page.locator("#pad-undo")).to_be_enabled()
    # "Predict while I draw" is on by default, so the answers arrive without pressing Predict.
    expect(results).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    labels = shown_labels(page)

    rating = page.locator("#rating")
    expect(rating).to_be_visible()
    agreed = labels["fnn"] == labels["cnn"]
    expect(page.locator("#rate-right")).to_be_visible(visible=agreed)
    expect(page.locator("#rate-cnn")).to_be_visible(visible=not agreed)
    for digit in range(10):
        # The models' own answers have their own buttons, so the digit picker leaves them out.
        expect(page.locator(f"#rate-digit-{digit}")).to_be_enabled(enabled=digit not in labels.values())
    truth = labels["cnn"]
    chosen = page.locator("#rate-right" if agreed else "#rate-cnn")
    chosen.click()
    expect(rating).to_have_attribute("data-rated", "true", timeout=WAIT_MS)
    thanks = page.locator('#predict-alerts .alert[data-kind="success"]')
    expect(thanks).to_contain_text(f"Recorded as a {truth}.")
    expect(chosen).to_be_disabled()  # a prediction is rated once
    page.screenshot(path=screenshot_dir() / "predict.png", full_page=True, animations="disabled")

    with app.app_context():
        feedback = db.session.scalars(select(Drawing).where(Drawing.source == "feedback")).all()
        assert len(feedback) == 1
        assert feedback[0].label == truth
        assert {p.model_name: p.label for p in feedback[0].predictions} == labels
        assert len(load_strokes(feedback[0])) == 2  # the prediction's strokes, kept by its rating
        ratings = db.session.scalars(select(Rating)).all()
        assert [(r.drawing_id, r.label) for r in ratings] == [(feedback[0].id, truth)]
    assert not errors, "\n".join(errors)


def test_a_drawing_labelled_from_the_keyboard_is_contributed(app, live_server, desktop):
    page = desktop.new_page()
    errors = watch_for_errors(page)
    page.goto(live_server + "/contribute")
    count = page.locator("#contribution-count")
    expect(count).to_have_attribute("data-count", "0", timeout=WAIT_MS)
    save = page.locator("#save-button")
    expect(save).to_be_disabled()

    draw_with_mouse(page, SEVEN)
    expect(save).to_be_disabled()  # drawn, but not yet labelled
    # Drawing took focus off any control, so the number key reaches the page's shortcut.
    assert page.evaluate("document.activeElement === document.body")
    page.keyboard.press("7")
    expect(page.locator("#label-7")).to_be_checked()
    expect(save).to_be_enabled()
    save.click()

    expect(page.locator('#contribute-alerts .alert[data-kind="success"]')).to_contain_text("Saved your 7",
                                                                                            timeout=WAIT_MS)
    expect(count).to_have_attribute("data-count", "1")
    expect(count).to_contain_text("You have contributed 1 drawing.")
    # Ready for the next one: the pad and the label are cleared.
    expect(page.locator("#pad-clear")).to_be_disabled()
    expect(page.locator('input[name="label"]:checked')).to_have_count(0)
    expect(save).to_be_disabled()
    page.screenshot(path=screenshot_dir() / "contribute.png", full_page=True, animations="disabled")

    with app.app_context():
        contributions = db.session.scalars(select(Drawing).where(Drawing.source == "contribution")).all()
        assert [(d.label, d.status) for d in contributions] == [(7, "pending")]
        assert db.session.scalars(select(Drawing).where(Drawing.source != "contribution")).all() == []
    assert not errors, "\n".join(errors)


def test_a_finger_draws_without_scrolling_the_page_on_a_phone(app, live_server, phone):
    page = phone.new_page()
    errors = watch_for_errors(page)
    prediction_requests = []

    def on_request(request):
        if request.method == "POST" and request.url.endswith("/api/v1/predictions"):
            prediction_requests.append(request)

    page.on("request", on_request)
    page.goto(live_server + "/")
    live = page.locator("#live-predict")
    page.locator('label[for="live-predict"]').tap()
    expect(live).not_to_be_checked()
    page.evaluate("""() => {
        window.inkTest = { scrolls: 0, pointers: [] };
        addEventListener('scroll', () => { window.inkTest.scrolls += 1; }, { passive: true });
        const canvas = document.getElementById('pad-canvas');
        canvas.addEventListener('pointerdown', (e) => window.inkTest.pointers.push(e.pointerType));
    }""")
    page.locator("#pad-canvas").scroll_into_view_if_needed()
    scroll_before = page.evaluate("window.scrollY")

    cdp = phone.new_cdp_session(page)
    for stroke in SEVEN_UPWARDS:
        swipe(cdp, [canvas_point(page, point) for point in stroke])
    expect(page.locator("#pad-undo")).to_be_enabled()
    assert page.evaluate("window.inkTest.pointers") == ["touch", "touch"]
    # With live prediction off, nothing is sent until Predict; 1 s is well past the 300 ms live delay.
    page.wait_for_timeout(1_000)
    assert prediction_requests == []
    expect(page.locator("#results")).to_have_attribute("data-state", "idle")

    page.locator("#predict-button").tap()
    expect(page.locator("#results")).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    shown_labels(page)
    assert len(prediction_requests) == 1
    sent = prediction_requests[0].post_data_json["strokes"]  # a finger's strokes go with the image too
    assert len(sent) == 2 and sent[0]["t"][0] == 0 and len(sent[0]["x"]) > 2
    assert page.evaluate("window.scrollY") == scroll_before
    assert page.evaluate("window.inkTest.scrolls") == 0
    page.screenshot(path=screenshot_dir() / "predict-phone.png", full_page=True, animations="disabled")

    # The same upward swipe started on the text under the pad does scroll the page, so the checks above
    # could have seen a scroll.
    help_text = page.locator("#pad-help").bounding_box()
    start = (help_text["x"] + 20, help_text["y"] + help_text["height"] / 2)
    swipe(cdp, [start, (start[0], start[1] - 200)])
    page.wait_for_function(f"window.scrollY > {scroll_before}", timeout=WAIT_MS)
    assert not errors, "\n".join(errors)


def test_an_admin_reviews_with_the_keyboard_and_watches_a_retrain_to_its_end(app, live_server, desktop, monkeypatch):
    from training.devset import generate
    from workers.fine_tuning import execute_run

    # The run's body is the real one, in a thread of this process instead of a Celery worker
    # (test_celery covers the worker); the page cannot tell the difference.
    def send_task(name, args=None, **kwargs):
        def body():
            with app.app_context():
                execute_run(args[0])
        threading.Thread(target=body, daemon=True).start()

        class Result:
            id = "in-process"
        return Result()

    monkeypatch.setattr(app.extensions["celery"], "send_task", send_task)
    app.config.update(FINETUNE_EPOCHS=1, FINETUNE_MNIST_MINIMUM=500, RETRAIN_EVERY=0)
    client = app.test_client()
    from training.mnist import load_mnist

    mnist = load_mnist()
    drawings = generate(mnist.x_test[:200], mnist.y_test[:200], per_variant=2, seed=5)[:24]
    for drawing in drawings:
        assert client.post("/api/v1/drawings", json={"image": drawing.data_url, "label": drawing.label}).status_code == 201
    app.test_cli_runner().invoke(args=["users", "create-admin", "root", "--password", "long enough"])

    page = desktop.new_page()
    errors = watch_for_errors(page)
    page.goto(f"{live_server}/admin/review")
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    page.fill("#username", "root")
    page.fill("#password", "long enough")
    page.click("#login-button")
    expect(page).to_have_url(re.compile(r"/admin/review$"))
    cards = page.locator(".review-card")
    expect(cards).to_have_count(len(drawings))

    # The page's script marks the first card current once its keys are wired; a key pressed
    # before that (a busy machine) would go nowhere.
    expect(cards.nth(0)).to_have_class(re.compile("is-current"))
    # c confirms the focused drawing and moves on; a digit relabels and confirms; r rejects.
    page.keyboard.press("c")
    expect(cards.nth(0)).to_have_class(re.compile("is-done"))
    expect(cards.nth(1)).to_have_class(re.compile("is-current"))
    relabel = (drawings[1].label + 1) % 10
    page.keyboard.press(str(relabel))
    expect(cards.nth(1)).to_have_attribute("data-status", "confirmed")
    page.keyboard.press("r")
    expect(cards.nth(2)).to_have_attribute("data-status", "rejected")
    # The rest in one go: select all that are left, confirm them.
    page.keyboard.press("a")
    page.keyboard.press("Shift+C")
    expect(page.locator(".review-card.is-done")).to_have_count(len(drawings))
    with app.app_context():
        rows = {row.id: row for row in db.session.scalars(select(Drawing))}
        statuses = [rows[card.get_attribute("data-id")].status for card in cards.all()]
        assert statuses.count("rejected") == 1 and statuses.count("confirmed") == len(drawings) - 1
        assert rows[cards.nth(1).get_attribute("data-id")].label == relabel

    page.click("[data-nav=dashboard]")
    expect(page.locator("#count-confirmed")).to_have_text(str(len(drawings) - 1))
    page.click("#retrain-button")
    expect(page.locator("#retrain-button")).to_be_disabled()
    expect(page.locator("#run-panel")).to_be_visible()
    # Progress is shown while it runs; the panel records how the run ended.
    expect(page.locator("#run-panel")).to_have_attribute("data-finished", re.compile("succeeded|rejected"),
                                                         timeout=240_000)
    expect(page.locator("#run-bar")).to_have_text("100%")
    expect(page.locator("#run-result [data-model=cnn]")).to_contain_text(re.compile("promoted|rejected"))
    expect(page.locator("#retrain-button")).to_be_enabled()
    page.screenshot(path=str(screenshot_dir() / "admin-dashboard.png"), full_page=True)
    assert not errors, errors


def test_every_page_works_under_the_content_security_policy(app, live_server, desktop):
    """The CSP forbids inline scripts and styles; no page may need them (nothing is refused)."""
    page = desktop.new_page()
    errors = watch_for_errors(page)
    page.add_init_script("window.__violations = [];"
                         "document.addEventListener('securitypolicyviolation',"
                         " (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));")
    for path in ("/", "/contribute", "/models", "/about", "/my-drawings", "/admin/login"):
        response = page.goto(f"{live_server}{path}")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")
        if path in ("/", "/contribute"):
            draw_with_mouse(page, SEVEN)
            page.wait_for_load_state("networkidle")
        page.click("#language-menu")
        assert page.evaluate("window.__violations") == [], path
    assert not errors, errors


def test_a_reviewer_reviews_but_cannot_reach_activation(app, live_server, desktop, canvas_drawings):
    from webapp.models import AuditEvent

    sample = canvas_drawings[0]
    body = {"image": sample.data_url, "label": sample.label}
    assert app.test_client().post("/api/v1/drawings", json=body).status_code == 201
    result = app.test_cli_runner().invoke(args=["users", "create", "rita", "--role", "reviewer",
                                                "--password", "long enough"])
    assert result.exit_code == 0, result.output

    page = desktop.new_page()
    errors = watch_for_errors(page)
    page.goto(f"{live_server}/admin/login")
    page.fill("#username", "rita")
    page.fill("#password", "long enough")
    page.click("#login-button")
    expect(page).to_have_url(re.compile(r"/admin/review$"))
    cards = page.locator(".review-card")
    expect(cards).to_have_count(1)
    expect(cards.nth(0)).to_have_class(re.compile("is-current"))  # the queue's keys are listening
    page.keyboard.press("c")
    expect(cards.nth(0)).to_have_attribute("data-status", "confirmed")
    # Nothing on the page leads to the dashboard, its activate buttons, runs, accounts or tokens.
    for hidden in ("dashboard", "accounts", "tokens", "audit"):
        expect(page.locator(f"[data-nav={hidden}]")).to_have_count(0)
    expect(page.locator("[data-nav=dataset]")).to_have_count(1)
    expect(page.locator("a[href*='activate'], button[data-activate], #retrain-button")).to_have_count(0)
    assert not errors, errors

    # The addresses answer 403 all the same: the dashboard's page, and the activation API
    # called with the reviewer's own session and CSRF token.
    denied = page.goto(f"{live_server}/admin/")
    assert denied.status == 403
    expect(page.locator("h1")).to_have_text("Not allowed")
    page.goto(f"{live_server}/admin/review")
    status = page.evaluate("""async () => {
        const token = document.querySelector('meta[name=csrf-token]').content;
        const response = await fetch('/api/v1/models/fnn/versions/1/activate', {method: 'POST',
            headers: {'X-CSRFToken': token, 'Content-Type': 'application/json'}, body: '{}'});
        return [response.status, (await response.json()).code];
    }""")
    assert status == [403, "forbidden"]
    with app.app_context():
        actions = [event.action for event in db.session.scalars(select(AuditEvent))]
        assert "drawing.confirm" in actions and not any(action.startswith("model.") for action in actions)


def test_a_too_large_drawing_is_refused_in_the_pages_language(app, live_server, browser):
    """The API says 413 in English; a Japanese page shows its own sentence for the code instead."""
    from babel.messages.pofile import read_po

    from webapp.error_messages import MESSAGES
    from webapp.i18n import SOURCE

    with (SOURCE / "ja" / "LC_MESSAGES" / "messages.po").open("rb") as source:
        japanese = read_po(source, locale="ja")
    expected = japanese[MESSAGES["too_large"]._args[0]].string
    dismiss = japanese["Dismiss"].string
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ja-JP",
                                  extra_http_headers={"Accept-Language": "ja"})
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        refused = []
        page.on("response", lambda response: refused.append(response.status) if response.status >= 400 else None)
        page.goto(live_server + "/contribute")
        expect(page.locator("html")).to_have_attribute("lang", "ja")
        draw_with_mouse(page, SEVEN)
        page.keyboard.press("7")
        expect(page.locator("#save-button")).to_be_enabled()
        # The page's own path to the API: the pad's canvas, grown and filled with noise that no PNG
        # compresses, so the upload passes MAX_CONTENT_LENGTH; saved at once, before anything redraws it.
        page.evaluate("""() => {
          const canvas = document.getElementById('pad-canvas');
          canvas.width = canvas.height = 1400;
          const context = canvas.getContext('2d');
          const noise = context.createImageData(canvas.width, canvas.height);
          // getRandomValues fills at most 64 KiB a call.
          for (let i = 0; i < noise.data.length; i += 65536) {
            crypto.getRandomValues(noise.data.subarray(i, Math.min(i + 65536, noise.data.length)));
          }
          for (let i = 3; i < noise.data.length; i += 4) noise.data[i] = 255;
          context.putImageData(noise, 0, 0);
          document.getElementById('save-button').click();
        }""")
        alert = page.locator('#contribute-alerts .alert[data-kind="danger"]')
        expect(alert).to_have_text(expected)
        expect(alert.locator(".btn-close")).to_have_attribute("aria-label", dismiss)
        assert refused == [413]
        page.screenshot(path=screenshot_dir() / "too-large-ja.png", full_page=True, animations="disabled")
    finally:
        context.close()
    with app.app_context():
        assert db.session.scalars(select(Drawing)).all() == []


def test_a_visitor_contributes_then_deletes_a_drawing_on_my_drawings(app, live_server, desktop):
    page = desktop.new_page()
    errors = watch_for_errors(page)
    page.goto(live_server + "/contribute")
    expect(page.locator("#privacy-notice")).to_contain_text("deleted after 1 week")
    count = page.locator("#contribution-count")
    for number in (1, 2):
        draw_with_mouse(page, SEVEN)
        page.keyboard.press("7")
        page.locator("#save-button").click()
        expect(count).to_have_attribute("data-count", str(number))

    page.click('[data-nav="mine"]')
    expect(page).to_have_url(live_server + "/my-drawings")
    items = page.locator("#my-drawings figure")
    expect(items).to_have_count(2)
    # The thumbnails come from the image endpoint, which serves a visitor their own drawings.
    expect(items.first.locator("img")).to_have_js_property("complete", True)
    assert items.first.locator("img").evaluate("img => img.naturalWidth") > 0
    expect(items.first).to_contain_text("waiting for review")
    doomed = items.first.get_attribute("data-id")
    items.first.locator("button[data-delete]").click()

    expect(page.locator(".alert-success")).to_contain_text("The drawing was deleted.")
    expect(items).to_have_count(1)
    assert items.first.get_attribute("data-id") != doomed
    with app.app_context():
        assert db.session.get(Drawing, doomed) is None
        assert len(db.session.scalars(select(Drawing)).all()) == 1
    # Another browser (no cookie of this visitor) sees none of it.
    stranger = desktop.browser.new_context()
    try:
        response = stranger.request.get(f"{live_server}/api/v1/drawings/{items.first.get_attribute('data-id')}/image")
        assert response.status == 404
    finally:
        stranger.close()
    assert not errors, "\n".join(errors)


def test_the_canvas_keeps_its_strokes_through_undo_and_an_admin_replays_them(app, live_server, desktop):
    page = desktop.new_page()
    errors = watch_for_errors(page)
    page.goto(live_server + "/contribute")
    draw_with_mouse(page, SEVEN)
    draw_with_mouse(page, [[(0.1, 0.9), (0.9, 0.9)]])  # a slip of the pen, undone
    page.locator("#pad-undo").click()
    page.keyboard.press("7")
    page.locator("#save-button").click()
    expect(page.locator('#contribute-alerts .alert[data-kind="success"]')).to_contain_text("Saved your 7")

    with app.app_context():
        row = db.session.scalars(select(Drawing)).one()
        strokes = load_strokes(row)
    assert len(strokes) == 2
    times = [t for stroke in strokes for t in stroke["t"]]
    assert times[0] == 0 and times == sorted(times) and times[-1] > 0
    for stroke, drawn in zip(strokes, SEVEN):
        assert len(stroke["x"]) == len(stroke["y"]) == len(stroke["t"]) >= len(drawn)
        assert all(0 <= x <= row.width for x in stroke["x"]) and all(0 <= y <= row.height for y in stroke["y"])
        # In pixels of the stored image: where the mouse went, to within a pixel or two of rounding.
        for (x, y), index in ((drawn[0], 0), (drawn[-1], -1)):
            assert abs(stroke["x"][index] - x * row.width) <= 2 and abs(stroke["y"][index] - y * row.height) <= 2

    app.test_cli_runner().invoke(args=["users", "create-admin", "root", "--password", "long enough"])
    page.goto(f"{live_server}/admin/review")
    page.fill("#username", "root")
    page.fill("#password", "long enough")
    page.click("#login-button")
    card = page.locator(f'.review-card[data-id="{row.id}"]')
    card.locator("[data-replay]").click()
    canvas = card.locator("canvas.review-replay-canvas")
    expect(canvas).to_have_attribute("data-state", "done")
    expect(card.locator("img.review-image")).to_be_hidden()
    # The replay ends with the whole drawing in ink: dark pixels along the 7's bar.
    dark = canvas.evaluate("""canvas => {
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let count = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] < 128) count += 1;
        return count;
    }""")
    assert dark > 500
    assert not errors, "\n".join(errors)


# A new label set: its contribute page builds the radio buttons from the set's classes.
ANIMALS = ("cat", "giraffe", "sheep", "bat", "octopus", "camel")
# A round head with two ears, as fractions of the canvas: close enough to a cat for a contribution.
CAT = [[(0.3, 0.35), (0.25, 0.15), (0.4, 0.28), (0.6, 0.28), (0.75, 0.15), (0.7, 0.35)],
       [(0.7, 0.35), (0.78, 0.6), (0.5, 0.82), (0.22, 0.6), (0.3, 0.35)]]


def test_a_new_set_is_contributed_to_with_its_own_radio_buttons(app, live_server, desktop):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["label-sets", "create", "animals", "--classes", ",".join(ANIMALS)])
    assert created.exit_code == 0, created.output

    page = desktop.new_page()
    errors = watch_for_errors(page)
    page.goto(live_server + "/sets/animals/contribute")
    radios = page.locator('#label-picker input[name="label"]')
    expect(radios).to_have_count(len(ANIMALS))
    for index, animal in enumerate(ANIMALS):
        expect(page.locator(f'label[for="label-{index}"]')).to_have_text(animal)
    # The prompt asks for an animal, by name.
    expect(page.locator("#needs-text")).to_contain_text("draw a ", timeout=WAIT_MS)
    save = page.locator("#save-button")
    draw_with_mouse(page, CAT)
    expect(save).to_be_disabled()  # drawn, not yet labelled
    page.keyboard.press("1")  # the first class: keys 1-9 for a set's classes
    expect(page.locator("#label-0")).to_be_checked()
    expect(page.locator("#save-hint")).to_contain_text("cat")
    save.click()
    expect(page.locator('#contribute-alerts .alert[data-kind="success"]')).to_contain_text("Saved your cat",
                                                                                            timeout=WAIT_MS)
    page.screenshot(path=screenshot_dir() / "contribute-animals.png", full_page=True, animations="disabled")

    # Its draw page says no network knows the set yet, and points to the contribute page.
    page.goto(live_server + "/sets/animals/draw")
    expect(page.locator("#no-model")).to_be_visible()
    expect(page.locator("#cnn-bars .prob-row")).to_have_count(len(ANIMALS))

    with app.app_context():
        animals = db.session.scalar(select(LabelSet).where(LabelSet.slug == "animals"))
        rows = db.session.scalars(select(Drawing)).all()
        assert [(row.label_set_id, row.label, row.source) for row in rows] == [(animals.id, 0, "contribution")]
    assert not errors, "\n".join(errors)
