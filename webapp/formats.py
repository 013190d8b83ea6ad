"""Dataset files read without Flask: npz, the product's zip and Quick, Draw!'s npy (its ndjson: quickdraw.py).

A reader checks its whole file first (``check``: structure, size, labels; cheap, nothing
decoded that need not be), so a truncated or mislabelled file is refused before anything is
stored, then yields :class:`Item` one at a time, holding at most a chunk of the file in memory.
"""

from __future__ import annotations

import csv
import io
import mmap
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMPORT_FORMATS = ("npz", "zip", "quickdraw-ndjson", "quickdraw-npy")
IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE
READ_ROWS = 1024


class FormatError(ValueError):
    """A file that is not what its format says (truncated, malformed, or with a label the set lacks)."""


@dataclass(frozen=True)
class Item:
    """One drawing read from a file: 28x28 uint8 pixels (white on black), its class, and what to store."""

    pixels: bytes
    label: str
    image: bytes | None = None  # the image to store; None: a PNG of the pixels
    holdout: bool | None = None  # None: decided as for any confirmation
    strokes: list | None = None  # Quick, Draw! strokes [[x...], [y...]] when the file had them


def class_name(value, classes: Sequence[str], where: str) -> str:
    """A class name from a name or an index into ``classes``."""
    text = str(value)
    if text in classes:
        return text
    if isinstance(value, (int, np.integer)) and 0 <= int(value) < len(classes):
        return classes[int(value)]
    raise FormatError(f"{where}: label {text[:40]!r} is not one of this label set's classes ({', '.join(classes)})")


class NpyReader:
    """Quick, Draw!'s numpy_bitmap: one class, (N, 784) uint8, white on black; memory-mapped.

    The pages of each block read are handed back to the kernel, so a 100,000-drawing file
    (78 MB) never sits in the process's memory whole.
    """

    def __init__(self, path: Path, *, label: str, classes: Sequence[str]):
        self.label = class_name(label, classes, Path(path).name)
        try:
            with open(path, "rb") as handle:
                shape, _, dtype = _npy_header(handle)
                self.offset = handle.tell()
                if dtype != np.uint8 or len(shape) != 2 or shape[1] != PIXELS:
                    raise FormatError(f"a quickdraw-npy file holds (N, 784) uint8 bitmaps, not {shape} {dtype}")
                self.rows = shape[0]
                if os.fstat(handle.fileno()).st_size < self.offset + self.rows * PIXELS:
                    raise FormatError(f"{Path(path).name} is cut short: its header promises {self.rows} bitmaps")
                self.map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if self.rows else None
        except (ValueError, OSError, EOFError) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"{Path(path).name} is not a complete .npy file: {exc}") from None

    def check(self) -> int:
        return self.rows

    def __iter__(self) -> Iterator[Item]:
        if not self.rows:
            return
        array = np.frombuffer(self.map, np.uint8, count=self.rows * PIXELS, offset=self.offset).reshape(-1, PIXELS)
        released = 0
        for start in range(0, self.rows, READ_ROWS):
            block = array[start:start + READ_ROWS].tobytes()
            for row in range(0, len(block), PIXELS):
                yield Item(block[row:row + PIXELS], self.label)
            done = (self.offset + (start + READ_ROWS) * PIXELS) // mmap.PAGESIZE * mmap.PAGESIZE
            if done > released and hasattr(self.map, "madvise"):
                self.map.madvise(mmap.MADV_DONTNEED, released, done - released)
                released = done


