"""Fashion-MNIST (Zalando Research): 70,000 grayscale 28x28 images of clothing in 10 classes.

``load_data()`` looks for the four IDX files of the published release, in this order:

1. ``$FASTNN_DATA`` (a directory holding the four files),
2. the cache, ``$XDG_CACHE_HOME/fastnn/fashion-mnist`` (by default
   ``~/.cache/fastnn/fashion-mnist``),
3. ``/usr/share/datasets/fashion-mnist``, where Debian's ``dataset-fashion-mnist`` package puts
   them.

The first directory holding all four is used. When none does, the files are downloaded into the
cache and checked against the published MD5 checksums before they are kept. Each file may be
gzip-compressed (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``).
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

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

Arrays = Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]


def load_data(path: Optional[PathLike] = None, *, download: bool = True,
              verify: bool = False) -> Arrays:
    """Return ``((x_train, y_train), (x_test, y_test))`` as uint8 arrays.

    Images have shape (n, 28, 28) with values 0..255, labels shape (n,) with values 0..9 (names
    in ``CLASS_NAMES``); the release has 60,000 training and 10,000 test samples.

    path: read from this directory only (no search); missing files are downloaded into it.
    download: when the files are nowhere, fetch them (into ``path`` or the cache); with False,
        raise ``FileNotFoundError`` instead.
    verify: also check every file against the published MD5 checksums (of the .gz or of its
        content), raising ``ValueError`` on a mismatch. Downloads are always checked.
    """
    if path is not None:
        candidates = [Path(path).expanduser()]
        target = candidates[0]
    else:
        candidates = search_dirs()
        target = cache_dir()
    for directory in candidates:
        found = _locate(directory)
        if all(p is not None for p in found.values()):
            return _load(found, verify)
    if not download:
        raise FileNotFoundError(_how_to_get(candidates, "downloading was disabled "
                                                        "(download=False)"))
    _download_missing(target, candidates)
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
    _download_missing(target, [target])
    return target


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


def _download_missing(target: Path, looked_in: List[Path]) -> None:
    found = _locate(target)
    missing = [FILES[role] for role, p in found.items() if p is None]
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FileNotFoundError(_how_to_get(looked_in, f"cannot create {target} ({err})")) from err
    for name in missing:
        _fetch(name, target / name, looked_in)


def _fetch(name: str, dest: Path, looked_in: List[Path]) -> None:
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
    reason = f"downloading {name} failed:\n    " + "\n    ".join(failures)
    if corrupt:
        raise ValueError(_how_to_get(looked_in, reason))
    raise FileNotFoundError(_how_to_get(looked_in, reason))


def _how_to_get(looked_in: List[Path], reason: str) -> str:
    names = ", ".join(FILES.values())
    places = "\n".join(f"    {d}" for d in looked_in)
    return (
        f"Fashion-MNIST not found: no directory holds all four files ({names}).\n"
        f"  Looked in:\n{places}\n"
        f"  and {reason}.\n"
        f"  To get the files, any of:\n"
        f"    - on Debian or Ubuntu: apt-get install dataset-fashion-mnist "
        f"(installs them in {SYSTEM_DIRS[0]});\n"
        f"    - download them from {MIRRORS[0]} or {MIRRORS[1]} into a directory and set "
        f"{ENV_VAR} to it, or pass it as load_data(path=...);\n"
        f"    - put them in the cache, {cache_dir()}."
    )
