"""Which labelled drawings may train: the confirmation policy, quarantine, and the frozen holdout."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import defaultdict
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, func, select, update
from sqlalchemy.orm import aliased

from training.contributors import share_limit
from webapp.extensions import db
from webapp.models import DIGITS_ID, Drawing, Prediction, utcnow

AUTO_CONFIRMED = "auto-confirmed (AUTO_CONFIRM)"
AGREEMENT_CONFIRMED = "label agrees with the CNN"
QUARANTINED = "quarantined: this client's labels often contradict the CNN"
# A prediction nobody rated has no label to confirm: it is never in the review queue.
REVIEWABLE = Drawing.source != "prediction"


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
        # Back to review: what the policy confirmed that no run of its set has taken into a batch.
        db.session.execute(update(Drawing).where(
            Drawing.client_id == drawing.client_id, Drawing.status == "confirmed", Drawing.batched_at.is_(None),
            _confirmed_by_policy())
            .values(status="pending", confirmed_at=None, status_reason=QUARANTINED))
        drawing.status_reason = QUARANTINED
        return True
    since = utcnow() - timedelta(days=1)
    confirmed_today = db.session.scalar(
        select(func.count()).select_from(Drawing).where(
            Drawing.client_id == drawing.client_id, Drawing.confirmed_at >= since,
            _confirmed_by_policy()))
    return (confirmed_today or 0) >= config["AUTO_CONFIRM_DAILY_CAP"]


def confirm(drawing: Drawing, *, reason: str) -> None:
    """Mark a labelled drawing confirmed; at its first confirmation, decide once whether it is holdout.

    The flag never changes after (relabelled, confirmed again, rejected and restored), so a
    drawing cannot move between judging versions and training them.
    """
    if drawing.first_confirmed_at is None:
        drawing.holdout = _holdout_for(drawing)
        drawing.first_confirmed_at = utcnow()
    drawing.status, drawing.confirmed_at, drawing.status_reason = "confirmed", utcnow(), reason


def _holdout_for(drawing: Drawing) -> bool:
    """Whole contributors once there are enough of them (so the holdout measures writers no
    version has seen), else about HOLDOUT_FRACTION of each label's drawings."""
    config = current_app.config
    fraction = config["HOLDOUT_FRACTION"]
    if drawing.client_id:
        contributors = db.session.scalar(
            select(func.count(func.distinct(Drawing.client_id)))
            .where(Drawing.first_confirmed_at.is_not(None), Drawing.client_id != drawing.client_id,
                   Drawing.label_set_id == drawing.label_set_id)) or 0
        if contributors + 1 >= config["HOLDOUT_MIN_CONTRIBUTORS"]:
            return holdout_contributor(drawing.client_id, fraction=fraction)
    counts = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Drawing.holdout.cast(db.Integer)), 0))
        .where(Drawing.first_confirmed_at.is_not(None), Drawing.label == drawing.label,
               Drawing.label_set_id == drawing.label_set_id, Drawing.id != drawing.id)).one()
    decided, held = int(counts[0]), int(counts[1])
    return held < fraction * (decided + 1)


def holdout_contributor(client_id: str, *, fraction: float) -> bool:
    """Whether a contributor's drawings all judge: keyed by the secret key, so a visitor cannot
    pick a client id that lands on the side they want."""
    key = str(current_app.secret_key or "").encode()
    digest = hmac.new(key, b"holdout:" + client_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def reject(drawing: Drawing, *, reason: str) -> None:
    # The holdout flag stays: restored, the drawing goes back to the side it was on.
    drawing.status, drawing.confirmed_at, drawing.status_reason = "rejected", None, reason


# ---- a run's batch of new drawings -----------------------------------------------------------

def _waiting(label_set_id: int):
    """A set's confirmed training drawings no run has taken into its batch yet."""
    return (Drawing.label_set_id == label_set_id, Drawing.status == "confirmed", ~Drawing.holdout,
            ~Drawing.not_digit, Drawing.batched_at.is_(None))


def waiting_count(label_set_id: int = DIGITS_ID) -> int:
    return db.session.scalar(select(func.count()).select_from(Drawing).where(*_waiting(label_set_id))) or 0


def confirmed_training_counts(label_set_id: int) -> dict[int, int]:
    """Confirmed drawings a run may train on (not holdout), per label, batched or not."""
    return {int(label): int(count) for label, count in db.session.execute(
        select(Drawing.label, func.count()).where(Drawing.label_set_id == label_set_id, Drawing.status == "confirmed",
                                                  ~Drawing.holdout, ~Drawing.not_digit)
        .group_by(Drawing.label)).all()}


def contributor_limit(counts: list[int], *, share: float, minimum: int) -> int:
    """The most drawings any one contributor may give a batch, given each contributor's waiting count.

    The largest limit at which the biggest contributor's part is still at most ``share`` of the
    batch, but at least ``minimum``: with fewer than 1/share contributors no limit satisfies the
    share, and a lone contributor's drawings must still be trained on, a slice at a time.
    """
    return max(share_limit(counts, share=share), minimum)


def release_batch(*, taken_at: datetime) -> int:
    """The drawings a run that failed took wait again, for the next run; how many. The caller commits.

    A rejected run keeps its batch: its drawings were tried, so they no longer count towards
    RETRAIN_EVERY, and a later run still trains on them with whatever is new by then.
    """
    return db.session.execute(update(Drawing).where(Drawing.batched_at == taken_at)
                              .values(batched_at=None)).rowcount or 0


def take_batch(*, until: datetime, label_set_id: int = DIGITS_ID, capped: bool = True) -> int:
    """Mark the drawings a run starting at ``until`` trains on as new, capped per contributor.

    Oldest first within each contributor; what the cap holds back keeps waiting for the next
    run. A label set's first networks are trained from nothing, on everything (``capped=False``):
    they have no parent for one writer's drawings to pull away from. Returns how many were
    taken. The caller commits.
    """
    config = current_app.config
    rows = db.session.execute(select(Drawing.id, Drawing.client_id).where(*_waiting(label_set_id),
                                                                          Drawing.confirmed_at <= until)
                              .order_by(Drawing.confirmed_at, Drawing.id)).all()
    by_client: dict[str | None, list[str]] = defaultdict(list)
    for drawing_id, client_id in rows:
        by_client[client_id].append(drawing_id)
    minimum = max(1, math.ceil(config["CONTRIBUTOR_SHARE"] * (config["RETRAIN_EVERY"] or 100)))
    limit = contributor_limit([len(ids) for ids in by_client.values()], share=config["CONTRIBUTOR_SHARE"],
                              minimum=minimum) if capped else len(rows)
    chosen = [drawing_id for ids in by_client.values() for drawing_id in ids[:limit]]
    for start in range(0, len(chosen), 500):
        db.session.execute(update(Drawing).where(Drawing.id.in_(chosen[start:start + 500])).values(batched_at=until))
    return len(chosen)
