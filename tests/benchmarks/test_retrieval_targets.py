"""`benchmarks/retrieval.py` judges the issue's targets only on checkpoints trained under the benchmark's rule."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "retrieval.py"


def _targets():
    spec = importlib.util.spec_from_file_location("retrieval_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.targets


def _results(ssl_rule: str | None) -> dict:
    def method(region: float, recall: float | None = None) -> dict:
        text = {"R@10": recall} if recall is not None else None
        return {"text_to_image": text, "image_to_image": {"body_part_P@10": region}}

    return {
        "split_rule": "rule-v1",
        "chance": {"text_to_image": {"R@10": 0.05}},
        "checkpoints": {"clip": {"split_rule": "rule-v1"}, "ssl": {"split_rule": ssl_rule}},
        "methods": {
            "raw-pixel": method(0.60),
            "trained-clip": method(0.70, recall=0.40),
            "trained-ssl": method(0.80),
            "trained-clip+ssl": method(0.78),
        },
    }


def test_targets_are_judged_on_held_out_checkpoints_only() -> None:
    targets = _targets()
    same = "\n".join(targets(_results("rule-v1")))
    assert "8.0x random" in same and "trained-ssl same-region P@10 0.8000 vs raw-pixel 0.6000: +0.2000" in same
    assert "target >= +0.15: met" in same and "not held-out" not in same
    other = "\n".join(targets(_results("rule-v0")))
    assert "trained-ssl: trained under another held-out rule" in other
    assert "trained-ssl same-region" not in other and "trained-clip+ssl same-region" not in other
    assert "trained-clip same-region P@10 0.7000" in other  # the clip tower was held out properly
