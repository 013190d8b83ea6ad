"""Which class a label set's dataset needs most: the contribute page's "draw a 7" (or "draw a cat") prompt."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import case, func, select

from webapp.extensions import db
from webapp.label_sets import SetInfo
from webapp.models import Drawing, Prediction, Rating


def needs(label_set: SetInfo) -> dict:
    """Need is (1 + how often users say the networks got that class wrong) / (usable drawings + 1):
    the rarest class comes first, and among similar counts the one the networks miss most.
    Usable means labelled, not rejected and not flagged, so the prompt moves on as soon as
    drawings arrive rather than waiting for review. (Entries keep the key ``digit``, the class's
    index, as clients of the digits-only API read it; ``name`` is the class.)
    """
    in_set = Drawing.label_set_id == label_set.id
    usable = dict(db.session.execute(
        select(Drawing.label, func.count()).where(in_set, Drawing.label.is_not(None), Drawing.status != "rejected",
                                                  ~Drawing.not_digit).group_by(Drawing.label)).all())
    confirmed = dict(db.session.execute(
        select(Drawing.label, func.count()).where(in_set, Drawing.status == "confirmed", ~Drawing.not_digit)
        .group_by(Drawing.label)).all())
    missed = {label: (int(total), int(wrong or 0)) for label, total, wrong in db.session.execute(
        select(Rating.label, func.count(), func.sum(case((Prediction.label != Rating.label, 1), else_=0)))
        .join(Prediction, Prediction.drawing_id == Rating.drawing_id).where(Prediction.label_set_id == label_set.id)
        .group_by(Rating.label)).all()}
    classes = []
    for index, name in enumerate(label_set.class_names):
        total, wrong = missed.get(index, (0, 0))
        error_rate = wrong / total if total else 0.0
        classes.append({"digit": index, "name": name, "drawings": int(usable.get(index, 0)),
                        "confirmed": int(confirmed.get(index, 0)), "error_rate": round(error_rate, 4),
                        "need": (1 + error_rate) / (int(usable.get(index, 0)) + 1)})
    best = max(classes, key=lambda entry: (entry["need"], -entry["digit"]))
    reason = ("fewest drawings so far" if best["error_rate"] == 0 or
              best["drawings"] == min(entry["drawings"] for entry in classes) else "the networks often misread it")
    since = datetime.now(timezone.utc) - timedelta(days=14)
    day = func.date(Drawing.created_at)
    growth = [{"day": str(when)[:10], "drawings": int(count)} for when, count in db.session.execute(
        select(day, func.count()).where(in_set, Drawing.source == "contribution", Drawing.created_at >= since)
        .group_by(day).order_by(day)).all()]
    return {"label_set": label_set.slug, "digit": best["digit"], "name": best["name"], "reason": reason,
            "total": sum(entry["drawings"] for entry in classes),
            "confirmed": sum(entry["confirmed"] for entry in classes),
            "digits": [{key: value for key, value in entry.items() if key != "need"} for entry in classes],
            "growth": growth}
