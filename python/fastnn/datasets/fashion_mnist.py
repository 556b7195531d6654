"""Fashion-MNIST (Zalando Research): 70,000 grayscale 28x28 images of clothing in 10 classes.

``load_data()`` looks for the four IDX files of the published release, in this order:

1. ``$FASTNN_DATA`` (a directory holding the four files),
2. the cache, ``$XDG_CACHE_HOME/fastnn/fashion-mnist`` (by default
   ``~/.cache/fastnn/fashion-mnist``),
3. ``/usr/share/datasets/fashion-mnist``, where Debian's ``dataset-fashion-mnist`` package puts
   them.

The first directory holding all four is used. When none does:

* on Debian or Ubuntu (``apt-get`` exists), the package is installed with
  ``apt-get install -y dataset-fashion-mnist`` -- directly as root, through ``sudo -n`` when
  sudo works without a password -- after one line on stderr saying so; when apt does not know
  the package yet, ``apt-get update`` runs and the install is tried again. ``install=`` and
  ``$FASTNN_NO_INSTALL`` control this (see ``load_data``);
* otherwise, or when that fails, the files are downloaded into the cache and checked against the
  published MD5 checksums before they are kept.

When all of it fails, the error lists the directories searched, what was tried and the command
that fixes it. Each file may be gzip-compressed (``train-images-idx3-ubyte.gz``) or not
(``train-images-idx3-ubyte``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .idx import PathLike, gunzip, parse_idx, replace_atomically

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (28, 28)

# Role -> file name of the release.
FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}

# File name -> (MD5 of the .gz as published in the dataset's README, MD5 of its decompressed
# content). The second one identifies the data itself: repackagers recompress the files (Debian's
# copies carry a different gzip header, hence a different .gz checksum, around identical bytes).
CHECKSUMS = {
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                   "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe",
                                   "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79",
                                  "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310",
                                  "15d484375f8d13e6eb1aabb0c3f46965"),
}

# Tried in order: the authors' GitHub repository (HTTPS), then the download link of their README.
MIRRORS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)

SYSTEM_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
ENV_VAR = "FASTNN_DATA"
DOWNLOAD_TIMEOUT = 60.0

# Debian's package of the release; it installs the four .gz files into SYSTEM_DIRS[0].
PACKAGE = "dataset-fashion-mnist"
APT_INSTALL = ("apt-get", "install", "-y", PACKAGE)
APT_UPDATE = ("apt-get", "update")
NO_INSTALL_VAR = "FASTNN_NO_INSTALL"
# apt may first wait for another apt to release its lock, then fetch a 30 MB package.
INSTALL_TIMEOUT = 900.0

Arrays = Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]


def load_data(path: Optional[PathLike] = None, *, install: Union[bool, str] = "auto",
              download: bool = True, verify: bool = False) -> Arrays:
    """Return ``((x_train, y_train), (x_test, y_test))`` as uint8 arrays.

    Images have shape (n, 28, 28) with values 0..255, labels shape (n,) with values 0..9 (names
    in ``CLASS_NAMES``); the release has 60,000 training and 10,000 test samples.

    path: read from this directory only (no search, no install); missing files are downloaded
        into it.
    install: what to do when no searched directory holds the files, on a system with apt-get
        (Debian, Ubuntu): install Debian's ``dataset-fashion-mnist`` package, which puts them in
        /usr/share/datasets/fashion-mnist, announcing it with one line on stderr.
        ``"auto"`` (the default) installs only when that needs no password: running as root
        (``apt-get install -y dataset-fashion-mnist``) or with passwordless sudo (the same
        through ``sudo -n``, probed with ``sudo -n true``). ``True`` also lets sudo ask for the
        password at a terminal. ``False`` never installs. Setting the environment variable
        ``FASTNN_NO_INSTALL=1`` disables installing whatever this says. A failed install is not
        an error by itself: the download comes next.
    download: when the files are still missing, fetch them (into ``path`` or the cache); with
        False, raise ``FileNotFoundError`` instead. It does not affect ``install``.
    verify: also check every file against the published MD5 checksums (of the .gz or of its
        content), raising ``ValueError`` on a mismatch. Downloads are always checked.

    Raises ``FileNotFoundError`` when the files cannot be had, naming every directory searched,
    what was tried and the command that would fix it.
    """
    mode = _install_mode(install)
    if path is not None:
        candidates = [Path(path).expanduser()]
        target = candidates[0]
    else:
        candidates = search_dirs()
        target = cache_dir()
    found = _first_complete(candidates)
    if found is not None:
        return _load(found, verify)
    tried = _Tried()
    if path is None:
        installed = _install_package(mode, tried)
        if installed:
            found = _first_complete(candidates)
            if found is not None:
                return _load(found, verify)
            tried.notes[-1] += f", but the files are still not in {SYSTEM_DIRS[0]}"
    if not download:
        raise FileNotFoundError(_how_to_get(candidates, tried,
                                            "downloading: not tried (download=False)"))
    _download_missing(target, candidates, tried)
    return _load(_locate(target), verify)


def search_dirs() -> List[Path]:
    """The directories ``load_data()`` looks in, in order (they need not exist)."""
    dirs = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(cache_dir())
    dirs.extend(SYSTEM_DIRS)
    return dirs


def cache_dir() -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/fastnn/fashion-mnist``, by default under ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fastnn" / "fashion-mnist"


def download(directory: Optional[PathLike] = None) -> Path:
    """Fetch the files missing from ``directory`` (default: the cache); return the directory.

    Each file is checked against its published MD5 before it takes its final name, so an
    interrupted or corrupted transfer never leaves a file behind.
    """
    target = cache_dir() if directory is None else Path(directory).expanduser()
    _download_missing(target, [target], _Tried())
    return target


def install_command(update_first: bool = False) -> Optional[str]:
    """The shell command that installs Debian's package here, as the user would type it
    (``sudo`` first unless running as root; ``apt-get update &&`` first if asked), or None on a
    system without apt-get."""
    if shutil.which("apt-get") is None:
        return None
    sudo = "" if _is_root() else "sudo "
    install = sudo + " ".join(APT_INSTALL)
    return f"{sudo}{' '.join(APT_UPDATE)} && {install}" if update_first else install


class _Tried:
    """What load_data tried before giving up, for the error message."""

    def __init__(self) -> None:
        self.notes: List[str] = []
        # apt did not know the package and its lists could not be refreshed: the fix must
        # refresh them first.
        self.update_first = False


def _install_mode(install: Union[bool, str]) -> Union[bool, str]:
    if isinstance(install, bool) or install == "auto":
        return install
    raise ValueError(f"install must be 'auto', True or False, got {install!r}")


def _install_disabled_by_env() -> Optional[str]:
    value = os.environ.get(NO_INSTALL_VAR, "").strip()
    if value.lower() in ("", "0", "false", "no", "off"):
        return None
    return f"{NO_INSTALL_VAR}={value}"


def _is_root() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def _has_terminal() -> bool:
    """Whether sudo could ask for a password: it reads it from the controlling terminal."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def _privileges(mode: Union[bool, str]) -> Tuple[Optional[List[str]], str]:
    """The prefix that runs apt-get as root ([] when we are root), or None and why not."""
    if _is_root():
        return [], ""
    if shutil.which("sudo") is None:
        return None, "not root, and sudo is not installed"
    try:
        probe = subprocess.run(["sudo", "-n", "true"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"not root, and sudo failed ({err})"
    if probe.returncode == 0:
        return ["sudo", "-n"], ""
    if mode is True and _has_terminal():
        return ["sudo"], ""
    if mode is True:
        return None, "not root, sudo needs a password and there is no terminal to ask for it"
    return None, ("not root, and sudo needs a password (install='auto' never asks for one; "
                  "install=True asks at a terminal)")


def _run(command: Sequence[str]) -> Tuple[Optional[int], str]:
    """Run a command, returning (exit status or None when it could not run, its output)."""
    # The C locale keeps apt's messages in English, so an unknown package can be recognised
    # (sudo passes LC_ALL through); DEBIAN_FRONTEND stops any configuration question.
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    try:
        done = subprocess.run(list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", env=env,
                              timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, f"no answer after {INSTALL_TIMEOUT:.0f} s"
    except (OSError, subprocess.SubprocessError) as err:
        return None, str(err)
    return done.returncode, done.stdout or ""


def _package_unknown(output: str) -> bool:
    return ("Unable to locate package" in output
            or "has no installation candidate" in output)


def _failure(command: Sequence[str], status: Optional[int], output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "sudo:"))] or lines[-3:]
    how = "could not run" if status is None else f"exit status {status}"
    detail = "; ".join(errors) if status is not None else output
    return f"`{' '.join(command)}` failed ({how}{': ' + detail if detail else ''})"


def _install_package(mode: Union[bool, str], tried: _Tried) -> bool:
    """Install Debian's package if allowed and possible; say whether it was installed, and
    note in ``tried`` what happened."""
    done, note = _try_install(mode, tried)
    tried.notes.append(note)
    return done


def _try_install(mode: Union[bool, str], tried: _Tried) -> Tuple[bool, str]:
    what = f"installing Debian's {PACKAGE} package"
    disabled = _install_disabled_by_env()
    if mode is False:
        return False, f"{what}: not tried (install=False)"
    if disabled:
        return False, f"{what}: not tried ({disabled})"
    if shutil.which("apt-get") is None:
        return False, f"{what}: not tried (no apt-get here: not Debian or Ubuntu)"
    prefix, why_not = _privileges(mode)
    if prefix is None:
        return False, f"{what}: not tried ({why_not})"
    command = prefix + list(APT_INSTALL)
    ask = " (sudo may ask for your password)" if prefix == ["sudo"] else ""
    print(f"fastnn: Fashion-MNIST not found; installing it with `{' '.join(command)}`{ask}",
          file=sys.stderr, flush=True)
    status, output = _run(command)
    if status != 0 and status is not None and _package_unknown(output):
        update = prefix + list(APT_UPDATE)
        print(f"fastnn: apt does not know {PACKAGE} yet; running `{' '.join(update)}`, "
              f"then installing again",
              file=sys.stderr, flush=True)
        update_status, update_output = _run(update)
        if update_status != 0:
            tried.update_first = True
            return False, (f"{what}: {_failure(command, status, output)}, and "
                           f"{_failure(update, update_status, update_output)}")
        status, output = _run(command)
        if status != 0 and status is not None and _package_unknown(output):
            return False, (f"{what}: {_failure(command, status, output)} after "
                           f"`{' '.join(update)}`: apt's sources do not offer {PACKAGE}")
    if status != 0:
        return False, f"{what}: {_failure(command, status, output)}"
    return True, f"{what}: `{' '.join(command)}` succeeded"


def _first_complete(directories: List[Path]) -> Optional[Dict[str, Optional[Path]]]:
    """The files of the first directory that holds all four, or None."""
    for directory in directories:
        found = _locate(directory)
        if all(p is not None for p in found.values()):
            return found
    return None


def _locate(directory: Path) -> Dict[str, Optional[Path]]:
    found: Dict[str, Optional[Path]] = {}
    for role, name in FILES.items():
        found[role] = None
        for candidate in (directory / name, directory / name[:-len(".gz")]):
            if candidate.is_file():
                found[role] = candidate
                break
    return found


def _md5(data) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read(path: Path, release_name: str, verify: bool) -> np.ndarray:
    data = path.read_bytes()
    raw = gunzip(data, str(path))
    if verify:
        published_gz, published_raw = CHECKSUMS[release_name]
        if _md5(data) != published_gz and _md5(raw) != published_raw:
            raise ValueError(f"{path}: checksum mismatch: neither the file's MD5 "
                             f"{_md5(data)} matches the published {published_gz} nor its "
                             f"content's MD5 {_md5(raw)} the published {published_raw}; the "
                             f"file is corrupt or not the Fashion-MNIST release")
    return parse_idx(raw, str(path))


def _load(found: Dict[str, Optional[Path]], verify: bool) -> Arrays:
    arrays = {role: _read(path, FILES[role], verify) for role, path in found.items()}
    for split in ("train", "test"):
        x_path, y_path = found["x_" + split], found["y_" + split]
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"{x_path}: expected uint8 images of shape (n, 28, 28), found "
                             f"{x.dtype} of shape {x.shape}")
        if y.dtype != np.uint8 or y.ndim != 1:
            raise ValueError(f"{y_path}: expected uint8 labels of shape (n,), found {y.dtype} "
                             f"of shape {y.shape}")
        if len(x) != len(y):
            raise ValueError(f"{x_path} holds {len(x)} images but {y_path} holds {len(y)} "
                             f"labels")
        if y.size and int(y.max()) >= NUM_CLASSES:
            raise ValueError(f"{y_path}: label {int(y.max())} is out of range 0..{NUM_CLASSES - 1}")
    return ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))


