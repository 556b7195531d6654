"""The precision of float32 matrix products, PyTorch's ``set_float32_matmul_precision`` switch.

``"highest"`` (the default): float32 products are computed in float32, exactly as without this
module. ``"medium"``: float32 products that go through fastnn's GEMM driver (``ops.gemm``,
``ops.linear`` and the ``Dense`` layer, the RBM ops and ``nn.RBM``'s training) may round both
operands to bfloat16 (8 significant bits, round to nearest even) and accumulate in float32, where
the CPU has a bfloat16 kernel: AMX (Intel Sapphire Rapids and later) or AVX512_BF16 (AMD Zen 4/5,
Intel Cooper Lake and later); elsewhere they stay float32. Bias, activation and RBM sampling are
applied in float32 as before. Each product then carries a relative error of about 2^-8 per term,
which training tolerates and which speeds the products up several times. ``"high"`` behaves like
``"highest"`` here (PyTorch uses it for TensorFloat-32, which CPUs lack). float64 products,
convolutions, recurrent and attention kernels, the Numba and CUDA backends are unaffected.
"""
from __future__ import annotations

from typing import List, Optional

from . import backend as _backend

__all__ = ["set_float32_matmul_precision", "get_float32_matmul_precision", "bf16_kernel",
           "bf16_kernels"]

PRECISIONS = ("highest", "high", "medium")
_level = 0


def set_float32_matmul_precision(precision: str) -> None:
    """Set the precision of float32 matrix products: ``"highest"``, ``"high"`` or ``"medium"``
    (see the module docstring). Process-wide, like PyTorch's; raises ValueError otherwise."""
    global _level
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    _level = PRECISIONS.index(precision)
    if _backend._C is not None:
        _backend._C.set_matmul_precision(_level)


def get_float32_matmul_precision() -> str:
    """The current float32 matmul precision: ``"highest"`` (the default), ``"high"`` or
    ``"medium"``."""
    return PRECISIONS[_level]


def bf16_kernel() -> Optional[str]:
    """The bfloat16 kernel ``"medium"`` runs float32 products on here: ``"amx"``,
    ``"avx512_bf16"``, or None (no kernel: ``"medium"`` computes in float32). The environment
    variable FASTNN_BF16 (amx | avx512_bf16 | none) forces a supported one."""
    if _backend._C is None:
        return None
    name = str(_backend._C.bf16_kernel())
    return None if name == "none" else name


def bf16_kernels() -> List[str]:
    """Every bfloat16 kernel this CPU and build support, best first (tests force each one)."""
    return [] if _backend._C is None else [str(k) for k in _backend._C.bf16_kernels()]


def _set_bf16_kernel(name: str) -> None:
    """Testing hook: force the bfloat16 kernel ("amx", "avx512_bf16" or "none")."""
    if _backend._C is None or not _backend._C.set_bf16_kernel(name):
        raise ValueError(f"the {name!r} bfloat16 kernel is not available here")
