"""Visual question answering over VQA-RAD and SLAKE: data and folds, a trained answer head with retrieval
evidence (kNN over training image-question pairs), and the evaluation against question-only baselines."""

from engine.vqa.answer_head import AnswerHead, Citation, VqaModel, VqaPrediction, fit_vqa, train_answer_head
from engine.vqa.data import (
    VqaFeatures,
    VqaItem,
    closed_options,
    encode_features,
    grouped_folds,
    normalise_answer,
    vqa_items,
)
from engine.vqa.evaluate import evaluate_vqa, majority_answers

__all__ = [
    "AnswerHead",
    "Citation",
    "VqaFeatures",
    "VqaItem",
    "VqaModel",
    "VqaPrediction",
    "closed_options",
    "encode_features",
    "evaluate_vqa",
    "fit_vqa",
    "grouped_folds",
    "majority_answers",
    "normalise_answer",
    "train_answer_head",
    "vqa_items",
]
