"""Figures the benchmarks share, imported by name as a sibling of the bench scripts."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values` by nearest rank; NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
