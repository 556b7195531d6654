"""Benchmarks: fastnn against NumPy and PyTorch CPU. Run with ``python -m bench``.

Nothing here imports NumPy at import time: the runner may first have to restart the interpreter
without the OpenBLAS overrides (see ``bench.common.drop_openblas_overrides``).
"""
