"""Quick, Draw!'s strokes without Flask: its ndjson read, drawn as the pad draws, and simplified for export."""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from webapp.formats import FormatError, Item, class_name

# The pad's canvas (webapp/static/js/canvas.js): 320 px, black ink 1/14 of its width on white paper.
CANVAS = 320
PEN = CANVAS / 14
# Quick, Draw!'s simplified data: ink fitted into 0..255, strokes simplified with RDP at 2.0.
QUICKDRAW_SCALE = 255
RDP_EPSILON = 2.0
MAX_STROKES = 200
MAX_POINTS = 20_000
MAX_LINE_BYTES = 1 << 20
UNKNOWN_COUNTRY = "ZZ"  # CLDR's "unknown region": Inkling does not know where anyone is


class NdjsonReader:
    """Quick, Draw! ndjson (raw or simplified), one file or a zip of them (as the export writes)."""

    def __init__(self, path: Path, *, classes: Sequence[str], render):
        self.path, self.classes, self.render = Path(path), classes, render
        try:
            self.zip = zipfile.ZipFile(path) if zipfile.is_zipfile(path) else None
        except (zipfile.BadZipFile, OSError) as exc:
            raise FormatError(f"not a complete zip archive: {exc}") from None

    def _lines(self) -> Iterator[tuple[str, bytes]]:
        """Each non-blank line with where it is; read at most MAX_LINE_BYTES at a time, so one huge line
        cannot fill memory. A file cut short ends in a line that is not JSON."""
        members = [name for name in self.zip.namelist() if name.endswith(".ndjson")] if self.zip else [None]
        for name in members:
            with (self.zip.open(name) if name else open(self.path, "rb")) as handle:
                where, number = name or self.path.name, 0
                while line := handle.readline(MAX_LINE_BYTES + 1):
                    number += 1
                    if len(line) > MAX_LINE_BYTES:
                        raise FormatError(f"{where} line {number} is longer than {MAX_LINE_BYTES:,} bytes")
                    if line.strip():
                        yield f"{where} line {number}", line

    def _parse(self, where: str, line: bytes) -> tuple[str, list]:
        try:
            record = json.loads(line)
        except ValueError:
            raise FormatError(f"{where} is not JSON") from None
        if not isinstance(record, dict) or "word" not in record or "drawing" not in record:
            raise FormatError(f"{where} needs 'word' and 'drawing'")
        return class_name(record["word"], self.classes, where), check_strokes(record["drawing"], where)

    def check(self) -> int:
        count = 0
        try:
            for where, line in self._lines():
                self._parse(where, line)
                count += 1
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise FormatError(f"the file is damaged: {exc}") from None
        return count

    def __iter__(self) -> Iterator[Item]:
        for where, line in self._lines():
            label, strokes = self._parse(where, line)
            png = render_strokes(strokes)
            yield Item(self.render(png, where), label, image=png, strokes=strokes)


def check_strokes(drawing, where: str) -> list[list[list[float]]]:
    """Quick, Draw! strokes ``[[x...], [y...](, [t...])]``, checked: finite numbers, matching lengths."""
    if not isinstance(drawing, list) or not 0 < len(drawing) <= MAX_STROKES:
        raise FormatError(f"{where}: 'drawing' must be a list of 1 to {MAX_STROKES} strokes")
    points = 0
    for stroke in drawing:
        if not (isinstance(stroke, list) and len(stroke) in (2, 3)
                and all(isinstance(axis, list) and len(axis) == len(stroke[0]) > 0 for axis in stroke)):
            raise FormatError(f"{where}: each stroke is [[x...], [y...]] with as many x as y")
        for axis in stroke:
            if not all(type(value) in (int, float) and math.isfinite(value) for value in axis):
                raise FormatError(f"{where}: stroke coordinates must be finite numbers")
        points += len(stroke[0])
    if points > MAX_POINTS:
        raise FormatError(f"{where}: more than {MAX_POINTS:,} points")
    return drawing


def render_strokes(strokes: list) -> bytes:
    """Strokes drawn as the pad draws them (black round-capped ink on a white 320 px canvas), as a PNG."""
    xs = [value for stroke in strokes for value in stroke[0]]
    ys = [value for stroke in strokes for value in stroke[1]]
    left, top = min(xs), min(ys)
    span = max(max(xs) - left, max(ys) - top, 1e-9)
    scale = (CANVAS - 4 * PEN) / span
    offset_x = (CANVAS - (max(xs) - left) * scale) / 2
    offset_y = (CANVAS - (max(ys) - top) * scale) / 2
    image = Image.new("L", (CANVAS, CANVAS), 255)
    draw = ImageDraw.Draw(image)
    radius = PEN / 2
    for stroke in strokes:
        points = [(offset_x + (x - left) * scale, offset_y + (y - top) * scale) for x, y in zip(stroke[0], stroke[1])]
        if len(points) > 1:
            draw.line(points, fill=0, width=round(PEN), joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def simplified_strokes(strokes: list) -> list[list[list[int]]]:
    """Quick, Draw!'s simplification: the ink's box moved to (0, 0) and fitted into 0..255 keeping its
    aspect, then each stroke simplified by Ramer-Douglas-Peucker with epsilon 2.0."""
    from simplification.cutil import simplify_coords

    xs = [value for stroke in strokes for value in stroke[0]]
    ys = [value for stroke in strokes for value in stroke[1]]
    left, top = min(xs), min(ys)
    span = max(max(xs) - left, max(ys) - top)
    scale = QUICKDRAW_SCALE / span if span > 0 else 1.0
    simplified = []
    for stroke in strokes:
        line = np.column_stack(((np.asarray(stroke[0], float) - left) * scale,
                                (np.asarray(stroke[1], float) - top) * scale))
        kept = np.asarray(simplify_coords(line, RDP_EPSILON)) if len(line) > 2 else line
        kept = np.rint(kept).astype(int)
        simplified.append([kept[:, 0].tolist(), kept[:, 1].tolist()])
    return simplified


def quickdraw_record(*, word: str, key_id: str, moment: datetime, recognized: bool, strokes: list) -> dict:
    """One line of Quick, Draw!'s simplified ndjson."""
    return {"word": word, "countrycode": UNKNOWN_COUNTRY, "timestamp": moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC"),
            "recognized": recognized, "key_id": key_id, "drawing": simplified_strokes(strokes)}


def canvas_strokes(strokes: list) -> list:
    """The pad's strokes (``{"x": [...], "y": [...], "t": [...]}`` each) as Quick, Draw!'s ``[[x...], [y...]]``."""
    return [[list(stroke["x"]), list(stroke["y"])] if isinstance(stroke, dict) else stroke for stroke in strokes]