class NpzReader:
    """An MNIST-style .npz (the product's export): ``x`` (N, 28, 28) uint8, ``y``, optional ``holdout``."""

    def __init__(self, path: Path, *, classes: Sequence[str]):
        self.classes = classes
        try:
            self.zip = zipfile.ZipFile(path)
            self.y = self._small("y.npy")
            self.holdout = self._small("holdout.npy") if "holdout.npy" in self.zip.namelist() else None
            with self.zip.open("x.npy") as member:
                self.shape, _, self.dtype = _npy_header(member)
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
            raise FormatError(f"not a complete .npz with x and y: {exc}") from None
        if self.dtype != np.uint8 or self.shape[1:] not in ((IMAGE_SIZE, IMAGE_SIZE), (PIXELS,)):
            raise FormatError(f"x must be (N, 28, 28) uint8, not {self.shape} {self.dtype}")
        if self.y.shape != self.shape[:1] or (self.holdout is not None and self.holdout.shape != self.y.shape):
            raise FormatError(f"x holds {self.shape[0]} drawings but y {self.y.shape}")

    def _small(self, name: str) -> np.ndarray:
        with self.zip.open(name) as member:
            return np.lib.format.read_array(member, allow_pickle=False)

    def check(self) -> int:
        for index, value in enumerate(self.y):
            class_name(value.item(), self.classes, f"y[{index}]")
        # Reading x to its end checks its CRC: a damaged archive is refused before anything is stored.
        try:
            with self.zip.open("x.npy") as member:
                _npy_header(member)
                size = 0
                while block := member.read(1 << 20):
                    size += len(block)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise FormatError(f"x.npy is damaged: {exc}") from None
        if size != self.shape[0] * PIXELS:
            raise FormatError(f"x.npy holds {size} bytes of pixels, not {self.shape[0]} drawings")
        return int(self.shape[0])

    def __iter__(self) -> Iterator[Item]:
        with self.zip.open("x.npy") as member:
            _npy_header(member)
            for start in range(0, self.shape[0], READ_ROWS):
                count = min(READ_ROWS, self.shape[0] - start)
                block = member.read(count * PIXELS)
                for offset in range(count):
                    index = start + offset
                    holdout = None if self.holdout is None else bool(self.holdout[index])
                    yield Item(block[offset * PIXELS:(offset + 1) * PIXELS],
                               class_name(self.y[index].item(), self.classes, f"y[{index}]"), holdout=holdout)


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _npy_header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version not in _HEADER_READERS:
        raise ValueError(f"unsupported .npy version {version}")
    shape, fortran, dtype = _HEADER_READERS[version](member)
    if fortran:
        raise ValueError("Fortran-ordered arrays are not supported")
    return shape, fortran, dtype


class ZipReader:
    """The product's own zip export: ``<label>/<id>.png`` and manifest.csv (label, holdout, path)."""

    def __init__(self, path: Path, *, classes: Sequence[str]):
        self.classes = classes
        try:
            self.zip = zipfile.ZipFile(path)
            self.names = set(self.zip.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise FormatError(f"not a complete zip archive: {exc}") from None
        if "manifest.csv" not in self.names:
            raise FormatError("the zip has no manifest.csv: it is not a dataset export")

    def _rows(self) -> Iterator[dict]:
        with self.zip.open("manifest.csv") as member:
            reader = csv.DictReader(io.TextIOWrapper(member, encoding="utf-8", newline=""))
            if not {"label", "path"} <= set(reader.fieldnames or ()):
                raise FormatError("manifest.csv needs label and path columns")
            yield from reader

    def check(self) -> int:
        count = 0
        try:
            for count, row in enumerate(self._rows(), start=1):
                class_name(row["label"], self.classes, f"manifest.csv row {count}")
                if row["path"] not in self.names:
                    raise FormatError(f"manifest.csv row {count} names {row['path'][:80]!r}, which is not in the zip")
            if (bad := self.zip.testzip()) is not None:
                raise FormatError(f"{bad} is damaged")
        except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
            raise FormatError(f"the zip is damaged: {exc}") from None
        return count

    def __iter__(self) -> Iterator[Item]:
        for index, row in enumerate(self._rows(), start=1):
            png = self.zip.read(row["path"])
            try:
                with Image.open(io.BytesIO(png)) as image:
                    pixels = image.convert("L").tobytes() if image.size == (IMAGE_SIZE, IMAGE_SIZE) else b""
            except (OSError, ValueError) as exc:
                raise FormatError(f"{row['path']} is not a readable image: {exc}") from None
            if len(pixels) != PIXELS:
                raise FormatError(f"{row['path']} is not a 28x28 image")
            holdout = row.get("holdout")
            yield Item(pixels, class_name(row["label"], self.classes, f"manifest.csv row {index}"), image=png,
                       holdout=None if holdout in (None, "") else holdout == "1")
