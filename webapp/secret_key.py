"""The key that signs sessions and CSRF tokens: the environment's, or one made once and kept in instance/."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from webapp.config import ConfigError, is_public_secret

SECRET_FILE = "secret_key"


def load_or_create(instance: Path) -> str:
    """The key in ``instance/secret_key``, made on first use.

    Every gunicorn worker and the Celery worker create the app at the same moment on a first
    start, and must all end up with the same key: the key is written whole under a temporary
    name and linked into place, which fails for all but the first; the others read the winner's.
    """
    path = instance / SECRET_FILE
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        temporary = instance / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(secrets.token_urlsafe(48) + "\n")
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
        finally:
            temporary.unlink(missing_ok=True)
    return read(path)


def read(path: Path) -> str:
    mode = path.stat().st_mode
    # Anyone who can read it can sign in as any admin.
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by other users (mode {stat.filemode(mode)}): "
                          f"`chmod 600 {path}`, or delete it to make a new one")
    key = path.read_text().strip()
    if len(key) < 32 or is_public_secret(key):
        raise ConfigError(f"{path} does not hold a usable key: delete it and a new one is made at the next start")
    return key
