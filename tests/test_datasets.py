"""IDX reader/writer, the Fashion-MNIST loader and the preprocessing helpers.

The loader tests run on small IDX files written here, in an isolated environment (no
FASTNN_DATA, a temporary cache, no system directory) and with the network replaced: nothing here
ever opens a connection. One test reads the real data set when Debian's package is installed.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fastnn.datasets import (fashion_mnist, normalize, one_hot, parse_idx, preprocess,
                             read_idx, standardize, train_val_split, write_idx)

RELEASE_DIR = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- fixtures, helpers

@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every URL fails unless a test installs a fake server; calls are recorded."""
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return calls


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No FASTNN_DATA, the cache under tmp_path, a system directory under tmp_path."""
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (tmp_path / "system",))
    return tmp_path


def make_release(directory, n_train=12, n_test=5, *, gz=True, seed=0):
    """Write a small data set in the release's layout; return its arrays as load_data would."""
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for role, name in fashion_mnist.FILES.items():
        write_idx(directory / (name if gz else name[:-3]), arrays[role])
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def assert_same(got, want):
    (gx, gy), (gxt, gyt) = got
    (wx, wy), (wxt, wyt) = want
    for g, w in ((gx, wx), (gy, wy), (gxt, wxt), (gyt, wyt)):
        assert g.dtype == np.uint8
        np.testing.assert_array_equal(g, w)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def serve(monkeypatch, files, fail_prefixes=()):
    """Replace urlopen by a server of ``files`` (name -> bytes); URLs under ``fail_prefixes``
    fail as if offline. Returns the list of requested URLs."""
    calls = []

    def fake(url, *args, **kwargs):
        calls.append(url)
        if url.startswith(tuple(fail_prefixes)):
            raise urllib.error.URLError("unreachable")
        name = url.rsplit("/", 1)[1]
        if name not in files:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return io.BytesIO(files[name])

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return calls


def release_bytes(tmp_path, **kwargs):
    """The four files of a small release as bytes, and checksums for them."""
    src = tmp_path / "src"
    arrays = make_release(src, **kwargs)
    files = {name: (src / name).read_bytes() for name in fashion_mnist.FILES.values()}
    sums = {name: (md5(data), md5(gzip.decompress(data))) for name, data in files.items()}
    return arrays, files, sums


def leftovers(directory):
    return [p.name for p in Path(directory).iterdir() if p.name.endswith(".part")]


# --------------------------------------------------------------------------- IDX format

