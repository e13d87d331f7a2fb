"""Figures the benchmarks share, imported by name as a sibling of the bench scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values` by nearest rank; NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def print_figures(figures: Mapping[str, Any]) -> None:
    """A bench's figures as a table for people, then as one JSON object on the last line (the
    line CI and the docs take)."""
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    print(json.dumps(figures))
    sys.stdout.flush()
