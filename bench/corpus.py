"""Hostile inputs, made in code and seeded: images, PNG bombs, a PNG mutator and bad request values."""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib
from dataclasses import dataclass, field

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(width: int, height: int, scanlines: bytes = b"", *, bit_depth: int = 8, colour_type: int = 0,
            extra: tuple[bytes, ...] = ()) -> bytes:
    """A PNG written by hand, so headers can say what Pillow would never write."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + b"".join(extra)
            + png_chunk(b"IDAT", zlib.compress(scanlines, 9)) + png_chunk(b"IEND", b""))


def digit_image(size: tuple[int, int] = (100, 100), mode: str = "RGB") -> Image.Image:
    """A black "1" on white paper: the smallest thing every endpoint accepts."""
    image = Image.new("RGB", size, "white")
    width, height = size
    image.paste((0, 0, 0), (width * 45 // 100, height // 5, width * 55 // 100, height * 4 // 5))
    return image.convert(mode) if mode != "RGB" else image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png16(colour_type: int) -> bytes:
    """A 16-bit grey (0) or RGB (2) PNG of the digit; Pillow cannot write 16-bit RGB itself."""
    grey = [[0 if 45 <= x < 55 and 20 <= y < 80 else 65535 for x in range(100)] for y in range(100)]
    channels = 1 if colour_type == 0 else 3
    rows = b"".join(b"\x00" + b"".join(struct.pack(">H", value) * channels for value in row) for row in grey)
    return raw_png(100, 100, rows, bit_depth=16, colour_type=colour_type)


def bomb_png(side: int = 10_000) -> bytes:
    """A small PNG whose header declares side x side RGB pixels of nothing (~300 KB for 10,000)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * side)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def text_bomb_png(chunks: int = 60) -> bytes:
    """A valid drawing carrying zTXt chunks that each inflate from ~1 KB to ~1 MB."""
    text = b"x" * 1_000_000
    ztxt = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(text, 9))
    valid = encode(digit_image())
    return valid[:33] + ztxt * chunks + valid[33:]


def animated_png() -> bytes:
    frames = [digit_image(), digit_image().rotate(20, fillcolor="white")]
    return encode(frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)


@dataclass(frozen=True)
class Case:
    """One hostile request. ``body`` is JSON (a dict with ``image``), or raw bytes with ``content_type``."""

    name: str
    body: object
    statuses: tuple[int, ...]
    content_type: str = "application/json"
    extra: dict = field(default_factory=dict)


def _noncanonical_b64(data: bytes) -> str:
    """Base64 of ``data`` with non-zero bits in the padding: lenient decoders accept it."""
    data = data + b"\x00" * ((1 - len(data)) % 3)  # a length of 3n + 1 ends in "x=="
    text = base64.b64encode(data).decode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return text[:-3] + alphabet[alphabet.index(text[-3]) | 1] + "=="


def bad_images() -> list[Case]:
    """Image payloads every image endpoint must refuse with a 4xx and store nothing."""
    valid = encode(digit_image())
    html = b"<!doctype html><html><script>alert(document.cookie)</script></html>"
    return _bad_encodings(valid) + _bad_image_data(valid, html) + _bad_bodies(valid, html)