@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", "<i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("suffix", [".idx", ".idx.gz"])
def test_idx_roundtrip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(1)
    arr = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / ("a" + suffix), arr)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype).newbyteorder("=")
    assert got.dtype.isnative
    assert got.flags.writeable
    np.testing.assert_array_equal(got, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == suffix.endswith(".gz")
    assert leftovers(tmp_path) == []


def test_idx_byte_layout(tmp_path):
    arr = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    path = write_idx(tmp_path / "a.idx", arr)
    assert path.read_bytes() == (b"\x00\x00\x08\x02" + b"\x00\x00\x00\x02\x00\x00\x00\x03"
                                 + bytes([1, 2, 3, 4, 5, 6]))
    # Hand-made int16 file: values are big-endian on disk.
    data = b"\x00\x00\x0b\x01\x00\x00\x00\x02" + b"\x01\x02\xff\xfe"
    np.testing.assert_array_equal(parse_idx(data), np.array([0x0102, -2], dtype=np.int16))


def test_idx_gzip_recognised_by_content(tmp_path):
    arr = np.arange(10, dtype=np.int32)
    gz = write_idx(tmp_path / "a.gz", arr)
    renamed = gz.rename(tmp_path / "no-suffix")
    np.testing.assert_array_equal(read_idx(renamed), arr)
    np.testing.assert_array_equal(read_idx(str(renamed)), arr)


def good_idx() -> bytes:
    return b"\x00\x00\x08\x02\x00\x00\x00\x03\x00\x00\x00\x04" + bytes(range(12))


@pytest.mark.parametrize("data, message", [
    (b"", "shorter than its 4-byte magic"),
    (b"\x00\x00", "shorter than its 4-byte magic"),
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "magic number 0x01000801"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "unknown type code 0x07"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x03\x00\x00", "truncated IDX header"),
    (good_idx()[:-1], "truncated IDX file"),
    (good_idx()[:12], "truncated IDX file"),
    (good_idx() + b"\x00", "oversized IDX file"),
    (b"\x00\x00\x0d\x01\x00\x00\x00\x02" + b"\x00" * 7, "truncated IDX file"),
])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_rejects_malformed(tmp_path, data, message, compress):
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_valid_input_of_the_malformed_cases_reads():
    # The malformed cases above are cut from this file: it must itself be accepted.
    want = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(parse_idx(good_idx()), want)


@pytest.mark.parametrize("damage", ["truncate", "flip", "trailing"])
def test_idx_rejects_corrupt_gzip(tmp_path, damage):
    data = bytearray(gzip.compress(good_idx() * 50))
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip":
        data[-6] ^= 0xFF   # inside the CRC32 trailer
    else:
        data += b"garbage"
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt or truncated gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("arr, error", [
    (np.zeros(3, dtype=np.int64), TypeError),
    (np.zeros(3, dtype=np.uint16), TypeError),
    (np.zeros(3, dtype=bool), TypeError),
    (np.zeros(3, dtype=np.complex64), TypeError),
    (np.array(5, dtype=np.uint8), ValueError),
])
def test_write_idx_rejects(tmp_path, arr, error):
    with pytest.raises(error, match="write_idx"):
        write_idx(tmp_path / "a.idx.gz", arr)
    assert list(tmp_path.iterdir()) == []


def test_write_idx_failure_keeps_old_file(tmp_path, monkeypatch):
    path = write_idx(tmp_path / "a.idx", np.arange(4, dtype=np.uint8))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_idx(path, np.arange(8, dtype=np.uint8))
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- loader

def test_load_from_fastnn_data(env, monkeypatch):
    want = make_release(env / "mine")
    monkeypatch.setenv("FASTNN_DATA", str(env / "mine"))
    got = fashion_mnist.load_data()
    assert_same(got, want)
    assert got[0][0].shape == (12, 28, 28) and got[1][1].shape == (5,)


def test_load_uncompressed_files(env):
    want = make_release(env / "raw", gz=False)
    assert_same(fashion_mnist.load_data(env / "raw"), want)


def test_search_order(env, monkeypatch):
    system = make_release(env / "system", seed=1)
    assert_same(fashion_mnist.load_data(), system)
    cache = make_release(fashion_mnist.cache_dir(), seed=2)
    assert fashion_mnist.cache_dir() == env / "xdg" / "fastnn" / "fashion-mnist"
    assert_same(fashion_mnist.load_data(), cache)
    mine = make_release(env / "mine", seed=3)
    monkeypatch.setenv("FASTNN_DATA", str(env / "mine"))
    assert_same(fashion_mnist.load_data(), mine)
    explicit = make_release(env / "explicit", seed=4)
    assert_same(fashion_mnist.load_data(path=str(env / "explicit")), explicit)
    assert fashion_mnist.search_dirs() == [env / "mine", fashion_mnist.cache_dir(), env / "system"]


def test_default_cache_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert fashion_mnist.cache_dir() == tmp_path / ".cache" / "fastnn" / "fashion-mnist"


def test_incomplete_directory_is_skipped(env, monkeypatch):
    system = make_release(env / "system", seed=1)
    make_release(env / "mine", seed=3)
    (env / "mine" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("FASTNN_DATA", str(env / "mine"))
    assert_same(fashion_mnist.load_data(), system)


def test_missing_without_download(env, no_network):
    make_release(env / "partial")
    (env / "partial" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data(download=False)
    message = str(info.value)
    for hint in ("FASTNN_DATA", "apt-get install dataset-fashion-mnist",
                 fashion_mnist.MIRRORS[0], "download=False", str(fashion_mnist.cache_dir())):
        assert hint in message
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        fashion_mnist.load_data(env / "partial", download=False)
    assert no_network == []


def test_offline_download_explains(env, no_network):
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data()
    message = str(info.value)
    for hint in ("FASTNN_DATA", "apt-get install dataset-fashion-mnist",
                 fashion_mnist.MIRRORS[0], "network disabled in tests"):
        assert hint in message
    assert no_network == [m + "train-images-idx3-ubyte.gz" for m in fashion_mnist.MIRRORS]
    assert leftovers(fashion_mnist.cache_dir()) == []
    assert list(fashion_mnist.cache_dir().iterdir()) == []


def test_download_into_cache(env, monkeypatch, capsys):
    want, files, sums = release_bytes(env)
    monkeypatch.setattr(fashion_mnist, "CHECKSUMS", sums)
    calls = serve(monkeypatch, files)
    assert_same(fashion_mnist.load_data(), want)
    assert len(calls) == 4 and all(c.startswith(fashion_mnist.MIRRORS[0]) for c in calls)
    cache = fashion_mnist.cache_dir()
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)
    assert "downloading" in capsys.readouterr().err
    # Now cached: a second load reads the files without asking the network.
    calls.clear()
    assert_same(fashion_mnist.load_data(), want)
    assert calls == []


def test_download_falls_back_to_second_mirror(env, monkeypatch):
    want, files, sums = release_bytes(env)
    monkeypatch.setattr(fashion_mnist, "CHECKSUMS", sums)
    calls = serve(monkeypatch, files, fail_prefixes=[fashion_mnist.MIRRORS[0]])
    assert_same(fashion_mnist.load_data(), want)
    assert len(calls) == 8


def test_download_fetches_only_missing_files_into_path(env, monkeypatch):
    want, files, sums = release_bytes(env)
    monkeypatch.setattr(fashion_mnist, "CHECKSUMS", sums)
    target = env / "explicit"
    target.mkdir()
    (target / "train-labels-idx1-ubyte.gz").write_bytes(files["train-labels-idx1-ubyte.gz"])
    calls = serve(monkeypatch, files)
    assert_same(fashion_mnist.load_data(target), want)
    assert len(calls) == 3 and not any("train-labels" in c for c in calls)
    assert not fashion_mnist.cache_dir().exists()


def test_download_checksum_mismatch(env, monkeypatch):
    _, files, sums = release_bytes(env)
    monkeypatch.setattr(fashion_mnist, "CHECKSUMS", sums)
    tampered = dict(files)
    damaged = bytearray(files["train-images-idx3-ubyte.gz"])
    damaged[len(damaged) // 2] ^= 0x55
    tampered["train-images-idx3-ubyte.gz"] = bytes(damaged)
    serve(monkeypatch, tampered)
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        fashion_mnist.load_data()
    assert sums["train-images-idx3-ubyte.gz"][0] in str(info.value)
    cache = fashion_mnist.cache_dir()
    assert not (cache / "train-images-idx3-ubyte.gz").exists()
    assert leftovers(cache) == []


def test_public_download(env, monkeypatch):
    want, files, sums = release_bytes(env)
    monkeypatch.setattr(fashion_mnist, "CHECKSUMS", sums)
    serve(monkeypatch, files)
    assert fashion_mnist.download() == fashion_mnist.cache_dir()
    assert_same(fashion_mnist.load_data(download=False), want)


def test_verify(env, monkeypatch):
    want, files, sums = release_bytes(env)
    make_release(env / "mine")
    # The files are not the release: published checksums reject them.
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        fashion_mnist.load_data(env / "mine", verify=True)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert_same(fashion_mnist.load_data(env / "mine"), want)
    # A recompressed copy (other .gz bytes, same content) passes on the content's checksum.
    monkeypatch.setattr(fashion_mnist, "CHECKSUMS", {n: ("0" * 32, s[1]) for n, s in sums.items()})
    for name, data in files.items():
        (env / "mine" / name).write_bytes(gzip.compress(gzip.decompress(data), mtime=12345))
    assert_same(fashion_mnist.load_data(env / "mine", verify=True), want)
    # So does an uncompressed copy.
    make_release(env / "raw", gz=False)
    assert_same(fashion_mnist.load_data(env / "raw", verify=True), want)


@pytest.mark.parametrize("role, arr, message", [
    ("y_train", np.zeros(11, np.uint8), "holds 12 images but .* holds 11 labels"),
    ("y_test", np.full(5, 10, np.uint8), "label 10 is out of range"),
    ("x_train", np.zeros((12, 27, 28), np.uint8), r"shape \(12, 27, 28\)"),
    ("x_test", np.zeros((5, 28, 28), np.float32), "found float32"),
    ("y_train", np.zeros((12, 1), np.uint8), "labels of shape"),
])
def test_loader_rejects_inconsistent_files(env, role, arr, message):
    make_release(env / "mine")
    path = env / "mine" / fashion_mnist.FILES[role]
    write_idx(path, arr)
    with pytest.raises(ValueError, match=message) as info:
        fashion_mnist.load_data(env / "mine")
    assert str(path) in str(info.value)


def test_loader_reports_corrupt_file(env):
    make_release(env / "mine")
    path = env / "mine" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="corrupt or truncated gzip") as info:
        fashion_mnist.load_data(env / "mine")
    assert str(path) in str(info.value)


def test_class_names():
    assert len(fashion_mnist.CLASS_NAMES) == 10
    assert fashion_mnist.CLASS_NAMES[0] == "T-shirt/top"
    assert fashion_mnist.CLASS_NAMES[9] == "Ankle boot"


@pytest.mark.skipif(not all((RELEASE_DIR / n).is_file() for n in fashion_mnist.FILES.values()),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_release():
    (x, y), (xt, yt) = fashion_mnist.load_data(RELEASE_DIR, verify=True)
    assert x.shape == (60000, 28, 28) and y.shape == (60000,)
    assert xt.shape == (10000, 28, 28) and yt.shape == (10000,)
    for a in (x, y, xt, yt):
        assert a.dtype == np.uint8
    assert y.max() == 9 and yt.max() == 9
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), np.full(10, 1000))
    assert x.min() == 0 and x.max() == 255
    # The first training labels of the release.
    np.testing.assert_array_equal(y[:5], [9, 0, 0, 3, 0])


# --------------------------------------------------------------------------- preprocessing

def test_normalize_uint8():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = normalize(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    # Exactly what x / 255 gives in float32 (a multiplication by 1/255 differs in 126 of them).
    np.testing.assert_array_equal(out, x.astype(np.float32) / np.float32(255))
    assert out[0, 0] == 0.0 and out[-1, -1] == 1.0
    assert normalize(x, dtype=np.float64)[8, 0] == 128 / 255
    assert normalize(np.array([65535], np.uint16))[0] == 1.0


def test_normalize_explicit_range():
    x = np.array([-2.0, 0.0, 2.0, 4.0])
    np.testing.assert_allclose(normalize(x, -2, 2), [0.0, 0.5, 1.0, 1.5])
    with pytest.raises(TypeError, match="low= and high="):
        normalize(x)
    with pytest.raises(TypeError, match="both low and high"):
        normalize(x, low=0)
    with pytest.raises(ValueError, match="low < high"):
        normalize(x, 2, 2)
    with pytest.raises(TypeError, match="floating-point"):
        normalize(np.zeros(2, np.uint8), dtype=np.int32)


def test_standardize_global():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (50, 6, 7), dtype=np.uint8)
    xs, mean, std = standardize(x)
    assert xs.dtype == np.float32 and xs.shape == x.shape
    assert mean == pytest.approx(x.mean(dtype=np.float64), rel=1e-12)
    assert std == pytest.approx(x.std(dtype=np.float64), rel=1e-12)
    assert abs(xs.mean(dtype=np.float64)) < 1e-6
    assert xs.std(dtype=np.float64) == pytest.approx(1.0, rel=1e-5)
    other = rng.integers(0, 256, (5, 6, 7), dtype=np.uint8)
    os_, m2, s2 = standardize(other, mean, std)
    np.testing.assert_allclose(os_, (other - x.mean()) / x.std(), rtol=1e-5, atol=1e-5)
    assert m2 == mean and s2 == std


def test_standardize_per_feature_and_chunks(monkeypatch):
    monkeypatch.setattr(preprocess, "_CHUNK_ELEMENTS", 20)   # forces many chunks
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 4, 3)) * 5 + 100
    xs, mean, std = standardize(x, axis=0)
    assert xs.dtype == np.float64 and mean.shape == (4, 3) and std.shape == (4, 3)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(std, x.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(xs.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(xs.std(axis=0), 1, rtol=1e-12)
    _, gmean, gstd = standardize(x)
    assert gmean == pytest.approx(x.mean(), rel=1e-14) and gstd == pytest.approx(x.std(), rel=1e-12)


def test_standardize_constant_feature_and_errors():
    x = np.stack([np.arange(5.0), np.full(5, 3.0)], axis=1)
    xs, mean, std = standardize(x, axis=0)
    assert np.isfinite(xs).all()
    np.testing.assert_array_equal(xs[:, 1], 0.0)
    assert std[1] == 1.0
    with pytest.raises(TypeError, match="both mean and std"):
        standardize(x, mean=0.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        standardize(x, np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        standardize(x, 0.0, 0.0)
    with pytest.raises(ValueError, match="axis"):
        standardize(x, axis=1)
    with pytest.raises(ValueError, match="statistics"):
        standardize(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="floating-point"):
        standardize(x, dtype=np.int32)


def test_train_val_split():
    x = np.arange(100).reshape(50, 2)
    y = np.arange(50) * 3
    (xt, yt), (xv, yv) = train_val_split(x, y, 0.2, seed=7)
    assert len(xt) == 40 and len(xv) == 10
    np.testing.assert_array_equal(yt, xt[:, 0] // 2 * 3)       # pairs stay together
    np.testing.assert_array_equal(yv, xv[:, 0] // 2 * 3)
    assert sorted(np.concatenate([yt, yv]).tolist()) == y.tolist()  # disjoint and complete
    (_, yt2), (_, yv2) = train_val_split(x, y, 0.2, seed=7)
    np.testing.assert_array_equal(yv, yv2)
    np.testing.assert_array_equal(yt, yt2)
    (_, _), (_, yv3) = train_val_split(x, y, 0.2, seed=8)
    assert not np.array_equal(yv, yv3)
    assert not np.array_equal(yv, y[40:])   # shuffled, not the tail
    (xt4, _), (xv4, yv4) = train_val_split(x, y, 0.2, shuffle=False)
    np.testing.assert_array_equal(yv4, y[40:])
    np.testing.assert_array_equal(xt4, x[:40])


@pytest.mark.parametrize("kwargs, n, message", [
    ({"val_fraction": 0.0}, 10, "strictly between"),
    ({"val_fraction": 1.0}, 10, "strictly between"),
    ({"val_fraction": 0.01}, 10, "both need some"),
    ({"val_fraction": 0.99}, 10, "both need some"),
])
def test_train_val_split_errors(kwargs, n, message):
    with pytest.raises(ValueError, match=message):
        train_val_split(np.zeros((n, 2)), np.zeros(n), **kwargs)


def test_train_val_split_length_mismatch():
    with pytest.raises(ValueError, match="10 samples but y has 9"):
        train_val_split(np.zeros((10, 2)), np.zeros(9))


def test_one_hot():
    out = one_hot(np.array([2, 0, 1]), 4)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]])
    out2 = one_hot(np.array([[1, 3], [0, 2]], dtype=np.uint8), dtype=np.float64)
    assert out2.shape == (2, 2, 4) and out2.dtype == np.float64
    np.testing.assert_array_equal(out2.argmax(-1), [[1, 3], [0, 2]])
    np.testing.assert_array_equal(out2.sum(-1), 1)
    assert one_hot(np.zeros(0, np.int64), 3).shape == (0, 3)


@pytest.mark.parametrize("y, num_classes, error, message", [
    (np.array([0, 3]), 3, ValueError, "label 3 is out of range 0..2"),
    (np.array([0, -1]), 3, ValueError, "label -1"),
    (np.array([0.0, 1.0]), 2, TypeError, "integers"),
    (np.zeros(0, np.int64), None, ValueError, "empty"),
    (np.array([0]), 0, ValueError, "at least 1"),
])
def test_one_hot_errors(y, num_classes, error, message):
    with pytest.raises(error, match=message):
        one_hot(y, num_classes)
