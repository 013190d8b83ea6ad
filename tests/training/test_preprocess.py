"""The one preprocessing path, on every kind of drawing canvases and people hand over."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench.corpus import data_url, encode
from training.devset import render
from training.preprocess import (
    EmptyDrawing, ImageTooLarge, InvalidEncoding, UnsupportedImage, preprocess, to_model_input,
)




def seven(size=(280, 280), *, ink=(0, 0, 0), paper=(255, 255, 255), width=18, box=None, mode="RGB"):
    """A hand-drawn-looking 7 inside ``box`` (left, top, right, bottom) of a canvas."""
    image = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(image)
    side = min(size)
    cx, cy = size[0] / 2, size[1] / 2
    left, top, right, bottom = box or (cx - 0.2 * side, cy - 0.3 * side, cx + 0.2 * side, cy + 0.3 * side)
    draw.line([(left, top), (right, top), (left + (right - left) * 0.35, bottom)], fill=ink, width=width,
              joint="curve")
    return image


def digit_stats(pixels: np.ndarray):
    ink = pixels.astype(np.float64)
    ys, xs = np.indices(ink.shape)
    com = ((ys * ink).sum() / ink.sum(), (xs * ink).sum() / ink.sum())
    rows = np.flatnonzero(pixels.max(axis=1) > 0)
    cols = np.flatnonzero(pixels.max(axis=0) > 0)
    return com, (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_output_is_mnist_like(mnist):
    result = preprocess(encode(seven()))
    assert result.pixels.shape == (28, 28) and result.pixels.dtype == np.uint8
    assert result.pixels.max() == 255 and result.pixels[0].max() == 0  # white on black, margins empty
    (cy, cx), (height, width) = digit_stats(result.pixels)
    assert abs(cy - 14) <= 0.6 and abs(cx - 14) <= 0.6
    assert max(height, width) in (19, 20, 21, 22)  # 20 px box, give or take the anti-aliased edge
    assert result.array.dtype == np.float32 and 0 <= result.array.min() and result.array.max() == 1.0


def test_mnist_digits_survive_the_round_trip(mnist):
    # A digit that already is MNIST-normalised should come back (nearly) as it was.
    scores = []
    for digit in mnist.x_test[:50]:
        result = preprocess(encode(Image.fromarray(digit)))
        scores.append(similarity(result.pixels, digit))
    assert np.median(scores) > 0.9 and min(scores) > 0.7


@pytest.mark.parametrize("variant", [
    "transparent_black", "transparent_colour", "inverted", "coloured_on_grey", "jpeg", "webp",
    "grey_paper_light_ink",
])
def test_polarity_colour_and_format_do_not_change_the_digit(variant):
    reference = preprocess(encode(seven())).pixels
    if variant == "transparent_black":
        data = encode(seven(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA"))
    elif variant == "transparent_colour":
        data = encode(seven(ink=(30, 144, 255, 255), paper=(255, 255, 255, 0), mode="RGBA"))
    elif variant == "inverted":
        data = encode(seven(ink=(255, 255, 255), paper=(0, 0, 0)))
    elif variant == "coloured_on_grey":
        data = encode(seven(ink=(200, 30, 30), paper=(170, 170, 170)))
    elif variant == "jpeg":
        data = encode(seven(paper=(235, 235, 230)), "JPEG", quality=35)
    elif variant == "webp":
        data = encode(seven(), "WEBP", quality=60)
    else:
        data = encode(seven(ink=(230, 230, 230), paper=(60, 60, 60)))
    assert similarity(preprocess(data).pixels, reference) > 0.95


@pytest.mark.parametrize("size", [(128, 128), (280, 280), (600, 300), (300, 600), (1000, 700)])
def test_any_canvas_size_and_aspect(size):
    result = preprocess(encode(seven(size, width=max(3, min(size) // 16))))
    (cy, cx), (height, width) = digit_stats(result.pixels)
    assert abs(cy - 14) <= 0.6 and abs(cx - 14) <= 0.6
    assert max(height, width) in (19, 20, 21, 22)
    assert similarity(result.pixels, preprocess(encode(seven())).pixels) > 0.9


def test_position_on_the_canvas_does_not_matter():
    centred = preprocess(encode(seven((600, 300), box=(250, 60, 350, 240), width=14))).pixels
    corner = preprocess(encode(seven((600, 300), box=(480, 110, 580, 290), width=14))).pixels
    assert similarity(centred, corner) > 0.98


def test_tiny_digit_is_scaled_up():
    tiny = preprocess(encode(seven((400, 400), box=(200, 200, 214, 221), width=2)))
    (_, _), (height, _) = digit_stats(tiny.pixels)
    assert height >= 19
    assert similarity(tiny.pixels, preprocess(encode(seven())).pixels) > 0.85


@pytest.mark.parametrize("width", [1, 2, 70])
def test_very_thin_and_very_thick_strokes_are_brought_to_mnist_width(width):
    result = preprocess(encode(seven((400, 400), width=width)))
    strong = (result.pixels > 127).sum()
    # 98% of MNIST digits have 50-250 pixels above half intensity; a hairline would have ~20
    # and this marker ~300 if their strokes were not normalised.
    assert 60 <= strong <= 260, strong
    assert similarity(result.pixels, preprocess(encode(seven((400, 400)))).pixels) > 0.75


def test_stray_specks_away_from_the_digit_are_ignored():
    clean = seven((600, 300), box=(250, 60, 350, 240), width=14)
    specked = clean.copy()
    draw = ImageDraw.Draw(specked)
    for x, y in [(30, 30), (560, 270), (50, 250)]:
        draw.ellipse([x - 6, y - 6, x + 6, y + 6], fill=(0, 0, 0))
    assert similarity(preprocess(encode(specked)).pixels, preprocess(encode(clean)).pixels) > 0.98


def test_a_detached_stroke_near_the_digit_is_kept():
    # A 5 drawn in two strokes: the top bar does not touch the body.
    image = Image.new("RGB", (300, 300), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(110, 60), (200, 60)], fill="black", width=14)
    draw.line([(110, 80), (105, 140), (190, 150), (195, 220), (100, 240)], fill="black", width=14, joint="curve")
    pixels = preprocess(encode(image)).pixels
    assert pixels[4:9].max() > 200  # the bar is still at the top of the digit


def test_canvas_like_devset_drawings_all_preprocess():
    rng = np.random.default_rng(0)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a 1
    for variant in ("plain", "transparent", "inverted", "colour", "wide", "small_canvas", "tiny",
                    "thick", "thin", "stray_dot", "jpeg"):
        pixels = preprocess(render(digit, variant, rng)).pixels
        (cy, cx), (height, _) = digit_stats(pixels)
        assert abs(cy - 14) <= 0.6 and abs(cx - 14) <= 0.6, variant
        assert height >= 19, variant


def test_same_bytes_same_pixels():
    data = encode(seven(), "JPEG", quality=60)
    assert np.array_equal(preprocess(data).pixels, preprocess(data).pixels)
    assert np.array_equal(preprocess(data).pixels, preprocess(data_url(data, "image/jpeg")).pixels)
    assert np.array_equal(preprocess(data).pixels, preprocess(base64.b64encode(data).decode()).pixels)


def test_preview_png_shows_exactly_what_the_model_sees():
    result = preprocess(encode(seven()))
    assert result.preview_data_url.startswith("data:image/png;base64,")
    preview = np.asarray(Image.open(io.BytesIO(result.preview_png)))
    assert np.array_equal(preview, result.pixels)
    assert np.array_equal(to_model_input(result.pixels)[0, :, :, 0], result.array)


def test_a_bare_png_is_kept_as_sent():
    data = encode(seven())
    result = preprocess(data_url(data))
    assert result.upload.data == data and result.upload.mime == "image/png"
    assert (result.upload.width, result.upload.height) == (280, 280)


@pytest.mark.parametrize("fmt, mime", [("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_jpeg_and_webp_are_stored_as_their_pixels_alone(fmt, mime):
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x010E] = "Home, 12 Secret Road"
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 26.0)  # GPSLatitude
    options = {"exif": exif, "xmp": b"<x:xmpmeta>secret-xmp</x:xmpmeta>",
               "icc_profile": ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()}
    if fmt == "JPEG":
        options["comment"] = b"secret-comment"
    data = encode(seven(), fmt, **options) + b"<html><script>alert(1)</script></html>"
    result = preprocess(data_url(data, mime))
    stored = result.upload.data
    assert result.upload.mime == "image/png" and stored.startswith(b"\x89PNG")
    for secret in (b"Exif", b"Secret Road", b"secret-xmp", b"secret-comment", b"acsp", b"<html", b"<script"):
        assert secret not in stored, secret
    reread = Image.open(io.BytesIO(stored))
    assert not {"exif", "icc_profile", "xmp", "comment"} & set(reread.info)
    # The pixels the networks read, exactly: the same digit comes out of the stored copy.
    assert reread.convert("RGB").tobytes() == Image.open(io.BytesIO(data)).convert("RGB").tobytes()
    assert np.array_equal(preprocess(stored).pixels, result.pixels)
    assert (result.upload.width, result.upload.height) == (280, 280)


def test_a_cmyk_jpeg_is_stored_as_the_rgb_the_networks_read():
    data = encode(seven().convert("CMYK"), "JPEG")
    result = preprocess(data)
    stored = Image.open(io.BytesIO(result.upload.data))
    assert result.upload.mime == "image/png" and stored.mode == "RGB"
    assert stored.tobytes() == Image.open(io.BytesIO(data)).convert("RGB").tobytes()
    assert np.array_equal(preprocess(result.upload.data).pixels, result.pixels)


def test_sixteen_bit_and_palette_pngs_are_valid():
    grey16 = np.asarray(seven(mode="L", ink=0, paper=255), dtype=np.uint16) * 257
    result16 = preprocess(encode(Image.fromarray(grey16)))
    palette = seven().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    reference = preprocess(encode(seven())).pixels
    assert similarity(result16.pixels, reference) > 0.97
    assert similarity(preprocess(encode(palette)).pixels, reference) > 0.97


@pytest.mark.parametrize("image", [
    Image.new("RGBA", (280, 280), (0, 0, 0, 0)),  # an untouched canvas
    Image.new("RGB", (280, 280), "white"),
    Image.new("RGB", (600, 300), (128, 128, 128)),
    Image.new("L", (280, 280), 0),
])
def test_empty_canvas_is_nothing_drawn(image):
    with pytest.raises(EmptyDrawing, match="nothing is drawn") as error:
        preprocess(encode(image))
    assert error.value.status == 422


def test_blank_noisy_jpeg_is_nothing_drawn():
    rng = np.random.default_rng(1)
    paper = np.clip(rng.normal(220, 3, (300, 300, 3)), 0, 255).astype(np.uint8)
    with pytest.raises(EmptyDrawing):
        preprocess(encode(Image.fromarray(paper), "JPEG", quality=30))


@pytest.mark.parametrize("size", [(1, 1), (5000, 1), (3, 300)])
def test_degenerate_sizes_are_refused(size):
    with pytest.raises(UnsupportedImage) as error:
        preprocess(encode(Image.new("RGB", size, "white")))
    assert error.value.status == 415


def test_decompression_bomb_is_refused_from_its_header():
    bomb = encode(Image.new("L", (10_000, 10_000), 0))
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLarge) as error:
        preprocess(bomb)
    assert error.value.status == 413


def test_oversized_upload_is_refused_before_decoding():
    with pytest.raises(ImageTooLarge):
        preprocess(b"\x89PNG" + b"\0" * 100, max_bytes=50)
    with pytest.raises(ImageTooLarge):
        preprocess("data:image/png;base64," + "A" * 10_000, max_bytes=1_000)


@pytest.mark.parametrize("payload, error", [
    (b"hello, world", UnsupportedImage),
    (b"<html><script>alert(1)</script></html>", UnsupportedImage),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="5"/></svg>', UnsupportedImage),
    ("data:image/png;base64,!!!!", InvalidEncoding),
    ("data:image/png;base64,iVBORw0KGgo=junk", InvalidEncoding),
    ("data:image/png,iVBORw0KGgo=", InvalidEncoding),  # not base64-encoded
    ("data:text/html;base64,PGgxPg==", UnsupportedImage),
    ("data:image/png;base64,", InvalidEncoding),
    ("data:image/png;base64,QQ==", UnsupportedImage),
    ("QR==", InvalidEncoding),  # non-canonical: padding bits set
    (12345, InvalidEncoding),
])
def test_bad_payloads_are_clear_errors(payload, error):
    with pytest.raises(error) as raised:
        preprocess(payload)
    assert raised.value.message and 400 <= raised.value.status < 500


def test_formats_other_than_png_jpeg_webp_are_refused():
    gif = encode(seven().convert("P"), "GIF")
    with pytest.raises(UnsupportedImage):
        preprocess(gif)
    bmp = encode(seven(), "BMP")
    with pytest.raises(UnsupportedImage):
        preprocess(bmp)


def test_declared_type_must_match_the_data():
    jpeg = encode(seven(), "JPEG")
    with pytest.raises(UnsupportedImage, match="says image/png but the data is image/jpeg"):
        preprocess(data_url(jpeg, "image/png"))


def test_animated_png_is_refused():
    frames = [seven(), seven(ink=(255, 0, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedImage, match="animated"):
        preprocess(buffer.getvalue())


def test_truncated_png_is_refused():
    data = encode(seven())
    with pytest.raises(UnsupportedImage):
        preprocess(data[: len(data) // 2])


def test_to_model_input_shapes():
    batch = to_model_input(np.zeros((5, 28, 28), np.uint8))
    assert batch.shape == (5, 28, 28, 1) and batch.dtype == np.float32
    with pytest.raises(ValueError):
        to_model_input(np.zeros((27, 28), np.uint8))


def test_component_labelling_matches_a_flood_fill():
    from collections import deque

    from training.preprocess import _connected_components

    def flood_fill(occupied):
        labels, count = np.zeros(occupied.shape, int), 0
        for start in zip(*np.nonzero(occupied)):
            if labels[start]:
                continue
            count += 1
            labels[start], queue = count, deque([start])
            while queue:
                y, x = queue.popleft()
                for yy in (y - 1, y, y + 1):
                    for xx in (x - 1, x, x + 1):
                        if (0 <= yy < occupied.shape[0] and 0 <= xx < occupied.shape[1]
                                and occupied[yy, xx] and not labels[yy, xx]):
                            labels[yy, xx] = count
                            queue.append((yy, xx))
        return labels

    rng = np.random.default_rng(0)
    for _ in range(500):
        occupied = rng.random((rng.integers(1, 20), rng.integers(1, 20))) < rng.uniform(0.1, 0.7)
        ours, reference = _connected_components(occupied), flood_fill(occupied)
        assert ours.max() == reference.max()
        # The same partition: each of our parts maps to exactly one of the reference's.
        assert len(set(zip(ours[occupied].tolist(), reference[occupied].tolist()))) == ours.max()


@pytest.mark.parametrize("size, box", [
    ((280, 280), None),
    ((613, 299), (0, 0, 120, 298)),  # ink on the canvas's edges, sides not a whole number of cells
    ((397, 401), (300, 320, 396, 400)),  # in the last, partial cells
    ((600, 300), (250, 60, 350, 240)),
])
def test_the_ink_around_the_drawing_is_read_as_the_whole_canvas_would_be(size, box):
    from training.preprocess import _digit_ink, _ink_signal

    image = seven(size, box=box, width=9)
    ImageDraw.Draw(image).ellipse([3, size[1] - 12, 12, size[1] - 3], fill=(0, 0, 0))  # a speck in a corner
    for canvas in (image, Image.merge("RGBA", (*image.split(), image.convert("L").point(lambda v: 255 - v)))):
        signal, corner, canvas_size = _ink_signal(canvas)
        assert signal.size != canvas_size or box is None
        whole = Image.new("L", canvas_size)
        whole.paste(signal, corner)
        assert np.array_equal(_digit_ink(signal, corner, canvas_size), _digit_ink(whole, (0, 0), canvas_size))


def test_the_3x3_filter_matches_nine_shifted_copies_of_the_edge_padded_image():
    from training.preprocess import _filter3x3

    rng = np.random.default_rng(0)
    for _ in range(200):
        values = rng.random((rng.integers(1, 30), rng.integers(1, 30))).astype(np.float32)
        padded, (rows, cols) = np.pad(values, 1, mode="edge"), values.shape
        for reduce in (np.maximum, np.minimum):
            expected = reduce.reduce([padded[dy:dy + rows, dx:dx + cols] for dy in range(3) for dx in range(3)])
            assert np.array_equal(_filter3x3(values, reduce), expected)
