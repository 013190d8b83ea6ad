"""The dashboard's holdout confusion matrices and its charts' time axis."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select

from tests.webapp.test_admin import admin, signed_in  # noqa: F401
from webapp.dashboard import line_chart
from webapp.extensions import db
from webapp.models import ModelVersion


def test_runs_on_one_day_are_told_apart_by_the_time_of_day():
    start = datetime(2026, 12, 1, 21, 5, tzinfo=timezone.utc)
    chart = line_chart({"FNN": [(start + timedelta(minutes=9 * i), 0.95 + i / 100, "") for i in range(4)]})
    labels = [text for _, text in chart.x_ticks]
    assert labels[0] == "Dec 01 21:00" and all(re.fullmatch(r"\d\d:\d\d", text) for text in labels[1:])
    assert len(set(labels)) == len(labels) >= 4
    xs = [x for x, _ in chart.x_ticks]
    assert xs == sorted(xs) and chart.left <= xs[0] and xs[-1] <= chart.width - chart.right


def test_a_day_that_crosses_midnight_names_the_new_date():
    start = datetime(2026, 12, 1, 22, 0, tzinfo=timezone.utc)
    chart = line_chart({"CNN": [(start, 0.9, ""), (start + timedelta(hours=4), 0.95, "")]})
    labels = [text for _, text in chart.x_ticks]
    assert labels[0].startswith("Dec 01") and any(text.startswith("Dec 02") for text in labels[1:])


def test_daily_points_get_one_tick_per_day_never_a_repeated_date():
    one = line_chart({"FNN": [(date(2026, 12, 1), 0.97, "")]})
    assert [text for _, text in one.x_ticks] == ["Dec 01"]
    assert abs(one.x_ticks[0][0] - one.series[0].points[0][0]) < 0.1  # under its point
    many = line_chart({"FNN": [(date(2026, 11, 1) + timedelta(days=i), 0.97, "") for i in range(30)]})
    labels = [text for _, text in many.x_ticks]
    assert 2 <= len(labels) <= 6 and len(set(labels)) == len(labels) and labels[0] == "Nov 01"


def test_each_judged_version_shows_its_holdout_matrix(app, signed_in):
    matrix = [[0] * 10 for _ in range(10)]
    matrix[1][1], matrix[1][7], matrix[3][3] = 40, 2, 30
    with app.app_context():
        cnn = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "cnn"))
        cnn.metrics = {**(cnn.metrics or {}), "holdout_accuracy": 70 / 72, "holdout_size": 72,
                       "holdout_confusion": matrix}
        db.session.commit()
    page = signed_in.get("/admin/").get_data(as_text=True)
    table = re.search(r'<table[^>]*id="holdout-confusion-cnn".*?</table>', page, re.S).group(0)
    assert "97.22% right of 72 holdout drawings" in table and ">40<" in table and ">2<" in table
    assert 'id="holdout-confusion-cnn-v1"' in page  # in the versions table too
    # The FNN was never judged: it says so rather than showing an empty matrix.
    assert 'id="holdout-confusion-fnn"' in page and "not been judged on the frozen holdout yet" in page
    assert 'id="holdout-confusion-fnn-v1"' not in page
