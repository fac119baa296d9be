"""Benchmarks: ``python -m bench [NAME ...]`` prints one JSON line per figure."""

# before any benchmark imports numpy: the figures are of the numpy code paths the command
# line takes (mascara_actors/numpy_dispatch.py)
import mascara_actors  # noqa: F401
