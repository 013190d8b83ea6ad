"""A new label set in a real browser: its contribute page builds the radio buttons from the set's classes."""

from __future__ import annotations

from playwright.sync_api import expect
from sqlalchemy import select

from tests.webapp.test_browser import (  # noqa: F401  (fixtures)
    WAIT_MS, browser, desktop, draw_with_mouse, live_server, screenshot_dir, watch_for_errors,
)
from webapp.extensions import db
from webapp.models import Drawing, LabelSet

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
