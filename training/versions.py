"""Model versions on disk: a folder per version holding the files and a checksummed manifest.

Layout: ``<root>/<name>/v<version>/{model.keras, model.onnx, manifest.json}``. A version
folder appears only once complete (it is written beside and renamed), and nothing is
loaded unless every file matches the sha256 its manifest records. No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from training import instance_path

KERAS_FILE = "model.keras"
ONNX_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
_VERSION_DIR = re.compile(r"v(\d+)\Z")


class VersionError(RuntimeError):
    """A model version is missing, incomplete or does not match its manifest."""


def default_models_root() -> Path:
    return instance_path() / "models"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredVersion:
    name: str
    version: int
    path: Path
    manifest: dict

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def keras_path(self) -> Path:
        return self.path / KERAS_FILE


def version_dir(root: Path, name: str, version: int) -> Path:
    return Path(root) / name / f"v{version}"


def list_versions(root: Path, name: str) -> list[int]:
    folder = Path(root) / name
    if not folder.is_dir():
        return []
    found = (_VERSION_DIR.match(entry.name) for entry in folder.iterdir())
    return sorted(int(match[1]) for match in found if match and (folder / match[0] / MANIFEST_FILE).exists())


def next_version(root: Path, name: str) -> int:
    return max(list_versions(root, name), default=0) + 1


def new_manifest(*, name: str, version: int, parent: int | None, metrics: dict, input_spec: dict,
                 output_spec: dict, training: dict, extra: dict | None = None) -> dict:
    return {
        "name": name,
        "version": version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parent": parent,
        "metrics": metrics,
        "input": input_spec,
        "output": output_spec,
        "training": training,
        **(extra or {}),
        "files": {},
    }


def publish(root: Path, manifest: dict, files: dict[str, Path]) -> StoredVersion:
    """Move ``files`` into the version's folder with their checksums, atomically.

    Raises :class:`VersionError` if that version already exists: versions are immutable.
    """
    target = version_dir(root, manifest["name"], manifest["version"])
    if target.exists():
        raise VersionError(f"{target} already exists; versions are never overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        manifest = {**manifest, "files": {}}
        for filename, source in files.items():
            destination = staging / filename
            shutil.copyfile(source, destination)
            manifest["files"][filename] = {"sha256": sha256_file(destination),
                                           "bytes": destination.stat().st_size}
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return StoredVersion(manifest["name"], manifest["version"], target, manifest)


def load(root: Path, name: str, version: int | None = None, *, verify: bool = True) -> StoredVersion:
    """The stored version (the latest when ``version`` is None), checked against its manifest."""
    if version is None:
        versions = list_versions(root, name)
        if not versions:
            raise VersionError(f"no versions of {name!r} under {root}; train with `python -m training.train`")
        version = versions[-1]
    path = version_dir(root, name, version)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        raise VersionError(f"{name} v{version} does not exist under {root}") from None
    except (OSError, ValueError) as exc:
        raise VersionError(f"{path / MANIFEST_FILE} is unreadable: {exc}") from None
    stored = StoredVersion(name, version, path, manifest)
    if verify:
        verify_files(stored)
    return stored


def verify_files(stored: StoredVersion, filenames: tuple[str, ...] | None = None) -> None:
    files = stored.manifest.get("files", {})
    for filename in filenames or tuple(files):
        expected = files.get(filename, {}).get("sha256")
        path = stored.path / filename
        if expected is None or not path.exists():
            raise VersionError(f"{stored.name} v{stored.version}: {filename} is missing")
        if sha256_file(path) != expected:
            raise VersionError(f"{stored.name} v{stored.version}: {filename} does not match its checksum")
