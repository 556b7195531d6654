"""IDX reader/writer, the Fashion-MNIST loader and the preprocessing helpers.

The loader tests run on small IDX files written here, in an isolated environment (no
FASTNN_DATA, a temporary cache, no system directory), with the network replaced and with the
machine's commands replaced: nothing here ever opens a connection or runs apt-get or sudo, and a
test that lets the loader run a command it did not expect fails. One test reads the real data set
when Debian's package is installed.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
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


class FakeMachine:
    """The commands the loader may run, replaced: which exist (files on an otherwise empty
    PATH), whether we are root, whether there is a terminal, and what each command does
    (``subprocess.run`` records the call and answers from ``responses``; nothing runs)."""

    def __init__(self, monkeypatch, bindir):
        self.bindir = bindir
        self.calls = []
        self.responses = {}   # tuple(command) -> (exit status, output) or callable giving it
        monkeypatch.setenv("PATH", str(bindir))
        monkeypatch.delenv(fashion_mnist.NO_INSTALL_VAR, raising=False)
        monkeypatch.setattr(os, "geteuid", lambda: self.euid, raising=False)
        monkeypatch.setattr(fashion_mnist, "_has_terminal", lambda: self.terminal)
        monkeypatch.setattr(subprocess, "run", self.run)
        self.euid = 1000
        self.terminal = False

    def provide(self, *names):
        for name in names:
            exe = self.bindir / name
            exe.write_text("#!/bin/sh\nexit 99\n")
            exe.chmod(0o755)

    def run(self, args, **kwargs):
        command = tuple(args)
        self.calls.append(list(command))
        if command not in self.responses:
            raise AssertionError(f"the loader ran an unexpected command: {list(command)}")
        answer = self.responses[command]
        status, output = answer() if callable(answer) else answer
        return subprocess.CompletedProcess(list(command), status, output, None)


@pytest.fixture(autouse=True)
def machine(monkeypatch, tmp_path_factory):
    """No apt-get, no sudo, not root, no terminal, and no command may run unless a test says."""
    return FakeMachine(monkeypatch, tmp_path_factory.mktemp("bin"))


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
    for hint in ("FASTNN_DATA", "fashion_mnist.download()", "no apt-get here",
                 fashion_mnist.MIRRORS[0], "download=False", str(fashion_mnist.cache_dir())):
        assert hint in message
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        fashion_mnist.load_data(env / "partial", download=False)
    assert no_network == []


def test_offline_download_explains(env, no_network):
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data()
    message = str(info.value)
    for hint in ("FASTNN_DATA", "fashion_mnist.download()",
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


# --------------------------------------------------------------------------- installing with apt

APT_INSTALL = ["apt-get", "install", "-y", "dataset-fashion-mnist"]
NOT_FOUND = "Unable to locate package"


def installs_release(env, seed=5):
    """An apt-get that succeeds and puts a release in the (patched) system directory; returns
    the answer for FakeMachine and the arrays that load_data should then give."""
    arrays = {}

    def answer():
        arrays["want"] = make_release(env / "system", seed=seed)
        return 0, "Setting up dataset-fashion-mnist (1.0-2) ...\n"

    return answer, arrays


def test_installs_with_apt_as_root(env, machine, no_network, capsys):
    machine.provide("apt-get")
    machine.euid = 0
    answer, arrays = installs_release(env)
    machine.responses[tuple(APT_INSTALL)] = answer
    got = fashion_mnist.load_data()
    assert machine.calls == [APT_INSTALL]
    assert_same(got, arrays["want"])
    assert no_network == []
    err = capsys.readouterr().err.splitlines()
    assert err == ["fastnn: Fashion-MNIST not found; installing it with "
                   "`apt-get install -y dataset-fashion-mnist`"]
    # Installed: the next load finds the files without running anything.
    machine.calls.clear()
    assert_same(fashion_mnist.load_data(), arrays["want"])
    assert machine.calls == []


def test_installs_with_passwordless_sudo(env, machine, no_network, capsys):
    machine.provide("apt-get", "sudo")
    answer, arrays = installs_release(env)
    machine.responses[("sudo", "-n", "true")] = (0, "")
    machine.responses[("sudo", "-n", *APT_INSTALL)] = answer
    assert_same(fashion_mnist.load_data(), arrays["want"])
    assert machine.calls == [["sudo", "-n", "true"], ["sudo", "-n", *APT_INSTALL]]
    assert "`sudo -n apt-get install -y dataset-fashion-mnist`" in capsys.readouterr().err
    assert no_network == []


def test_apt_get_update_when_the_package_is_unknown(env, machine, capsys):
    machine.provide("apt-get")
    machine.euid = 0
    answer, arrays = installs_release(env)
    unknown = (100, f"Reading package lists...\nE: {NOT_FOUND} dataset-fashion-mnist\n")
    answers = iter([lambda: unknown, answer])       # unknown first, known after the update
    machine.responses[tuple(APT_INSTALL)] = lambda: next(answers)()
    machine.responses[("apt-get", "update")] = (0, "Reading package lists... Done\n")
    assert_same(fashion_mnist.load_data(), arrays["want"])
    assert machine.calls == [APT_INSTALL, ["apt-get", "update"], APT_INSTALL]
    err = capsys.readouterr().err
    assert "running `apt-get update`" in err


def test_no_update_when_install_fails_otherwise(env, machine, no_network):
    machine.provide("apt-get")
    machine.euid = 0
    lock = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 7 (apt)"
    machine.responses[tuple(APT_INSTALL)] = (100, lock + "\n")
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data()
    assert machine.calls == [APT_INSTALL]
    assert lock in str(info.value)
    # The loader's own download came next.
    assert len(no_network) == len(fashion_mnist.MIRRORS)


def test_auto_never_asks_for_a_password(env, machine, no_network):
    machine.provide("apt-get", "sudo")
    machine.terminal = True
    machine.responses[("sudo", "-n", "true")] = (1, "")
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data()
    assert machine.calls == [["sudo", "-n", "true"]]
    message = str(info.value)
    assert "sudo needs a password" in message
    assert "    sudo apt-get install -y dataset-fashion-mnist\n" in message


def test_install_true_lets_sudo_ask_at_a_terminal(env, machine, capsys):
    machine.provide("apt-get", "sudo")
    machine.terminal = True
    answer, arrays = installs_release(env)
    machine.responses[("sudo", "-n", "true")] = (1, "")
    machine.responses[("sudo", *APT_INSTALL)] = answer
    assert_same(fashion_mnist.load_data(install=True), arrays["want"])
    assert machine.calls == [["sudo", "-n", "true"], ["sudo", *APT_INSTALL]]
    assert "may ask for your password" in capsys.readouterr().err


def test_install_true_without_a_terminal(env, machine):
    machine.provide("apt-get", "sudo")
    machine.responses[("sudo", "-n", "true")] = (1, "")
    with pytest.raises(FileNotFoundError, match="no terminal to ask for it"):
        fashion_mnist.load_data(install=True)
    assert machine.calls == [["sudo", "-n", "true"]]


@pytest.mark.parametrize("install, no_install, why", [
    (False, None, "install=False"),
    ("auto", "1", "FASTNN_NO_INSTALL=1"),
    (True, "yes", "FASTNN_NO_INSTALL=yes"),
])
def test_install_disabled(env, machine, monkeypatch, no_network, capsys, install, no_install,
                          why):
    machine.provide("apt-get", "sudo")
    machine.euid = 0
    if no_install:
        monkeypatch.setenv("FASTNN_NO_INSTALL", no_install)
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data(install=install)
    assert machine.calls == []
    assert f"installing Debian's dataset-fashion-mnist package: not tried ({why})" \
        in str(info.value)
    assert "installing" not in capsys.readouterr().err
    assert len(no_network) == len(fashion_mnist.MIRRORS)     # the download was still tried


@pytest.mark.parametrize("value", ["", "0", "no"])
def test_no_install_variable_off_values(env, machine, monkeypatch, value):
    machine.provide("apt-get")
    machine.euid = 0
    monkeypatch.setenv("FASTNN_NO_INSTALL", value)
    answer, arrays = installs_release(env)
    machine.responses[tuple(APT_INSTALL)] = answer
    assert_same(fashion_mnist.load_data(), arrays["want"])
    assert machine.calls == [APT_INSTALL]


def test_no_install_when_files_are_found_or_path_given(env, machine, no_network):
    machine.provide("apt-get")
    machine.euid = 0
    want = make_release(fashion_mnist.cache_dir())
    assert_same(fashion_mnist.load_data(install=True), want)
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data(env / "elsewhere", install=True)
    assert machine.calls == []
    assert "installing" not in str(info.value)


def test_install_without_apt_get_is_skipped(env, machine, no_network):
    machine.provide("sudo")
    machine.euid = 0
    with pytest.raises(FileNotFoundError, match="no apt-get here"):
        fashion_mnist.load_data(install=True)
    assert machine.calls == []


def test_installed_but_files_elsewhere_falls_back_to_download(env, machine, monkeypatch):
    machine.provide("apt-get")
    machine.euid = 0
    machine.responses[tuple(APT_INSTALL)] = (0, "dataset-fashion-mnist is already the newest\n")
    want, files, sums = release_bytes(env)
    monkeypatch.setattr(fashion_mnist, "CHECKSUMS", sums)
    calls = serve(monkeypatch, files)
    assert_same(fashion_mnist.load_data(), want)
    assert machine.calls == [APT_INSTALL] and len(calls) == 4


def test_error_when_everything_fails(env, machine, monkeypatch, no_network):
    machine.provide("apt-get", "sudo")
    mine = env / "mine"
    monkeypatch.setenv("FASTNN_DATA", str(mine))
    machine.responses[("sudo", "-n", "true")] = (0, "")
    unknown = f"E: {NOT_FOUND} dataset-fashion-mnist"
    machine.responses[("sudo", "-n", *APT_INSTALL)] = (100, unknown + "\n")
    machine.responses[("sudo", "-n", "apt-get", "update")] = (
        100, "Err:1 http://deb.debian.org/debian bookworm InRelease\n"
             "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease\n")
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data()
    message = str(info.value)
    # Every directory searched, in order, each on its own line.
    searched = [str(mine), str(fashion_mnist.cache_dir()), str(env / "system")]
    lines = message.splitlines()
    positions = [lines.index("    " + d) for d in searched]
    assert positions == sorted(positions)
    # What was tried and how it failed.
    assert unknown in message and "E: Failed to fetch" in message
    assert "exit status 100" in message
    assert "network disabled in tests" in message
    # The exact command that fixes it, alone on its line: apt's lists need refreshing first.
    assert "    sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist" in lines
    assert machine.calls == [["sudo", "-n", "true"], ["sudo", "-n", *APT_INSTALL],
                             ["sudo", "-n", "apt-get", "update"]]


def test_package_missing_from_apt_sources(env, machine):
    machine.provide("apt-get")
    machine.euid = 0
    unknown = (100, f"E: {NOT_FOUND} dataset-fashion-mnist\n")
    machine.responses[tuple(APT_INSTALL)] = unknown
    machine.responses[("apt-get", "update")] = (0, "Reading package lists... Done\n")
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data(download=False)
    assert machine.calls == [APT_INSTALL, ["apt-get", "update"], APT_INSTALL]
    message = str(info.value)
    assert "apt's sources do not offer dataset-fashion-mnist" in message
    assert "    apt-get install -y dataset-fashion-mnist" in message.splitlines()


def test_error_command_as_root(env, machine):
    machine.provide("apt-get")
    machine.euid = 0
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data(install=False, download=False)
    assert "    apt-get install -y dataset-fashion-mnist" in str(info.value).splitlines()


def test_install_argument_is_checked(env):
    with pytest.raises(ValueError, match="install must be 'auto', True or False, got 'yes'"):
        fashion_mnist.load_data(install="yes")


def test_failed_command_does_not_stop_the_loader(env, machine, monkeypatch, no_network):
    machine.provide("apt-get")
    machine.euid = 0

    def vanished():
        raise FileNotFoundError(2, "No such file or directory", "apt-get")

    machine.responses[tuple(APT_INSTALL)] = vanished
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_data()
    assert "could not run" in str(info.value)
    assert len(no_network) == len(fashion_mnist.MIRRORS)


def test_apt_runs_without_input_in_the_c_locale(env, machine, monkeypatch):
    """The real subprocess.run arguments: no stdin (nothing can wait for an answer), output
    captured, English messages (to recognise an unknown package)."""
    seen = {}

    def record(args, **kwargs):
        seen.update(kwargs)
        return subprocess.CompletedProcess(args, 0, "", None)

    monkeypatch.setattr(subprocess, "run", record)
    assert fashion_mnist._run(APT_INSTALL) == (0, "")
    assert seen["stdin"] is subprocess.DEVNULL and seen["stdout"] is subprocess.PIPE
    assert seen["env"]["LC_ALL"] == "C"
    assert seen["env"]["DEBIAN_FRONTEND"] == "noninteractive"
    assert seen["timeout"] == fashion_mnist.INSTALL_TIMEOUT


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
