"""Which labelled drawings may train: the confirmation policy, quarantine, and the frozen holdout."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import case, func, select, update
from sqlalchemy.orm import aliased

from webapp.extensions import db
from webapp.models import Drawing, Prediction, TrainingRun, utcnow

AUTO_CONFIRMED = "auto-confirmed (AUTO_CONFIRM)"
AGREEMENT_CONFIRMED = "label agrees with the CNN"
QUARANTINED = "quarantined: this client's labels often contradict the CNN"


def confirmation_for(drawing: Drawing, *, cnn_label: int | None, cnn_confidence: float | None) -> str | None:
    """Why a newly labelled drawing is confirmed at once under the configured policy, or None.

    AUTO_CONFIRM: every labelled drawing (small private deployments). CONFIRM_POLICY=agreement:
    the label agrees with the CNN's confident reading. CONFIRM_POLICY=review (the default):
    only an admin confirms.
    """
    config = current_app.config
    if drawing.not_digit:
        return None
    if not (config["AUTO_CONFIRM"] or config["CONFIRM_POLICY"] == "agreement"):
        return None
    if drawing.client_id and _guard_client(drawing, cnn_label=cnn_label, cnn_confidence=cnn_confidence):
        return None
    if config["AUTO_CONFIRM"]:
        return AUTO_CONFIRMED
    if (cnn_label is not None and cnn_label == drawing.label
            and (cnn_confidence or 0) >= config["AGREEMENT_CONFIDENCE"]):
        return f"{AGREEMENT_CONFIRMED} at {cnn_confidence:.0%} confidence"
    return None



def _confirmed_by_policy():
    """Drawings the policy confirmed (not an admin): what a quarantine may take back."""
    return Drawing.status_reason.startswith(AUTO_CONFIRMED) | Drawing.status_reason.startswith(AGREEMENT_CONFIRMED)


def _guard_client(drawing: Drawing, *, cnn_label: int | None, cnn_confidence: float | None) -> bool:
    """True when this client's drawings must wait for an admin: quarantined, or over the daily cap.

    A flood of wrong labels from one client is what this stops: once the CNN, when confident,
    contradicts enough of a client's labels, nothing of theirs is confirmed by the policy, and
    what the policy already confirmed (and no run has used yet) goes back to review.
    """
    config = current_app.config
    confident = config["AGREEMENT_CONFIDENCE"]
    cnn = aliased(Prediction)
    labelled, contradicted = db.session.execute(
        select(func.count(), func.coalesce(func.sum(case((cnn.label != Drawing.label, 1), else_=0)), 0))
        .select_from(Drawing).join(cnn, (cnn.drawing_id == Drawing.id) & (cnn.model_name == "cnn"))
        .where(Drawing.client_id == drawing.client_id, Drawing.id != drawing.id, Drawing.label.is_not(None),
               cnn.confidence >= confident)).one()
    labelled, contradicted = int(labelled), int(contradicted)
    if cnn_label is not None and (cnn_confidence or 0) >= confident:
        labelled += 1
        contradicted += int(cnn_label != drawing.label)
    if labelled >= config["QUARANTINE_MIN_LABELS"] and contradicted > config["QUARANTINE_DISAGREEMENT"] * labelled:
        last_run = db.session.scalar(select(func.max(TrainingRun.started_at)))
        recall = (update(Drawing).where(
            Drawing.client_id == drawing.client_id, Drawing.status == "confirmed",
            _confirmed_by_policy())
            .values(status="pending", confirmed_at=None, holdout=False, status_reason=QUARANTINED))
        if last_run is not None:
            recall = recall.where(Drawing.confirmed_at > last_run)
        db.session.execute(recall)
        drawing.status_reason = QUARANTINED
        return True
    since = utcnow() - timedelta(days=1)
    confirmed_today = db.session.scalar(
        select(func.count()).select_from(Drawing).where(
            Drawing.client_id == drawing.client_id, Drawing.confirmed_at >= since,
            _confirmed_by_policy()))
    return (confirmed_today or 0) >= config["AUTO_CONFIRM_DAILY_CAP"]


def confirm(drawing: Drawing, *, reason: str) -> None:
    """Mark a labelled drawing confirmed, setting aside about HOLDOUT_FRACTION of each label.

    The holdout flag is decided once, at confirmation, and never changes, so the holdout
    stays frozen: versions are always judged on drawings no version trained on.
    """
    fraction = current_app.config["HOLDOUT_FRACTION"]
    counts = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Drawing.holdout.cast(db.Integer)), 0))
        .where(Drawing.status == "confirmed", Drawing.label == drawing.label, Drawing.id != drawing.id)).one()
    confirmed, held = int(counts[0]), int(counts[1])
    drawing.holdout = held < fraction * (confirmed + 1)
    drawing.status, drawing.confirmed_at, drawing.status_reason = "confirmed", utcnow(), reason


def reject(drawing: Drawing, *, reason: str) -> None:
    drawing.status, drawing.confirmed_at, drawing.holdout, drawing.status_reason = "rejected", None, False, reason
