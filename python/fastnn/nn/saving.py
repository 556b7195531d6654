"""Saving and loading models.

File format (one file, any name; ``.fnn`` is a good suffix): a ZIP archive holding

* ``fastnn.json``: ``{"format": "fastnn.model", "format_version": 1, "fastnn_version": ...,
  "model": <Sequential config: layer classes and arguments, build input shape>,
  "compile": <optimizer, loss and metrics, or null>}``;
* ``weights.npz``: the weights as NumPy arrays ``w0000, w0001, ...`` in ``get_weights()`` order.

Nothing is pickled: the config is JSON and the arrays are read with ``allow_pickle=False``, so a
model file from elsewhere cannot run code. The file is written to a temporary file beside the
target and moved over it with ``os.replace``, so a crash never leaves a half-written model. A file
that is not a fastnn model, or a damaged one, raises ValueError. The optimizer's state (moments)
is not saved: a loaded model continues training with a fresh optimizer of the same settings.

``save_weights``/``load_weights`` write and read the ``.npz`` part alone.

This module sits below the models: it works on the model object it is given, and :mod:`.model`
imports it (never the reverse). ``load_model`` finds the class to rebuild in a registry that model
classes join with :func:`register_model_class` when they are defined.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .. import optim
from .._version import __version__
from . import losses as _losses
from . import metrics as _metrics

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "register_model_class",
           "FORMAT", "FORMAT_VERSION"]

FORMAT = "fastnn.model"
FORMAT_VERSION = 1
_CONFIG = "fastnn.json"
_WEIGHTS = "weights.npz"
_DEFAULT_CLASS = "Sequential"  # files written before the class name was stored hold a Sequential

_MODEL_CLASSES: Dict[str, type] = {}


def register_model_class(cls: type) -> type:
    """Let :func:`load_model` rebuild models of ``cls`` (usable as a class decorator).

    ``cls`` needs ``get_config``, ``from_config(config, custom_objects)``, ``get_weights``,
    ``set_weights``, ``built`` and ``compile``, as :class:`~fastnn.nn.Sequential` has.
    """
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


def _atomic_write(path: Any, write: Callable[[Any], None]) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _npz_bytes(weights: List[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{f"w{i:04d}": np.ascontiguousarray(w) for i, w in enumerate(weights)})
    return buf.getvalue()


def _read_npz(data: Any, source: str) -> List[np.ndarray]:
    try:
        with np.load(data, allow_pickle=False) as npz:
            names = sorted(npz.files)
            if names != [f"w{i:04d}" for i in range(len(names))]:
                raise ValueError(f"unexpected array names {names[:5]}")
            return [npz[k] for k in names]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ValueError(f"{source}: the weights are unreadable or corrupt ({exc})") from None


def save_model(model: Any, path: Any) -> None:
    """Write ``model`` (architecture, weights, compile settings) to ``path`` atomically."""
    config = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "fastnn_version": __version__, "class_name": type(model).__name__,
              "model": model.get_config(),
              "compile": model._compile_config}
    text = json.dumps(config, indent=1, allow_nan=False)
    weights = _npz_bytes(model.get_weights() if model.built else [])

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
            z.writestr(_CONFIG, text)
            z.writestr(_WEIGHTS, weights)

    _atomic_write(path, write)


def load_model(path: Any, custom_objects: Optional[Dict[str, Any]] = None,
               compile: bool = True) -> Any:
    """The model saved at ``path``, built, with its weights (and compiled, if it was)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory, not a fastnn model file")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if _CONFIG not in names or _WEIGHTS not in names:
                raise ValueError(f"{path!r} is not a fastnn model file (a ZIP archive without "
                                 f"{_CONFIG} and {_WEIGHTS})")
            raw_config = z.read(_CONFIG)
            raw_weights = z.read(_WEIGHTS)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path!r} is not a fastnn model file, or it is damaged ({exc})"
                         ) from None
    try:
        config = json.loads(raw_config.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path!r}: its {_CONFIG} is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a fastnn model file (format "
                         f"{config.get('format') if isinstance(config, dict) else None!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path!r} has format version {version!r}; this fastnn reads up to "
                         f"{FORMAT_VERSION} (upgrade fastnn)")
    class_name = config.get("class_name", _DEFAULT_CLASS)
    model_cls = (custom_objects or {}).get(class_name) or _MODEL_CLASSES.get(class_name)
    if model_cls is None:
        raise ValueError(f"{path!r} holds a model of class {class_name!r}, which is unknown "
                         f"here; pass custom_objects={{{class_name!r}: cls}}")
    try:
        model = model_cls.from_config(config["model"], custom_objects)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path!r}: the model description is damaged ({exc!r})") from None
    weights = _read_npz(io.BytesIO(raw_weights), repr(path))
    if weights or model.built:
        try:
            model.set_weights(weights)
        except ValueError as exc:
            raise ValueError(f"{path!r}: the weights do not fit the model ({exc})") from None
    compile_cfg = config.get("compile")
    if compile and compile_cfg:
        metrics = [m if isinstance(m, str) else _metrics.from_serialized(m)
                   for m in compile_cfg.get("metrics") or []]
        model.compile(optimizer=optim.get(compile_cfg["optimizer"]),
                      loss=compile_cfg.get("loss") and _losses.get(compile_cfg["loss"]),
                      metrics=metrics)
    return model


def save_weights(model: Any, path: Any) -> None:
    """Write ``model.get_weights()`` to an ``.npz`` file atomically."""
    data = _npz_bytes(model.get_weights())
    _atomic_write(path, lambda f: f.write(data))


def load_weights(model: Any, path: Any) -> None:
    """Read weights written by :func:`save_weights` into ``model`` (shapes must match)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no weights file at {path!r}")
    model.set_weights(_read_npz(path, repr(path)))
