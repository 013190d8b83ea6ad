"""The HTML pages: draw & predict, contribute, models, about. They talk to the JSON API."""

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_babel import get_locale
from werkzeug.exceptions import NotFound

from webapp.i18n import LANGUAGE_COOKIE, LANGUAGES
from webapp.redirects import local_path

bp = Blueprint("pages", __name__)


@bp.get("/")
def predict():
    return render_template("predict.html", active="predict")


@bp.get("/contribute")
def contribute():
    return render_template("contribute.html", active="contribute")


def _label_set_page(slug: str, template: str, digits_endpoint: str, **context):
    """A label set's page, with its classes in the reader's language; digits live at their own
    addresses, and an unknown slug is the readable 404 page."""
    from webapp import label_sets
    from webapp.registry import get_registry

    row = label_sets.find(slug)
    if row is None:
        raise NotFound()
    label_set = label_sets.info(row)
    if label_set.is_digits:
        return redirect(url_for(digits_endpoint))
    trained = len(get_registry().active_rows(label_set.id)) == 2
    return render_template(template, label_set=label_set, trained=trained,
                           classes=label_set.display_names(str(get_locale() or "en")),
                           min_per_class=current_app.config["MIN_PER_CLASS"], **context)


@bp.get("/sets/<slug>/draw")
def set_predict(slug: str):
    return _label_set_page(slug, "predict.html", "pages.predict", active="predict")


@bp.get("/sets/<slug>/contribute")
def set_contribute(slug: str):
    return _label_set_page(slug, "contribute.html", "pages.contribute", active="contribute")


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