def _bad_encodings(valid: bytes) -> list[Case]:
    """An ``image`` that is not a string, or not a well-formed data URL or base64: 400."""
    valid_b64 = b64(valid)
    noncanonical = _noncanonical_b64(valid)
    return [
        Case("image is null", {"image": None}, (400,)),
        Case("image is a number", {"image": 5}, (400,)),
        Case("image is true", {"image": True}, (400,)),
        Case("image is a list", {"image": [data_url(valid)]}, (400,)),
        Case("image is an object", {"image": {"data": valid_b64}}, (400,)),
        Case("image is empty", {"image": ""}, (400,)),
        Case("only a prefix", {"image": "data:image/png;base64,"}, (400,)),
        Case("base64 with @ signs", {"image": "data:image/png;base64,@@@@"}, (400,)),
        Case("base64 padded with junk", {"image": data_url(valid) + "!!junk!!"}, (400,)),
        Case("base64 then more after padding", {"image": data_url(valid) + "====QUJD"}, (400,)),
        Case("base64 with newlines", {"image": "data:image/png;base64," + "\n".join(
            valid_b64[i:i + 76] for i in range(0, len(valid_b64), 76))}, (400,)),
        Case("base64 missing its padding", {"image": "data:image/png;base64," + valid_b64.rstrip("=")
               + ("A" if len(valid_b64.rstrip("=")) % 4 == 1 else "")}, (400,)),
        Case("base64 with non-zero padding bits", {"image": "data:image/png;base64," + noncanonical}, (400,)),
        Case("urlsafe base64", {"image": "data:image/png;base64," + base64.urlsafe_b64encode(
            valid + b"\xfb\xff\xfe" * 3).decode()}, (400,)),
        Case("data URL not base64", {"image": "data:image/png," + "%89PNG"}, (400,)),
        Case("prefix without data:", {"image": "image/png;base64," + valid_b64}, (400,)),
        Case("prefix misspelt", {"image": "date:image/png;base64," + valid_b64}, (400,)),
        Case("prefix without comma", {"image": "data:image/png;base64" + valid_b64}, (400,)),
        Case("non-ASCII in base64", {"image": "data:image/png;base64," + valid_b64[:40] + "é" + valid_b64[41:]},
             (400,)),
    ]


