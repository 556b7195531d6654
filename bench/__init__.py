"""Benchmarks: fastnn against NumPy and PyTorch CPU. Run with ``python -m bench``.

The runner (bench.run) starts one process per library per family (bench.worker), one for the
FMA peak (bench.peak) and one where the libraries share a process on purpose
(bench.interference). Nothing here imports NumPy, fastnn or torch at import time.
"""
