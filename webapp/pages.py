"""The HTML pages: draw & predict, contribute, models, about. They talk to the JSON API."""

from flask import Blueprint, render_template

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
