"""The interface's languages: chosen from Accept-Language or the switcher, compiled catalogs at start."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import Flask, request

LANGUAGES = {"en": "English", "ja": "日本語", "zh": "中文", "ru": "Русский"}
LANGUAGE_COOKIE = "inkling_lang"
SOURCE = Path(__file__).resolve().parent / "translations"


def select_locale() -> str:
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES), default="en")


def compile_catalogs(target: Path) -> Path:
    """Compile the committed .po files into ``target`` (compiled .mo files are not kept in git).

    Each worker may do this at start-up at the same moment: every file is written to a temporary
    name and renamed, so a reader sees the old catalog or the new one, whole.
    """
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in SOURCE.glob("*/LC_MESSAGES/messages.po"):
        mo = target / po.relative_to(SOURCE).with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        mo.parent.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as source:
            catalog = read_po(source, locale=po.parts[-3])
        handle, temporary = tempfile.mkstemp(dir=mo.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            write_mo(out, catalog)
        os.replace(temporary, mo)
    return target


def init_i18n(app: Flask) -> None:
    from webapp.extensions import babel

    directory = compile_catalogs(Path(app.instance_path) / "translations")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(directory)
    babel.init_app(app, locale_selector=select_locale)

    @app.context_processor
    def languages():
        from flask_babel import get_locale

        from webapp.error_messages import error_messages

        # A function, so only pages that render the message block pay for the table.
        return {"languages": LANGUAGES, "current_language": str(get_locale() or "en"),
                "api_error_messages": error_messages}
