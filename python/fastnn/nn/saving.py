"""Saving and loading models.

File format (one file, any name; ``.fnn`` is a good suffix): a ZIP archive holding

* ``fastnn.json``: ``{"format": "fastnn.model", "format_version": 1, "fastnn_version": ...,
  "class_name": "Sequential", "model": <its config: layer classes and arguments, build input
  shape>, "compile": <optimizer (as it is when saved), loss and metrics, or null>,
  "training": <see below; only for a compiled model>}``;
* ``weights.npz``: the weights as NumPy arrays ``w0000, w0001, ...`` in ``get_weights()`` order;
* ``optimizer.npz`` (compiled models only): the optimizer's state arrays, ``s<i>_<j>`` for slot
  ``j`` (momentum, first or second moment...) of the ``i``-th trainable parameter.

``training`` is ``{"optimizer": {"iterations": <steps taken>, "slots": [per parameter: null
(not updated yet) or one bool per slot, true when the slot has an array]}, "random": {"global":
<fastnn.random state>, "layers": {<layer name>: <its generator state>}}}``. With it, a loaded model
resumes training where the saved one stopped: at the same seed and thread count,
``fit(epochs=2)``, ``save``, ``load_model``, ``fit(epochs=5, initial_epoch=2)`` gives the weights
of one ``fit(epochs=5)``, bit for bit. Loading a compiled model therefore also puts the global
:mod:`fastnn.random` generator back where it was when the model was saved;
``load_model(..., compile=False)`` reads the architecture and weights only and leaves it alone
(loading never consumes random numbers: the initial weights drawn while the layers are rebuilt
are overwritten, and the generator is put back after them).
Files without ``class_name`` or ``training`` (written before they existed) still load: as a
``Sequential``, and with a fresh optimizer of the saved settings. Readers that predate these
entries ignore them, so the format version stays 1.

Nothing is pickled: the config is JSON and the arrays are read with ``allow_pickle=False``, so a
model file from elsewhere cannot run code. The file is written to a temporary file beside the
target and moved over it with ``os.replace``, so a crash never leaves a half-written model. A file
that is not a fastnn model, or a damaged one, raises ValueError.

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
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .. import optim
from .. import random as _random
from .._version import __version__
from . import losses as _losses
from . import metrics as _metrics

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "register_model_class",
           "FORMAT", "FORMAT_VERSION"]

FORMAT = "fastnn.model"
FORMAT_VERSION = 1
_CONFIG = "fastnn.json"
_WEIGHTS = "weights.npz"
_OPTIMIZER = "optimizer.npz"
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


def _state_name(i: int, j: int) -> str:
    return f"s{i:04d}_{j}"


def _training_state(model: Any) -> Tuple[Dict[str, Any], bytes]:
    """The JSON part and the ``optimizer.npz`` bytes of what resuming training needs."""
    opt_state = model.optimizer.get_state(model.params)
    arrays: Dict[str, np.ndarray] = {}
    slots: List[Optional[List[bool]]] = []
    for i, entry in enumerate(opt_state["slots"]):
        if entry is None:
            slots.append(None)
            continue
        slots.append([a is not None for a in entry])
        for j, a in enumerate(entry):
            if a is not None:
                arrays[_state_name(i, j)] = np.ascontiguousarray(a)
    layers = {}
    for layer in model.layers:
        get = getattr(layer, "get_random_state", None)
        state = get() if get is not None else None
        if state is not None:
            layers[layer.name] = state
    training = {"optimizer": {"iterations": int(opt_state["iterations"]), "slots": slots},
                "random": {"global": _random.get_state(), "layers": layers}}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return training, buf.getvalue()


def _restore_training_state(model: Any, training: Any, raw: Optional[bytes],
                            source: str) -> None:
    """Put the optimizer and random state of ``training`` back (everything is checked before
    the global generator moves)."""
    if raw is None:
        raise ValueError(f"{source}: the file has a training state but no {_OPTIMIZER}")
    try:
        iterations = training["optimizer"]["iterations"]
        spec = list(training["optimizer"]["slots"])
        global_state = training["random"]["global"]
        layer_states = dict(training["random"]["layers"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: the training state is damaged ({exc!r})") from None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ValueError(f"{source}: the optimizer state is unreadable or corrupt ({exc})"
                         ) from None
    slots: List[Optional[tuple]] = []
    wanted = set()
    try:
        for i, entry in enumerate(spec):
            if entry is None:
                slots.append(None)
                continue
            names = [_state_name(i, j) if present else None for j, present in enumerate(entry)]
            wanted.update(n for n in names if n is not None)
            slots.append(tuple(None if n is None else arrays[n] for n in names))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{source}: the optimizer state is damaged (missing or bad entry "
                         f"{exc})") from None
    if set(arrays) != wanted:
        raise ValueError(f"{source}: the optimizer state is damaged (unexpected arrays "
                         f"{sorted(set(arrays) - wanted)[:5]})")
    try:
        model.optimizer.set_state(model.params, {"iterations": iterations, "slots": slots})
    except ValueError as exc:
        raise ValueError(f"{source}: the optimizer state does not fit the model ({exc})"
                         ) from None
    by_name = {layer.name: layer for layer in model.layers}
    try:
        for name, state in layer_states.items():
            setter = getattr(by_name.get(name), "set_random_state", None)
            if setter is None:
                raise ValueError(f"no layer {name!r} with a generator of its own")
            setter(state)
        _random.generator_from_state(global_state)  # checked here, set last
    except ValueError as exc:
        raise ValueError(f"{source}: the random state is damaged ({exc})") from None
    _random.set_state(global_state)


def save_model(model: Any, path: Any) -> None:
    """Write ``model`` (architecture, weights, compile settings and, for a compiled model, the
    optimizer and random state that resuming training needs) to ``path`` atomically."""
    compile_cfg = model._compile_config
    training, state_bytes = None, None
    if compile_cfg is not None and model.optimizer is not None:
        # The optimizer as it is now: settings changed since compile belong to the resumed run.
        compile_cfg = dict(compile_cfg, optimizer=optim.serialize(model.optimizer))
        training, state_bytes = _training_state(model)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "fastnn_version": __version__, "class_name": type(model).__name__,
              "model": model.get_config(), "compile": compile_cfg}
    if training is not None:
        config["training"] = training
    text = json.dumps(config, indent=1, allow_nan=False)
    weights = _npz_bytes(model.get_weights() if model.built else [])

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
            z.writestr(_CONFIG, text)
            z.writestr(_WEIGHTS, weights)
            if state_bytes is not None:
                z.writestr(_OPTIMIZER, state_bytes)

    _atomic_write(path, write)


def load_model(path: Any, custom_objects: Optional[Dict[str, Any]] = None,
               compile: bool = True) -> Any:
    """The model saved at ``path``, built, with its weights.

    With ``compile`` (the default) a model that was compiled comes back compiled, with its
    optimizer's state, and the global :mod:`fastnn.random` generator is put back where it was
    at saving (both only when the file has them), so ``fit(..., initial_epoch=...)`` resumes the
    saved run exactly. ``compile=False`` gives the architecture and weights alone.
    """
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
            raw_state = z.read(_OPTIMIZER) if _OPTIMIZER in names else None
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
    # Building the layers draws initial weights from the global generator, only for them to be
    # overwritten: put it back, so that loading consumes no randomness (a resumed run, and any
    # other run that loads a model, stays repeatable from its own seed).
    global_state = _random.get_state()
    try:
        model = _build(model_cls, config, raw_weights, custom_objects, repr(path))
    finally:
        _random.set_state(global_state)
    compile_cfg = config.get("compile")
    if compile and compile_cfg:
        metrics = [m if isinstance(m, str) else _metrics.from_serialized(m)
                   for m in compile_cfg.get("metrics") or []]
        loss = compile_cfg.get("loss")
        loss = [_losses.get(v) for v in loss] if isinstance(loss, list) else (
            loss and _losses.get(loss))
        extra = {}
        if compile_cfg.get("loss_weights") is not None:  # a model with several outputs
            extra["loss_weights"] = compile_cfg["loss_weights"]
        model.compile(optimizer=optim.get(compile_cfg["optimizer"]), loss=loss,
                      metrics=metrics, **extra)
        if config.get("training") is not None:
            _restore_training_state(model, config["training"], raw_state, repr(path))
    return model


def _build(model_cls: type, config: Dict[str, Any], raw_weights: bytes,
           custom_objects: Optional[Dict[str, Any]], source: str) -> Any:
    try:
        model = model_cls.from_config(config["model"], custom_objects)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{source}: the model description is damaged ({exc!r})") from None
    weights = _read_npz(io.BytesIO(raw_weights), source)
    if weights or model.built:
        try:
            model.set_weights(weights)
        except ValueError as exc:
            raise ValueError(f"{source}: the weights do not fit the model ({exc})") from None
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
