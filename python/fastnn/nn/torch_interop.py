"""Moving a whole model's weights to and from PyTorch.

fastnn keeps PyTorch's weight layouts (Dense ``(out, in)``, Conv2D ``(out, in/groups, kh, kw)``,
Conv2DTranspose ``(in, out/groups, kh, kw)``), so nothing is transposed: each layer's
``torch_weights()`` / ``set_torch_weights()`` (see :class:`fastnn.nn.Layer`) exchanges its arrays
with the matching module's ``state_dict()``, and the two functions here do it for a model whose
layers with weights come in the same order as the PyTorch modules with weights (parameter-free
modules such as ``nn.ReLU``, ``nn.MaxPool2d`` or ``nn.Flatten`` may sit anywhere in either).

A channels_first model matches PyTorch exactly, ``Flatten`` included (both flatten C, H, W in
that order). After channels_last convolutions, Flatten orders the features H, W, C, so the first
Dense kernel after it needs its columns permuted.

torch is never imported here: tensors are read through their ``detach().cpu().numpy()``, and
what goes to PyTorch is NumPy arrays (``torch.from_numpy`` each).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np

__all__ = ["load_torch_state_dict", "torch_state_dict"]


def _weighted_layers(model: Any) -> List[Any]:
    if not model.built:
        model.build()
    return [layer for layer in model.layers if layer.weights]


def _groups(state_dict: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The entries of a state_dict grouped by module (the key up to its last dot), in order."""
    groups: Dict[str, Dict[str, Any]] = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        groups.setdefault(prefix, {})[leaf] = value
    return groups


def load_torch_state_dict(model: Any, state_dict: Mapping[str, Any]) -> None:
    """Copy a PyTorch model's ``state_dict()`` into ``model`` (a built or buildable fastnn
    model): the ``i``-th PyTorch module with weights goes to the ``i``-th layer with weights.
    Raises ValueError, before changing anything, when the counts, names or shapes differ."""
    layers = _weighted_layers(model)
    groups = list(_groups(state_dict).items())
    if len(groups) != len(layers):
        raise ValueError(f"the PyTorch state_dict has {len(groups)} modules with weights "
                         f"({', '.join(p for p, _ in groups)}), the model {len(layers)} layers "
                         f"with weights ({', '.join(layer.name for layer in layers)})")
    # Each layer checks its own arrays before copying; a mismatch at a later module puts the
    # layers already loaded back, so a failed load leaves the model as it was.
    saved = [layer.get_weights() for layer in layers]
    try:
        for layer, (prefix, entries) in zip(layers, groups):
            try:
                layer.set_torch_weights(entries)
            except ValueError as exc:
                raise ValueError(f"PyTorch module {prefix!r}: {exc}") from None
    except BaseException:
        for layer, weights in zip(layers, saved):
            layer.set_weights(weights)
        raise


def torch_state_dict(model: Any, like: Optional[Mapping[str, Any]] = None
                     ) -> Dict[str, np.ndarray]:
    """``model``'s weights as a PyTorch state_dict of NumPy arrays. Keys are
    ``<module>.<weight>``; ``<module>`` comes from ``like`` (the target PyTorch model's own
    ``state_dict()``, whose modules with weights pair with the layers in order) or else is the
    layer's name. Load with ``torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in
    sd.items()})``."""
    layers = _weighted_layers(model)
    if like is not None:
        prefixes = list(_groups(like))
        if len(prefixes) != len(layers):
            raise ValueError(f"like has {len(prefixes)} modules with weights, the model "
                             f"{len(layers)} layers with weights")
    else:
        prefixes = [layer.name for layer in layers]
    out: Dict[str, np.ndarray] = {}
    for prefix, layer in zip(prefixes, layers):
        for key, value in layer.torch_weights().items():
            out[f"{prefix}.{key}" if prefix else key] = value
    return out