def _bad_image_data(valid: bytes, html: bytes) -> list[Case]:
    """Well-encoded bytes that are not an accepted image (415), too large (413) or blank (422)."""
    jpeg, gif = encode(digit_image(), "JPEG"), encode(digit_image(), "GIF")
    bmp = encode(digit_image(), "BMP")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script><path d="M50 20v60"/></svg>'
    bad_crc = bytearray(valid)
    bad_crc[29] ^= 0xFF  # inside IHDR's CRC
    return [
        Case("HTML declared as HTML", {"image": data_url(html, "text/html")}, (415,)),
        Case("SVG declared as SVG", {"image": data_url(svg, "image/svg+xml")}, (415,)),
        Case("JPEG labelled PNG", {"image": data_url(jpeg)}, (415,)),
        Case("PNG labelled JPEG", {"image": data_url(valid, "image/jpeg")}, (415,)),
        Case("GIF labelled PNG", {"image": data_url(gif)}, (415,)),
        Case("GIF as bare base64", {"image": b64(gif)}, (415,)),
        Case("BMP labelled PNG", {"image": data_url(bmp)}, (415,)),
        Case("SVG labelled PNG", {"image": data_url(svg)}, (415,)),
        Case("HTML labelled PNG", {"image": data_url(html)}, (415,)),
        Case("text as bare base64", {"image": b64(b"hello world!")}, (415,)),
        Case("0x0 PNG", {"image": data_url(raw_png(0, 0))}, (415,)),
        Case("1x1 PNG", {"image": data_url(encode(Image.new("L", (1, 1), 0)))}, (415,)),
        Case("5000x1 PNG", {"image": data_url(encode(Image.new("L", (5000, 1), 0)))}, (415,)),
        Case("PNG cut in half", {"image": data_url(valid[: len(valid) // 2])}, (415,)),
        Case("PNG cut after IHDR", {"image": data_url(valid[:33])}, (415,)),
        Case("PNG signature only", {"image": data_url(PNG_SIGNATURE)}, (415,)),
        Case("PNG with a bad IHDR CRC", {"image": data_url(bytes(bad_crc))}, (415,)),
        Case("PNG with a bit depth of 3", {"image": data_url(raw_png(10, 10, b"\x00" * 40, bit_depth=3))},
             (415,)),
        Case("animated PNG", {"image": data_url(animated_png())}, (415,)),
        Case("blank canvas", {"image": data_url(encode(Image.new("RGBA", (280, 280), (0, 0, 0, 0))))}, (422,)),
        Case("10000x10000 bomb", {"image": data_url(bomb_png())}, (413,)),
    ]


def _bad_bodies(valid: bytes, html: bytes) -> list[Case]:
    """Request bodies that are not a JSON object or a form with an image file."""
    return [
        Case("body is not JSON", b"not json", (400,)),
        Case("body is a JSON array", b"[1, 2]", (400,)),
        Case("body is a JSON string", b'"' + data_url(valid).encode() + b'"', (400,)),
        Case("JSON sent as text/plain", b'{"image": "' + data_url(valid).encode() + b'"}', (400,),
             content_type="text/plain"),
        Case("JSON with a NaN", b'{"image": NaN, "label": 1}', (400,)),
        Case("multipart without the file",
             b"--x\r\nContent-Disposition: form-data; name=\"label\"\r\n\r\n1\r\n--x--\r\n",
             (400,), content_type="multipart/form-data; boundary=x"),
        Case("multipart HTML file", b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
             b"Content-Type: image/png\r\n\r\n" + html + b"\r\n--x\r\nContent-Disposition: form-data; name=\"label\""
             b"\r\n\r\n1\r\n--x--\r\n", (415,), content_type="multipart/form-data; boundary=x"),
    ]


BAD_LABELS = ["10", "-1", "٣", True, 3.0, -1, 10, None, [3], {"label": 3}, "7 ", "", "3.0", 1e308]

BAD_IDS = ["1", "../../etc/passwd", "drawings/ab/x.png", 5, True, ["x"], "{%s}", "urn:uuid:%s", "%s\n",
           "%s" + "0" * 300, "g" * 8 + "-aaaa-bbbb-cccc-" + "d" * 12]


def valid_images() -> list[tuple[str, bytes]]:
    """Unusual but valid PNGs: each endpoint accepts them."""
    palette = digit_image().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    transparent = Image.new("RGBA", (120, 120), (0, 0, 0, 0))
    transparent.paste((20, 20, 20, 255), (55, 20, 65, 100))
    return [
        ("16-bit grey PNG", png16(0)),
        ("16-bit RGB PNG", png16(2)),
        ("palette PNG", encode(palette)),
        ("palette PNG with transparency", encode(transparent.convert("P"), transparency=0)),
        ("1-bit PNG", encode(digit_image().convert("1"))),
        # Its text is dropped unread (it would inflate to 60 MB), and it is stored without it.
        ("PNG carrying a zTXt bomb", text_bomb_png()),
    ]


def script_trailer_png() -> bytes:
    return encode(digit_image()) + b"<html><script>alert(document.cookie)</script></html>"


# PNG mutation for fuzzing -----------------------------------------------------------------


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, offset = [], 8
    while offset + 8 <= len(data):
        length = struct.unpack(">I", data[offset:offset + 4])[0]
        kind = data[offset + 4:offset + 8]
        chunks.append((kind, data[offset + 8:offset + 8 + length]))
        offset += 12 + length
    return chunks


def _rebuild(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return PNG_SIGNATURE + b"".join(png_chunk(kind, body) for kind, body in chunks)


def fuzz_seeds() -> list[bytes]:
    """Small valid PNGs of every colour type and depth the mutations start from."""
    base = digit_image((64, 64))
    transparent = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    transparent.paste((0, 0, 0, 255), (28, 10, 36, 54))
    return [encode(base), encode(base.convert("L")), encode(base.convert("1")),
            encode(base.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)), encode(transparent),
            encode(base.convert("LA")), png16(0), encode(base, optimize=True), encode(base, compress_level=0)]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One seeded mutation of a PNG: raw byte damage, or chunk-level changes with valid CRCs."""
    kind = rng.randrange(10)
    try:
        return _mutate(data, rng, kind)
    except (IndexError, StopIteration, zlib.error, ValueError):  # an earlier mutation broke the chunks
        return _mutate(data, rng, 0)


def _mutate(data: bytes, rng: random.Random, kind: int) -> bytes:
    return _damage_bytes(data, rng, kind) if kind < 4 else _damage_chunks(data, rng, kind)


def _damage_bytes(data: bytes, rng: random.Random, kind: int) -> bytes:
    """Byte-level damage, blind to the PNG's structure."""
    out = bytearray(data)
    if kind == 0:  # flip bits anywhere
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(out))
            out[position] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == 1:  # overwrite a run with random bytes
        start = rng.randrange(len(out))
        for position in range(start, min(len(out), start + rng.randint(1, 16))):
            out[position] = rng.randrange(256)
        return bytes(out)
    if kind == 2:  # truncate
        return bytes(out[:rng.randrange(len(out))])
    return bytes(out) + rng.randbytes(rng.randint(1, 256))  # kind 3: append junk


def _damage_chunks(data: bytes, rng: random.Random, kind: int) -> bytes:
    """Chunk-level changes, CRCs recomputed so the decoder sees them."""
    out = bytearray(data)
    chunks = _chunks(data)
    if kind == 4:  # a header field set to an odd value, CRC recomputed so the decoder sees it
        header = bytearray(chunks[0][1])
        field_ = rng.choice([(0, 4), (4, 4), (8, 1), (9, 1), (10, 1), (11, 1), (12, 1)])
        value = rng.choice([0, 1, 2, 3, 7, 255, 65535, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 32)])
        header[field_[0]:field_[0] + field_[1]] = (value % (1 << (8 * field_[1]))).to_bytes(field_[1], "big")
        chunks[0] = (b"IHDR", bytes(header))
        return _rebuild(chunks)
    if kind == 5:  # damage the compressed image data but keep the CRC right
        index = next(i for i, (name, _) in enumerate(chunks) if name == b"IDAT")
        body = bytearray(chunks[index][1])
        for _ in range(rng.randint(1, 6)):
            if body:
                body[rng.randrange(len(body))] = rng.randrange(256)
        chunks[index] = (b"IDAT", bytes(body))
        return _rebuild(chunks)
    if kind == 6:  # insert a chunk: ancillary, critical-looking, or another frame's control
        name = rng.choice([b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"acTL", b"fcTL", b"PLTE", b"tRNS", b"sBIT",
                           b"gAMA", b"pHYs", b"eXIf", b"IHDR", b"IDAT", b"IEND", b"abCd"])
        body = rng.randbytes(rng.randint(0, 64))
        if name in (b"zTXt", b"iCCP") and rng.random() < 0.5:
            body = b"k\x00\x00" + zlib.compress(b"A" * rng.randint(1, 200_000))
        chunks.insert(rng.randint(1, len(chunks)), (name, body))
        return _rebuild(chunks)
    if kind == 7:  # drop, duplicate or reorder chunks
        if rng.random() < 0.4 and len(chunks) > 1:
            del chunks[rng.randrange(len(chunks))]
        elif rng.random() < 0.5:
            chunks.insert(rng.randrange(len(chunks) + 1), rng.choice(chunks))
        else:
            rng.shuffle(chunks)
        return _rebuild(chunks)
    if kind == 8:  # a chunk length that lies
        offset = 8
        for _ in range(rng.randrange(len(chunks))):
            offset += 12 + len(chunks[_][1])
        out[offset:offset + 4] = rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 31)]).to_bytes(4, "big")
        return bytes(out)
    return _recompress(chunks, rng)


