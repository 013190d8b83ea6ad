"""The HTML pages: draw & predict, contribute, models, about. They talk to the JSON API."""

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from webapp.i18n import LANGUAGE_COOKIE, LANGUAGES
from webapp.redirects import local_path

bp = Blueprint("pages", __name__)


@bp.get("/")
def predict():
    return render_template("predict.html", active="predict")


@bp.get("/contribute")
def contribute():
    return render_template("contribute.html", active="contribute")


@bp.get("/models")
def models():
    return render_template("models.html", active="models")


@bp.get("/about")
def about():
    return render_template("about.html", active="about")


@bp.get("/language/<code>")
def language(code: str):
    """The switcher: remember the choice in a cookie (it outranks Accept-Language) and go back."""
    response = redirect(local_path(request.args.get("next"), default=url_for("pages.predict")))
    if code in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, code, max_age=365 * 24 * 3600, samesite="Lax", httponly=True,
                            secure=current_app.config["SESSION_COOKIE_SECURE"])
    return response
