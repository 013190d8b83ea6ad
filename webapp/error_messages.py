"""What each API error code means to a person, in the page's language (the API itself answers in English)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

# Every `code` the API can return. tests/webapp/test_error_messages.py scans the code base and fails
# when a code is raised that has no sentence here.
MESSAGES = {
    # HTTP-level failures (webapp/errors.py), whichever route they come from.
    "bad_request": _l("The request could not be understood. Reload the page and try again."),
    "unauthorized": _l("Sign in, or send an API token, to do this."),
    "forbidden": _l("Your account or token is not allowed to do this."),
    "not_found": _l("It was not found: it may have been deleted, or the address is wrong."),
    "method_not_allowed": _l("This address does not accept that kind of request."),
    "too_large": _l("That is too large to send. Try a smaller image."),
    "unsupported_media_type": _l("That kind of content is not accepted here."),
    "rate_limited": _l("Too many requests. Wait a moment, then try again."),
    "internal_error": _l("Something went wrong on our side. Please try again."),
    "models_unavailable": _l("The networks are not ready yet. Try again in a moment."),
    "storage_unavailable": _l("Image storage is unavailable. Try again shortly."),
    "database_unavailable": _l("The database is unavailable. Try again shortly."),
    "queue_unavailable": _l("The task queue is unavailable. Try again shortly."),
    # The request's body and parameters.
    "invalid_json": _l("The request must be a JSON object."),
    "json_too_deep": _l("The request's JSON is nested too deeply."),
    "invalid_id": _l("That id is not valid."),
    "invalid_label": _l("The label must be a digit from 0 to 9."),
    "invalid_page": _l("The page number is not valid."),
    "invalid_status": _l("That status is not one of the allowed values."),
    "invalid_source": _l("That source is not one of the allowed values."),
    "invalid_not_digit": _l("\"Not a digit\" must be true or false."),
    "invalid_items": _l("The list of drawings to review is not valid."),
    "invalid_format": _l("That export format is not offered."),
    # Dataset imports.
    "unknown_label_set": _l("That label set does not exist."),
    "invalid_file": _l("The file is damaged or not in the format given."),
    "file_too_large": _l("The file is too large to import."),
    "import_conflict": _l("Another import of the same drawings was running. Run this one again."),
    # The drawing itself (training/preprocess.py).
    "missing_image": _l("No drawing was sent."),
    "invalid_image": _l("The drawing could not be read as an image."),
    "invalid_encoding": _l("The drawing was not sent as valid base64 or a data URL."),
    "unsupported_image": _l("Only PNG, JPEG and WebP images are accepted."),
    "image_too_large": _l("The image is too large. Try a smaller one."),
    "empty_drawing": _l("Nothing is drawn yet."),
    # Drawings, ratings and models.
    "already_rated": _l("This prediction has already been rated."),
    "id_taken": _l("A drawing was already saved under this id."),
    "image_missing": _l("The image of this drawing is missing from storage."),
    "invalid_strokes": _l("The strokes sent with the drawing are not valid."),
    "no_strokes": _l("This drawing was sent without its strokes."),
    "strokes_missing": _l("The strokes of this drawing are missing from storage."),
    "artifact_invalid": _l("This model version's files are damaged, so it cannot be activated."),
    # Label sets.
    "invalid_label_set": _l("That label set does not exist."),
    "label_set_closed": _l("This label set is closed to new drawings."),
    "no_model": _l("This label set has no trained model yet. Contribute drawings to train one."),
    "invalid_slug": _l("A label set's short name is 1 to 32 lowercase letters, digits or hyphens."),
    "invalid_classes": _l("The classes must be 2 to 50 distinct names without commas."),
    "builtin_label_set": _l("The built-in digits set cannot be closed."),
    # Accounts and tokens.
    "exists": _l("That name is already taken."),
    "invalid_username": _l("A username is 1 to 64 letters, digits or . _ @ -."),
    "invalid_name": _l("A token name is 1 to 64 letters, digits or . _ @ -."),
    "invalid_password": _l("The password is too short or too long."),
    "invalid_role": _l("That role does not exist."),
    "invalid_user": _l("Choose the account the token acts for."),
    "invalid_scopes": _l("Those scopes are not valid for this account."),
    "invalid_expires_days": _l("The number of days until the token expires is not valid."),
    "invalid_predict_limit": _l("The prediction limit must be a rate such as 600/minute."),
    "invalid_contribute_limit": _l("The contribution limit must be a rate such as 600/minute."),
}


def error_messages() -> dict[str, str]:
    """The table in the current request's language, ready for a page's JSON message block."""
    return {code: str(text) for code, text in MESSAGES.items()}
