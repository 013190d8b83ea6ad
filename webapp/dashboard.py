"""What the admin dashboard shows for one label set, each a few GROUP BY queries, and the SVG charts' geometry."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import case, func, select

from training import MODEL_NAMES
from webapp.extensions import db
from webapp.models import DIGITS_ID, SOURCES, STATUSES, Drawing, ModelVersion, Prediction, Rating, TrainingRun, utcnow

RUNS_SHOWN = 20


def counts(label_set_id: int = DIGITS_ID, num_classes: int = 10) -> dict:
    """A set's drawings by label and status, by source, and flagged; one query."""
    by_label_status: dict = defaultdict(lambda: defaultdict(int))
    by_source: dict = defaultdict(int)
    by_status: dict = defaultdict(int)
    not_digit = total = unrated = 0
    rows = db.session.execute(
        select(Drawing.label, Drawing.status, Drawing.source, Drawing.not_digit, func.count())
        .where(Drawing.label_set_id == label_set_id).group_by(Drawing.label, Drawing.status, Drawing.source, Drawing.not_digit)).all()
    for label, status, source, flagged, count in rows:
        total += count
        if status == "pending" and source == "prediction":
            # A prediction nobody rated has no label to confirm: nothing to review.
            unrated += count
            by_source[source] += count
            continue
        by_status[status] += count
        by_source[source] += count
        if flagged:
            not_digit += count
        elif label is not None:
            by_label_status[label][status] += count
    return {"total": total, "not_digit": not_digit, "unrated": unrated,
            "by_status": {status: by_status.get(status, 0) for status in STATUSES},
            "by_source": {source: by_source.get(source, 0) for source in SOURCES},
            "by_label": [{"label": label, **{status: by_label_status[label].get(status, 0) for status in STATUSES}}
                         for label in range(num_classes)]}


def _day(column):
    # date() exists on SQLite and PostgreSQL and gives a 'YYYY-MM-DD' or a date either way.
    return func.date(column)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def rated_accuracy(label_set_id: int = DIGITS_ID) -> list[tuple[str, int, date, int, int]]:
    """A set's predictions users rated, and how many were right: per network, version and day (one query)."""
    day = _day(Rating.created_at)
    rows = db.session.execute(
        select(Prediction.model_name, Prediction.model_version, day, func.count(),
               func.sum(case((Prediction.label == Rating.label, 1), else_=0)))
        .join(Rating, Rating.drawing_id == Prediction.drawing_id).where(Prediction.label_set_id == label_set_id)
        .group_by(Prediction.model_name, Prediction.model_version, day)).all()
    return [(name, version, _as_date(when), int(total), int(correct or 0)) for name, version, when, total, correct in rows]


def rated_accuracy_by_day(rated, days: int = 60) -> dict[str, list[tuple[date, int, int]]]:
    since = (utcnow() - timedelta(days=days)).date()
    totals: dict[str, dict[date, list[int]]] = {name: {} for name in MODEL_NAMES}
    for name, _, when, total, correct in rated:
        if when >= since:
            entry = totals.setdefault(name, {}).setdefault(when, [0, 0])
            entry[0] += total
            entry[1] += correct
    return {name: [(when, *days_[when]) for when in sorted(days_)] for name, days_ in totals.items()}


def rated_accuracy_by_version(rated) -> dict[tuple[str, int], tuple[int, int]]:
    totals: dict[tuple[str, int], list[int]] = {}
    for name, version, _, total, correct in rated:
        entry = totals.setdefault((name, version), [0, 0])
        entry[0] += total
        entry[1] += correct
    return {key: (total, correct) for key, (total, correct) in totals.items()}


def versions(label_set_id: int = DIGITS_ID) -> list[ModelVersion]:
    return db.session.scalars(select(ModelVersion).where(ModelVersion.label_set_id == label_set_id)
                              .order_by(ModelVersion.name, ModelVersion.version.desc())).all()


def confusions(active: dict[str, int], label_set_id: int = DIGITS_ID, num_classes: int = 10) -> list[dict]:
    """Per active version of a set: true class (a user's or an admin's) against what it answered; one query."""
    if not active:
        return []
    matrices = {name: [[0] * num_classes for _ in range(num_classes)] for name in active}
    for name, version in active.items():
        # One query per network: plain equalities let the planner start from ix_predictions_version.
        rows = db.session.execute(
            select(Drawing.label, Prediction.label, func.count())
            .select_from(Prediction).join(Drawing, Drawing.id == Prediction.drawing_id)
            .where(Prediction.model_name == name, Prediction.model_version == version,
                   Prediction.label_set_id == label_set_id,
                   Drawing.label.is_not(None), Drawing.status != "rejected", ~Drawing.not_digit,
                   # A contribution's label is only trusted once confirmed; a rating is the user's word.
                   (Drawing.source != "contribution") | (Drawing.status == "confirmed"))
            .group_by(Drawing.label, Prediction.label)).all()
        for actual, predicted, count in rows:
            if actual < num_classes and predicted < num_classes:
                matrices[name][actual][predicted] += count
    return [_matrix(name, active[name], matrices[name])
            for name in sorted(active, key=lambda key: MODEL_NAMES.index(key) if key in MODEL_NAMES else 99)]


def holdout_confusions(rows: list[ModelVersion]) -> dict[tuple[str, int], dict]:
    """Each version's confusion matrix on the frozen holdout, as computed when it was judged."""
    found = {}
    for row in rows:
        matrix = (row.metrics or {}).get("holdout_confusion")
        if matrix and all(len(line) == len(matrix) for line in matrix):
            found[(row.name, row.version)] = _matrix(row.name, row.version, matrix)
    return found


