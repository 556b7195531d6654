"""IDX files, the container of MNIST-style data sets, plain or gzip-compressed.

Layout: two zero bytes, a type code, the number of dimensions, each dimension as a big-endian
uint32, then the values in C order, big-endian. Nothing else is in the file, so the header alone
says how long the file must be: anything shorter or longer is an error, never silently accepted.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a writable native-endian array.

    Compression is recognised from the file's first bytes, not its name. A truncated, oversized or
    corrupt file raises ``ValueError`` naming the file.
    """
    path = Path(path)
    return parse_idx(path.read_bytes(), name=str(path))


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an IDX file (gzip-compressed or not); ``name`` labels errors."""
    return _decode(gunzip(data, name), name)


def gunzip(data: bytes, name: str = "<bytes>") -> bytes:
    """Decompress ``data`` if it is gzip, else return it unchanged; corrupt gzip is a ValueError."""
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{name}: corrupt or truncated gzip data ({err})") from err


def _decode(raw: bytes, name: str) -> np.ndarray:
    if len(raw) < 4:
        raise ValueError(f"{name}: not an IDX file: {len(raw)} bytes, shorter than its "
                         f"4-byte magic number")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{name}: not an IDX file: magic number 0x{raw[:4].hex()} does not "
                         f"start with two zero bytes")
    code, ndim = raw[2], raw[3]
    dtype = _DTYPES.get(code)
    if dtype is None:
        known = ", ".join(f"0x{c:02x}" for c in _DTYPES)
        raise ValueError(f"{name}: not an IDX file: unknown type code 0x{code:02x} in magic "
                         f"number 0x{raw[:4].hex()} (known: {known})")
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{name}: truncated IDX header: {ndim} dimensions need {header} "
                         f"bytes, the file has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = 1
    for d in shape:
        count *= d
    expected = header + count * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "oversized"
        raise ValueError(f"{name}: {what} IDX file: header declares shape {shape} of "
                         f"{dtype.name} ({expected} bytes with the header), the data holds "
                         f"{len(raw)} bytes")
    values = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)
    # A copy, because arrays over immutable bytes are read-only, which breaks in-place shuffles.
    return values.astype(dtype.newbyteorder("="))


def write_idx(path: PathLike, array, *, compresslevel: int = 6) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64 (the IDX types); at least one
    and at most 255 dimensions, each below 2**32. The file appears atomically (written under a
    temporary name, then renamed), so readers never see half of it. Returns the path.
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _CODES.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise TypeError(f"write_idx: array has dtype {arr.dtype}; IDX holds only uint8, int8, "
                        f"int16, int32, float32 and float64")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"write_idx: array has {arr.ndim} dimensions; IDX needs 1 to 255")
    if any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"write_idx: shape {arr.shape} has a dimension of 2**32 or more")
    header = bytes((0, 0, code, arr.ndim)) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(arr, dtype=_DTYPES[code]).tobytes()
    data = header + payload
    if path.name.endswith(".gz"):
        # mtime=0 keeps the output a pure function of the array.
        data = gzip.compress(data, compresslevel=compresslevel, mtime=0)
    with replace_atomically(path) as out:
        out.write(data)
    return path


@contextlib.contextmanager
def replace_atomically(path: PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` only if the block finishes without error.

    The temporary file lives in the target's directory so the final rename stays on one file
    system, where it is atomic; on error it is removed and ``path`` is left untouched.
    """
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.part"
        try:
            # os.open with 0o666 lets the umask decide permissions, as for any new file
            # (tempfile.mkstemp would force 0o600).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
