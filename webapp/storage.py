"""Object storage behind one small interface: a local folder (default) or Amazon S3.

The database keeps only keys. Keys are made by the app (uuid-based), never by users.
"""

from __future__ import annotations

import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Protocol

from flask import current_app

# The most keys one DeleteObjects request may name.
S3_DELETE_LIMIT = 1000
# Writes in flight at once for put_many: each waits on a round trip (S3) or the file system (local).
S3_PUT_THREADS = 16
LOCAL_PUT_THREADS = 8
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,250}\Z")


class StorageError(RuntimeError):
    """The object store failed."""


class StorageUnavailable(StorageError):
    """The object store could not be reached or did not answer in time."""


class ObjectNotFound(StorageError, KeyError):
    """No object under that key."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/") or "//" in key:
        raise ValueError(f"invalid object key {key!r}")
    return key


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, *, content_type: str) -> None: ...
    def put_many(self, objects: list[tuple[str, bytes, str]]) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def delete_many(self, keys: list[str]) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> Iterator[StoredObject]: ...
    def check(self) -> None: ...


class LocalObjectStore:
    """Objects as files under a folder; writes are atomic (temp file, fsync, rename)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        path = self._path(key)
        try:
            try:
                handle, partial = tempfile.mkstemp(prefix=".partial-", dir=path.parent)
            except FileNotFoundError:  # a new folder: made only then (a mkdir per object costs more than the write)
                path.parent.mkdir(parents=True, exist_ok=True)
                handle, partial = tempfile.mkstemp(prefix=".partial-", dir=path.parent)
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(partial, path)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageUnavailable(f"local store cannot write {key}: {exc}") from exc

    def put_many(self, objects: list[tuple[str, bytes, str]]) -> None:
        """Write ``(key, data, content_type)`` objects, new keys no row names yet (an import's batch),
        with one flush to disk for them all instead of one each: all are durable when it returns,
        or none is left.

        They are written in place, not renamed into it: nothing reads a key before its row is
        committed, which is after this returns. A few threads overlap the file system's waits.
        """
        paths = [self._path(key) for key, _, _ in objects]  # every key checked before any is written

        def write(path: Path, data: bytes) -> Path | OSError:
            try:
                try:
                    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileNotFoundError:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError as exc:
                return exc
            try:
                os.write(descriptor, data)
                return path
            except OSError as exc:
                path.unlink(missing_ok=True)
                return exc
            finally:
                os.close(descriptor)

        with ThreadPoolExecutor(LOCAL_PUT_THREADS) as pool:
            outcomes = list(pool.map(write, paths, [data for _, data, _ in objects]))
        failures = [outcome for outcome in outcomes if isinstance(outcome, OSError)]
        try:
            if failures:
                raise failures[0]
            sync_filesystem(self.root)
        except OSError as exc:
            for outcome in outcomes:
                if isinstance(outcome, Path):
                    outcome.unlink(missing_ok=True)
            raise StorageUnavailable(f"local store cannot write {len(objects)} objects: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"local store cannot read {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"local store cannot delete {key}: {exc}") from exc

    def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.delete(key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        if not self.root.exists():
            return
        for path in sorted(self.root.rglob("*")):
            if not path.is_file() or path.name.startswith(".partial-"):
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                stat = path.stat()
                yield StoredObject(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, timezone.utc))

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StorageUnavailable(f"{self.root} is not writable")
        except OSError as exc:
            raise StorageUnavailable(str(exc)) from exc


class S3ObjectStore:
    """Objects in an S3 bucket (or an S3-compatible server), with tight timeouts."""

    def __init__(self, bucket: str, *, client, prefix: str = ""):
        self.bucket = bucket
        self.client = client
        self.prefix = prefix

    @classmethod
    def from_config(cls, config) -> "S3ObjectStore":
        # botocore alone: boto3 adds nothing this store calls, and 2 MB to every web worker.
        from botocore.config import Config
        from botocore.session import Session

        client = Session().create_client(
            "s3",
            endpoint_url=config.get("S3_ENDPOINT_URL"),
            region_name=config.get("S3_REGION"),
            config=Config(
                connect_timeout=config["S3_CONNECT_TIMEOUT"],
                read_timeout=config["S3_READ_TIMEOUT"],
                retries={"max_attempts": config["S3_MAX_ATTEMPTS"], "mode": "standard"},
            ),
        )
        return cls(config["S3_BUCKET"], client=client, prefix=config.get("S3_PREFIX", ""))

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _call(self, what: str, function, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return function(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(kwargs.get("Key", "")) from None
            raise StorageUnavailable(f"S3 {what} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 {what} failed: {exc}") from exc

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self._call("put", self.client.put_object, Key=self._key(key), Body=data, ContentType=content_type)

    def put_many(self, objects: list[tuple[str, bytes, str]]) -> None:
        """Many puts at once (each is a round trip); on a failure the ones written are deleted again."""
        def put(entry: tuple[str, bytes, str]) -> str | None:
            try:
                self.put(entry[0], entry[1], content_type=entry[2])
                return entry[0]
            except StorageError:
                return None

        with ThreadPoolExecutor(S3_PUT_THREADS) as pool:
            written = list(pool.map(put, objects))
        if None in written:
            self.delete_many([key for key in written if key is not None])
            raise StorageUnavailable(f"S3 put failed for {written.count(None)} of {len(objects)} objects")

    def get(self, key: str) -> bytes:
        response = self._call("get", self.client.get_object, Key=self._key(key))
        try:
            return response["Body"].read()
        except Exception as exc:  # a connection dropped mid-body
            raise StorageUnavailable(f"S3 get failed while reading {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        self._call("delete", self.client.delete_object, Key=self._key(key))

    def delete_many(self, keys: list[str]) -> None:
        """Up to 1,000 keys per request (S3's limit): a prune's batch is one call, not a thousand."""
        for start in range(0, len(keys), S3_DELETE_LIMIT):
            chunk = keys[start:start + S3_DELETE_LIMIT]
            response = self._call("delete", self.client.delete_objects, Delete={
                "Objects": [{"Key": self._key(key)} for key in chunk], "Quiet": True})
            if errors := response.get("Errors"):
                raise StorageUnavailable(f"S3 delete failed for {len(errors)} of {len(chunk)} objects: "
                                         f"{errors[0].get('Code')} {errors[0].get('Key')}")

    def exists(self, key: str) -> bool:
        try:
            self._call("head", self.client.head_object, Key=self._key(key))
            return True
        except ObjectNotFound:
            return False

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    yield StoredObject(item["Key"][len(self.prefix):], item["Size"], item["LastModified"])
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"S3 list failed: {exc}") from exc

    def check(self) -> None:
        self._call("head bucket", self.client.head_bucket)


def sync_filesystem(folder: Path) -> None:
    """Flush the file system holding ``folder`` to disk: syncfs(2) on Linux, else a full sync."""
    import ctypes

    descriptor = os.open(folder, os.O_RDONLY)
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None:
            os.sync()
        elif syncfs(descriptor) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        os.close(descriptor)


def create_store(config) -> ObjectStore:
    if config.get("S3_BUCKET"):
        return S3ObjectStore.from_config(config)
    return LocalObjectStore(config["LOCAL_STORAGE_PATH"])


def get_store() -> ObjectStore:
    return current_app.extensions["inkling.store"]
