"""Evaluation: retrieval, knowledge-graph and ranking metrics, each measured beside its baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def portable(value: Any, roots: dict[str, Path]) -> Any:
    """`value` (nested dicts/lists/str) with each absolute path under a root written as "<name>/relative".

    Saved results then hold no machine-specific paths (e.g. roots={"<data>": data_dir, "<repo>": repo}).
    """
    if isinstance(value, dict):
        return {key: portable(item, roots) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable(item, roots) for item in value]
    if isinstance(value, str) and value.startswith("/"):
        for name, root in roots.items():
            root_text = str(Path(root).resolve())
            if value == root_text or value.startswith(root_text + "/"):
                return name + value[len(root_text) :]
    return value


def write_results(path: str | Path, value: Any, indent: int = 1) -> Path:
    """Save benchmark results as strict JSON: NaN and infinities (a metric with no question to average
    over) become null, which every JSON parser reads; parent folders are created."""
    import json
    import math

    def finite(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {key: finite(inner) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return [finite(inner) for inner in item]
        return item

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(finite(value), indent=indent, allow_nan=False) + "\n", encoding="utf-8")
    return out
