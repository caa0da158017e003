"""Contrastive and auxiliary losses (CLIP-style InfoNCE with several positives, SimCLR/SupCon, metadata heads)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

IGNORE_LABEL = -1


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum(targets * log_softmax(logits)); targets rows sum to 1."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def image_text_loss(
    image_vectors: torch.Tensor,
    text_vectors: torch.Tensor,
    positives: torch.Tensor,
    logit_scale: torch.Tensor,
) -> torch.Tensor:
    """Symmetric InfoNCE where several pairs in a batch may be positives (identical texts, e.g. "CT of the abdomen").

    Args:
        image_vectors: float32 (n, dim), L2-normalised.
        text_vectors: float32 (n, dim), L2-normalised; row i is image i's text.
        positives: bool (n, n); True where text j also describes image i (the diagonal is True).
        logit_scale: scalar, exp(learned log scale).

    Returns:
        Scalar loss: mean of the image->text and text->image cross-entropies against the
        row-normalised positive mask.
    """
    logits = logit_scale * image_vectors @ text_vectors.t()
    targets = positives.float()
    image_to_text = _soft_cross_entropy(logits, targets / targets.sum(dim=1, keepdim=True))
    targets_t = targets.t()
    text_to_image = _soft_cross_entropy(logits.t(), targets_t / targets_t.sum(dim=1, keepdim=True))
    return (image_to_text + text_to_image) / 2


def multi_view_loss(views: list[torch.Tensor], temperature: float, n_global: int = 2) -> torch.Tensor:
    """SimCLR NT-Xent generalised to multi-crop: every view of an image is a positive of its global views.

    Args:
        views: list of float32 (n, dim) L2-normalised projections, one per view; the first `n_global`
            are the global (large) crops, the rest local crops.
        temperature: softmax temperature.
        n_global: how many leading views are global; local views are pulled toward global ones only.

    Returns:
        Scalar loss averaged over (anchor view, positive global view) pairs.
    """
    n = views[0].shape[0]
    everything = torch.cat(views)
    total, count = everything.new_zeros(()), 0
    eye = torch.eye(n, dtype=torch.bool, device=everything.device)
    for anchor_index, anchor in enumerate(views):
        logits = anchor @ everything.t() / temperature
        self_mask = torch.zeros_like(logits, dtype=torch.bool)
        self_mask[:, anchor_index * n : (anchor_index + 1) * n] = eye
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_probs = F.log_softmax(logits, dim=1)
        for positive_index in range(n_global):
            if positive_index == anchor_index:
                continue
            columns = torch.arange(n, device=everything.device) + positive_index * n
            total = total - log_probs[torch.arange(n), columns].mean()
            count += 1
    return total / max(count, 1)


def metadata_loss(logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Sum over metadata fields of the cross-entropy on labelled images (label -1 = unknown, ignored).

    Args:
        logits: field -> float32 (n, n_classes).
        labels: field -> int64 (n,), `IGNORE_LABEL` where the image has no value.

    Returns:
        Scalar (0 when no image in the batch has any label).
    """
    total = next(iter(logits.values())).new_zeros(()) if logits else torch.zeros(())
    for field_name, field_logits in logits.items():
        field_labels = labels[field_name]
        if bool((field_labels != IGNORE_LABEL).any()):
            total = total + F.cross_entropy(field_logits, field_labels, ignore_index=IGNORE_LABEL)
    return total
