"""The interface in English, Japanese, Chinese and Russian: complete catalogs, translated pages, the switcher."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from webapp.i18n import SOURCE

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = ["ja", "zh", "ru"]
HEADERS = {"ja": "ja,en;q=0.5", "zh": "zh-CN,zh;q=0.9", "ru": "ru-RU,ru;q=0.9", "en": "en-GB,en;q=0.9"}
# Each page and the message its <title> starts with.
PAGES = {"/": "Draw a digit", "/contribute": "Contribute a digit", "/models": "Models", "/about": "About",
         "/admin/login": "Sign in"}
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def catalog(lang: str):
    with (SOURCE / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return read_po(source, locale=lang)


def forms(value) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)


def translate(lang: str, msgid: str) -> str:
    return "" if lang == "en" else catalog(lang)[msgid].string


def marked_messages() -> set:
    """What the code marks for translation now, extracted the way `make translations` does."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {**DEFAULT_KEYWORDS, "_l": None}
    return {(context, message)
            for _file, _line, message, _comments, context in extract_from_dir(str(ROOT), method_map, options_map,
                                                                               keywords=keywords)}


def json_messages(page: str) -> dict:
    """Every JSON message block on a page, by id, flattened to {"id.key.subkey": text}."""
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(f"{prefix}.{index}", item)
        else:
            flat[prefix] = value

    for block_id, body in re.findall(r'<script type="application/json" id="([\w-]+)">(.*?)</script>', page, re.S):
        walk(block_id, json.loads(body))
    return flat


# ---- catalogs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_message_is_translated_with_its_placeholders(lang):
    translations = catalog(lang)
    messages = [message for message in translations if message.id]
    assert len(messages) > 200
    for message in messages:
        where = f"{lang}: {message.id!r}"
        assert "fuzzy" not in message.flags, where
        strings = forms(message.string)
        assert len(strings) == (translations.num_plurals if message.pluralizable else 1), where
        expected = {name for msgid in forms(message.id) for name in PLACEHOLDER.findall(msgid)}
        for text in strings:
            assert text.strip(), f"untranslated: {where}"
            assert set(PLACEHOLDER.findall(text)) == expected, f"placeholders differ: {where} -> {text!r}"
            # Jinja formats every message with %, so any other % would break the page.
            assert "%" not in PLACEHOLDER.sub("", text).replace("%%", ""), f"stray %: {where} -> {text!r}"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_the_catalogs_hold_every_message_the_code_marks(lang):
    held = {(message.context, message.id) for message in catalog(lang) if message.id}
    missing = marked_messages() - held
    assert not missing, f"run `make translations` and translate: {sorted(map(str, missing))}"


# ---- pages ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES)
def test_each_page_is_shown_in_each_language(client, path):
    english = client.get(path, headers={"Accept-Language": HEADERS["en"]}).get_data(as_text=True)
    assert '<html lang="en">' in english
    assert f"<title>{PAGES[path]} · Inkling</title>" in english
    english_messages = json_messages(english)
    for lang in TRANSLATED:
        response = client.get(path, headers={"Accept-Language": HEADERS[lang]})
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert f'<html lang="{lang}">' in page
        title = translate(lang, PAGES[path])
        assert title and title != PAGES[path]
        assert f"<title>{html.escape(title, quote=False)} · Inkling</title>" in page
        assert translate(lang, "Contribute") in page and ">Contribute<" not in page

        # The scripts' sentences come in the page's language, with the same {placeholders} to fill.
        messages = json_messages(page)
        assert messages.keys() == english_messages.keys()
        same = {key for key in messages if messages[key] == english_messages[key]}
        assert same <= {"predict-messages.separator"}, (lang, same)
        for key, text in messages.items():
            assert set(re.findall(r"\{(\w+)\}", text)) == set(re.findall(r"\{(\w+)\}", english_messages[key])), key


def test_counts_on_the_models_page_come_in_each_plural_form(client):
    page = client.get("/models", headers={"Accept-Language": HEADERS["ru"]}).get_data(as_text=True)
    in_all = json.loads(re.search(r'id="models-messages">(.*?)</script>', page, re.S).group(1))["in_all"]
    assert in_all == {"one": "Всего {count} рисунок.", "few": "Всего {count} рисунка.",
                      "many": "Всего {count} рисунков."}


def test_the_error_page_speaks_the_visitors_language(client):
    response = client.get("/no-such-page", headers={"Accept-Language": HEADERS["ja"]})
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert '<html lang="ja">' in page
    assert translate("ja", "Page not found") in page
    assert translate("ja", "There is no page at this address. Check the link, or go back to drawing.") in page


def test_python_messages_are_translated_too(client):
    login = client.get("/admin/login", headers={"Accept-Language": HEADERS["ru"]}).get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', login).group(1)
    response = client.post("/admin/login", data={"username": "nobody", "password": "wrong", "csrf_token": token},
                           headers={"Accept-Language": HEADERS["ru"]})
    assert translate("ru", "Wrong username or password.") in response.get_data(as_text=True)


@pytest.mark.parametrize("path", PAGES)
def test_the_switcher_works_on_each_page(client, path):
    for lang in TRANSLATED + ["en"]:
        # The link the page itself offers, followed as a browser would: back to the same page, now in `lang`,
        # whatever the browser's Accept-Language says.
        page = client.get(path, headers={"Accept-Language": HEADERS["ja" if lang != "ja" else "ru"]})
        link = re.search(rf'data-language="{lang}"\s+href="([^"]+)"', page.get_data(as_text=True))
        assert link, f"no switcher link to {lang} on {path}"
        response = client.get(html.unescape(link.group(1)))
        assert response.status_code == 302
        assert response.headers["Location"].split("?")[0] == path
        shown = client.get(response.headers["Location"], headers={"Accept-Language": HEADERS["ja"]})
        text = shown.get_data(as_text=True)
        assert f'<html lang="{lang}">' in text
        title = translate(lang, PAGES[path]) or PAGES[path]
        assert f"<title>{html.escape(title, quote=False)} · Inkling</title>" in text