def _matrix(name: str, version: int, matrix: list[list[int]]) -> dict:
    total = sum(map(sum, matrix))
    right = sum(matrix[i][i] for i in range(len(matrix)))
    return {"name": name, "version": version, "matrix": matrix, "total": total,
            "accuracy": right / total if total else None, "peak": max(cell for row in matrix for cell in row)}


def runs(label_set_id: int = DIGITS_ID) -> list[TrainingRun]:
    return db.session.scalars(select(TrainingRun).where(TrainingRun.label_set_id == label_set_id)
                              .order_by(TrainingRun.created_at.desc()).limit(RUNS_SHOWN)).all()


# ---- charts -------------------------------------------------------------------------------

@dataclass
class Series:
    name: str
    points: list[tuple[float, float, str]] = field(default_factory=list)  # x, y in the plot; tooltip

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in self.points)


@dataclass
class Chart:
    """A line chart laid out for an <svg viewBox="0 0 width height">: axes, ticks and series."""

    width: int = 640
    height: int = 240
    left: int = 48
    right: int = 16
    top: int = 12
    bottom: int = 32
    series: list[Series] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series)


def line_chart(data: dict[str, list[tuple[datetime | date, float, str]]], *, y_floor: float | None = None) -> Chart:
    """Accuracy (0-1) over time, one line per key; the y axis starts near the lowest value."""
    chart = Chart()
    values = [(when, value) for points in data.values() for when, value, _ in points]
    if not values:
        chart.series = [Series(name) for name in data]
        return chart
    stamps = [_timestamp(when) for when, _ in values]
    daily = not any(isinstance(when, datetime) for when, _ in values)
    x0, x1 = min(stamps), max(stamps)
    # A little room either side, so that the first and last points are not on the frame.
    pad = 43200 if daily else max((x1 - x0) * 0.05, 300)
    x0, x1 = x0 - pad, x1 + pad
    lowest = min(value for _, value in values)
    y0 = y_floor if y_floor is not None else max(0.0, min(0.9, (int(lowest * 20) / 20)))
    y1 = 1.0
    plot_w = chart.width - chart.left - chart.right
    plot_h = chart.height - chart.top - chart.bottom

    def x_of(stamp: float) -> float:
        return chart.left + (stamp - x0) / (x1 - x0) * plot_w

    def y_of(value: float) -> float:
        return chart.top + (1 - (value - y0) / (y1 - y0)) * plot_h

    for name, points in data.items():
        chart.series.append(Series(name, [(x_of(_timestamp(when)), y_of(value), label)
                                          for when, value, label in points]))
    steps = 5
    chart.y_ticks = [(y_of(y0 + (y1 - y0) * i / steps), f"{(y0 + (y1 - y0) * i / steps) * 100:.0f}%")
                     for i in range(steps + 1)]
    chart.x_ticks = [(x_of(stamp), text) for stamp, text in
                     (_day_ticks(min(stamps), max(stamps)) if daily else _time_ticks(x0, x1))]
    return chart


def _day_ticks(first: float, last: float, most: int = 6) -> list[tuple[float, str]]:
    """One tick per day (every few days when there are many), at the day's points."""
    days = round((last - first) / 86400)
    step = max(1, -(-(days + 1) // most))
    return [(first + 86400 * day, datetime.fromtimestamp(first + 86400 * day, timezone.utc).strftime("%b %d"))
            for day in range(0, days + 1, step)]


def _time_ticks(x0: float, x1: float) -> list[tuple[float, str]]:
    """Five ticks, labelled with the time of day when the span is short, and a date said once."""
    span = x1 - x0
    if span <= 2 * 86400:
        formats = ("%b %d %H:%M", "%H:%M")  # the date once, on the first tick, then times
    elif span <= 6 * 86400:
        formats = ("%b %d %H:%M", "%b %d %H:%M")
    else:
        formats = ("%b %d", "%b %d")
    ticks, previous = [], None
    for i in range(5):
        stamp = x0 + span * i / 4
        when = datetime.fromtimestamp(stamp, timezone.utc)
        text = when.strftime(formats[0] if previous is None or when.date() != previous.date() else formats[1])
        if not ticks or text != ticks[-1][1]:
            ticks.append((stamp, text))
        previous = when
    return ticks


def _timestamp(when: datetime | date) -> float:
    if isinstance(when, datetime):
        return when.timestamp()  # columns are aware UTC (extensions.UtcDateTime)
    return datetime(when.year, when.month, when.day, 12, tzinfo=timezone.utc).timestamp()


def rated_chart(rated) -> Chart:
    series = rated_accuracy_by_day(rated)
    return line_chart({name.upper(): [(day, correct / total, f"{day:%b %d}: {correct}/{total} right")
                                      for day, total, correct in points if total]
                       for name, points in series.items()})


def holdout_chart(rows: list[ModelVersion]) -> Chart:
    """Each version's accuracy on the frozen user holdout when it was judged, by creation time."""
    data: dict[str, list] = {name.upper(): [] for name in MODEL_NAMES}
    for row in sorted(rows, key=lambda r: r.created_at):
        value = (row.metrics or {}).get("holdout_accuracy")
        if value is not None:
            data.setdefault(row.name.upper(), []).append(
                (row.created_at, float(value), f"v{row.version} ({row.status}): {float(value):.2%} "
                                               f"on {(row.metrics or {}).get('holdout_size', '?')} drawings"))
    return line_chart(data)