class _ChecksumMismatch(Exception):
    pass


def _download_missing(target: Path, looked_in: List[Path], tried: _Tried) -> None:
    found = _locate(target)
    missing = [FILES[role] for role, p in found.items() if p is None]
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FileNotFoundError(_how_to_get(
            looked_in, tried, f"downloading: cannot create {target} ({err})")) from err
    for name in missing:
        _fetch(name, target / name, looked_in, tried)


def _fetch(name: str, dest: Path, looked_in: List[Path], tried: _Tried) -> None:
    # Imported here: urllib.request pulls in http, email and ssl, which `import fastnn` need not.
    import http.client
    import urllib.request

    expected = CHECKSUMS[name][0]
    failures = []
    corrupt = False
    for base in MIRRORS:
        url = base + name
        print(f"fastnn: downloading {url}", file=sys.stderr)
        try:
            with replace_atomically(dest) as out, \
                    urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
                digest = hashlib.md5(usedforsecurity=False)
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                if digest.hexdigest() != expected:
                    raise _ChecksumMismatch(f"MD5 {digest.hexdigest()}, published {expected}")
        except _ChecksumMismatch as err:
            corrupt = True
            failures.append(f"{url}: checksum mismatch ({err})")
        except (OSError, http.client.HTTPException) as err:
            failures.append(f"{url}: {err}")
        else:
            return
    reason = f"downloading {name}: failed:\n        " + "\n        ".join(failures)
    if corrupt:
        raise ValueError(_how_to_get(looked_in, tried, reason))
    raise FileNotFoundError(_how_to_get(looked_in, tried, reason))


def _how_to_get(looked_in: List[Path], tried: _Tried, last: str) -> str:
    names = ", ".join(FILES.values())
    places = "\n".join(f"    {d}" for d in looked_in)
    attempts = "\n".join(f"    - {note}" for note in [*tried.notes, last])
    apt = install_command(tried.update_first)
    if apt is not None:
        fix = (f"  To fix it, run:\n"
               f"    {apt}\n"
               f"  (it puts the files in {SYSTEM_DIRS[0]}, where load_data() finds them).\n")
    else:
        fix = (f"  To fix it, run on a machine with internet access:\n"
               f"    python -c \"from fastnn.datasets import fashion_mnist; "
               f"fashion_mnist.download()\"\n"
               f"  (it downloads them into the cache, {cache_dir()}).\n")
    return (
        f"Fashion-MNIST not found: no directory holds all four files ({names}).\n"
        f"  Looked in:\n{places}\n"
        f"  Tried:\n{attempts}\n"
        f"{fix}"
        f"  Or download the files from {MIRRORS[0]} or {MIRRORS[1]} into a directory and set "
        f"{ENV_VAR} to it (or pass it as load_data(path=...)), or put them in the cache, "
        f"{cache_dir()}."
    )
