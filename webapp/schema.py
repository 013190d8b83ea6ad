"""The schema revision this code expects, read from the migration scripts without Alembic.

/healthz compares it with the database's. Importing Alembic for that would cost every web
worker ~10 MB (Alembic brings Mako and Pygments) of its 200 MB; the scripts' ``revision``
and ``down_revision`` assignments say the same (tests/webapp/test_app.py checks that they
agree with Alembic's own answer).
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

VERSIONS = Path(__file__).resolve().parent.parent / "migrations" / "versions"


def _assignments(path: Path) -> dict:
    values = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and node.value is not None:
            values[target.id] = ast.literal_eval(node.value)
    return values


@lru_cache(maxsize=None)
def head_revision(versions: Path = VERSIONS) -> str:
    """The one revision no other script builds on; ValueError if there is not exactly one."""
    revisions, parents = set(), set()
    for path in sorted(versions.glob("*.py")):
        values = _assignments(path)
        if "revision" not in values:
            continue
        revisions.add(values["revision"])
        down = values.get("down_revision")
        parents.update(down if isinstance(down, (tuple, list)) else [down] if down else [])
    heads = revisions - parents
    if len(heads) != 1:
        raise ValueError(f"expected one head revision in {versions}, found {sorted(heads)}")
    return heads.pop()
