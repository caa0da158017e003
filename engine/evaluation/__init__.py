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