def _recompress(chunks: list[tuple[bytes, bytes]], rng: random.Random) -> bytes:
    """Different scanlines re-compressed under the same header (wrong length, bad filter bytes)."""
    index = next(i for i, (name, _) in enumerate(chunks) if name == b"IDAT")
    raw = zlib.decompress(b"".join(body for name, body in chunks if name == b"IDAT"))
    raw = bytearray(raw[:rng.randrange(len(raw) + 1)] + rng.randbytes(rng.randint(0, 64)))
    for _ in range(rng.randint(0, 4)):
        if raw:
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    chunks = [chunk for chunk in chunks if chunk[0] != b"IDAT"]
    chunks.insert(index, (b"IDAT", zlib.compress(bytes(raw))))
    return _rebuild(chunks)


def fuzz_payloads(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    seeds = fuzz_seeds()
    payloads = []
    for _ in range(count):
        data = rng.choice(seeds)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data = mutate(data, rng) if len(data) > 8 else data
        payloads.append(data)
    return payloads


# Hostile requests beyond images -----------------------------------------------------------


def deep_json_bodies(depth: int = 5000) -> list[tuple[str, bytes]]:
    """JSON bodies nested far deeper than any request needs: the decoder would recurse per level."""
    return [
        ("deep arrays", b"[" * depth + b"]" * depth),
        ("deep objects", b'{"a":' * depth + b"1" + b"}" * depth),
        ("deep inside a valid key", b'{"image": ' + b"[" * depth + b"]" * depth + b', "label": 1}'),
        ("deep and never closed", b"[" * depth),
        ("deep mixed", b'[{"a":' * (depth // 2) + b"0" + b"}]" * (depth // 2)),
    ]


# What a strict integer parameter refuses: Unicode digits (str.isdigit() says yes, int() may not),
# full-width and Arabic-Indic digits (int() reads them), signs, spaces, exponents, and numbers
# too long for int() (it refuses more than 4,300 digits with a ValueError).
BAD_INTEGERS = ["²", "１２", "٣", "½", "Ⅻ", "1e3", "+1", " 1", "1 ", "-0", "-1", "0x1", "1.0", "1_0", "1\n",
                "\x00", "9" * 30, "9" * 5000]

# Dates for the admin filters that are not a plain YYYY-MM-DD, or have no next day.
BAD_DATES = ["２０２６-１１-２５", "2026-11-2٥", "20261125", "2026-W48-3", "9999-12-31", "2026-02-30", " 2026-11-25"]

# ?next= targets with control characters and backslashes: browsers drop tabs and newlines and
# read "\" as "/", so each of these may turn into "//evil.example"; a newline in a Location
# header is a header injection (Werkzeug refuses it with an exception).
BAD_REDIRECTS = ["/\t/evil.example", "/\n/evil.example", "/\r\nSet-Cookie: x=1", "/\\evil.example", "\\\\evil.example",
                 "/\x00/evil.example", "/\x0b/evil.example", "/\x7f/evil.example", " //evil.example",
                 "/%09/evil.example", "\t//evil.example", "/admin/\x1b[31m"]


# What a photo or an edited image carries besides its pixels, each with a marker to look for.
SECRETS = {"exif": b"Home, 12 Secret Road", "gps": b"N", "comment": b"secret-comment", "xmp": b"secret-xmp-packet",
           "icc": b"acsp", "trailer": b"<html><script>alert(document.cookie)</script></html>"}


def with_metadata(fmt: str) -> bytes:
    """The digit as a JPEG or WebP carrying EXIF with a GPS position, ICC, XMP, a comment (JPEG) and
    an HTML trailer: what a phone photo carries, and a polyglot."""
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x010E] = SECRETS["exif"].decode()  # ImageDescription
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (51.0, 30.0, 26.0)  # GPSLatitudeRef, GPSLatitude
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    options = {"exif": exif, "icc_profile": icc, "xmp": b"<x:xmpmeta>" + SECRETS["xmp"] + b"</x:xmpmeta>"}
    if fmt == "JPEG":
        options["comment"] = SECRETS["comment"]
    return encode(digit_image(), fmt, **options) + SECRETS["trailer"]
