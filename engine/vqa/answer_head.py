"""The trained answer head (logistic regression over the training answer vocabulary) and its combination with
retrieval evidence: a kNN vote of the most similar training (image, question) pairs, with citations."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import QueryError
from engine.vqa.data import VqaFeatures, VqaItem, closed_options, grouped_folds, normalise_answer
from engine.vqa.graph_facts import Fact, GraphFacts

if TYPE_CHECKING:
    from kg.graph import ConceptGraph

logger = logging.getLogger(__name__)

WEIGHT_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
YES_NO: tuple[str, str] = ("yes", "no")


@dataclass(frozen=True)
class Citation:
    """A training pair used as evidence: its qid, image record id, answer and similarity to the query."""

    qid: str
    record_id: str
    answer: str
    similarity: float


@dataclass(frozen=True)
class VqaPrediction:
    """One answer: normalised text, confidence in [0, 1] (combined probability), the neighbours cited and the
    graph facts that support the answer (knowledge questions)."""

    qid: str
    answer: str
    confidence: float
    citations: tuple[Citation, ...]
    facts: tuple[Fact, ...] = ()


class AnswerHead:
    """A classifier over an answer vocabulary; `predict_proba` maps any input the model takes to (n, V) float64."""

    def __init__(self, vocabulary: Sequence[str], model: Any) -> None:
        self.vocabulary: tuple[str, ...] = tuple(vocabulary)
        self.model = model

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """Probabilities over `vocabulary`: float64 (n, V), rows sum to 1."""
        if len(self.vocabulary) == 1:
            return np.ones((inputs.shape[0] if hasattr(inputs, "shape") else len(inputs), 1))
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return np.asarray(self.model.predict_proba(inputs), dtype=np.float64)


def train_answer_head(
    inputs: Any, answers: Sequence[str], *, c: float = 10.0, max_iter: int = 200, min_count: int = 2
) -> AnswerHead:
    """Fit a multinomial logistic regression from `inputs` to answers seen at least `min_count` times.

    Args:
        inputs: float32 (n, d) feature matrix (e.g. `VqaFeatures.matrix()`), or anything an sklearn pipeline
            passed as ``model`` would take; n == len(answers).
        answers: normalised training answers.
        c: inverse L2 regularisation strength.
        min_count: rarer answers are left to retrieval (their rows are not used by the head).

    Raises:
        QueryError: no answer is frequent enough, or inputs and answers differ in length.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    n_rows = inputs.shape[0] if hasattr(inputs, "shape") else len(inputs)
    if n_rows != len(answers):
        raise QueryError(f"{n_rows} feature rows but {len(answers)} answers")
    counts = Counter(answers)
    vocabulary = sorted(a for a, n in counts.items() if n >= min_count) or sorted(counts)
    if not vocabulary:
        raise QueryError("no training answers to fit an answer head on")
    keep = np.array([a in set(vocabulary) for a in answers])
    rows = inputs[keep] if hasattr(inputs, "shape") else [x for x, k in zip(inputs, keep, strict=True) if k]
    if len(vocabulary) == 1:
        return AnswerHead(vocabulary, None)
    model = LogisticRegression(C=c, max_iter=max_iter)
    with threadpool_limits(
        limits=1
    ):  # BLAS threads oversubscribe shared cores (50x slower measured on 2 cores)
        model.fit(rows, np.array([a for a, k in zip(answers, keep, strict=True) if k]))
    logger.info("answer head: %d answers from %d of %d rows", len(vocabulary), int(keep.sum()), n_rows)
    return AnswerHead([str(a) for a in model.classes_], model)


def candidate_mask(items: Sequence[VqaItem], vocabulary: Sequence[str], open_answers: set[str]) -> np.ndarray:
    """Which answers each question may take: bool (n, V).

    Closed questions: the options of an "X or Y?" question, else yes/no (falling back to every closed answer
    of the vocabulary when none of those is in it). Open questions: answers seen on open training questions.
    """
    index = {answer: i for i, answer in enumerate(vocabulary)}
    closed_all = np.array([a not in open_answers for a in vocabulary])
    open_row = np.array([a in open_answers for a in vocabulary])
    mask = np.zeros((len(items), len(vocabulary)), dtype=bool)
    for row, item in enumerate(items):
        if item.answer_type == "OPEN":
            mask[row] = open_row if open_row.any() else True
            continue
        allowed = [index[a] for a in (*(closed_options(item.question, index) or ()), *YES_NO) if a in index]
        if not allowed:
            allowed = [index[a] for a in YES_NO if a in index]
        if allowed:
            mask[row, allowed] = True
        else:
            mask[row] = closed_all if closed_all.any() else True
    return mask


def pair_similarity(query: VqaFeatures, train: VqaFeatures) -> np.ndarray:
    """Similarity of (image, question) pairs: question cosine + mean image cosine over shared spaces, (n_q, n_t)."""
    similarity = query.question @ train.question.T
    spaces = [name for name in query.images if name in train.images]
    if spaces:
        similarity = similarity + sum(query.images[s] @ train.images[s].T for s in spaces) / len(spaces)
    return similarity


def neighbour_votes(
    query: VqaFeatures,
    train: VqaFeatures,
    train_answers: np.ndarray,
    vocab_size: int,
    k: int,
    temperature: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kNN vote of the `k` most similar training pairs.

    Args:
        train_answers: int64 (n_t,), index of each training answer in the vocabulary.

    Returns:
        votes float64 (n_q, V) (rows sum to 1, softmax of similarity / temperature over the neighbours),
        neighbours int64 (n_q, k) training rows, best first, and their similarities float32 (n_q, k).
    """
    similarity = pair_similarity(query, train)
    k = min(k, similarity.shape[1])
    neighbours = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(similarity, neighbours, axis=1)
    weights = np.exp((scores - scores[:, :1]) / temperature)
    weights /= weights.sum(axis=1, keepdims=True)
    votes = np.zeros((len(similarity), vocab_size))
    np.add.at(votes, (np.arange(len(similarity))[:, None], train_answers[neighbours]), weights)
    return votes, neighbours, scores


def combine(head: np.ndarray, votes: np.ndarray, mask: np.ndarray, weight: np.ndarray | float) -> np.ndarray:
    """(1 - w) * head + w * votes, restricted to `mask` and renormalised: float64 (n, V); w scalar or (n,)."""
    weight = np.asarray(weight, dtype=np.float64).reshape(-1, 1) if np.ndim(weight) else float(weight)
    mixed = ((1.0 - weight) * head + weight * votes) * mask
    total = mixed.sum(axis=1, keepdims=True)
    uniform = mask / np.maximum(mask.sum(axis=1, keepdims=True), 1)
    return np.where(total > 0, mixed / np.where(total > 0, total, 1.0), uniform)


def with_graph(combined: np.ndarray, graph: np.ndarray, mask: np.ndarray, weight: float) -> np.ndarray:
    """Mix graph votes into the rows that have any (restricted to `mask`): (1 - w) * combined + w * graph."""
    if weight <= 0:
        return combined
    graph = graph * mask
    total = graph.sum(axis=1, keepdims=True)
    has = total[:, 0] > 0
    out = combined.copy()
    out[has] = (1.0 - weight) * combined[has] + weight * graph[has] / total[has]
    return out


def _expand(head: AnswerHead, proba: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
    """Head probabilities (n, V_head) placed into the full vocabulary (n, V)."""
    index = {a: i for i, a in enumerate(vocabulary)}
    out = np.zeros((len(proba), len(vocabulary)))
    out[:, [index[a] for a in head.vocabulary]] = proba
    return out


@dataclass
class VqaModel:
    """A fitted answer head plus the training pairs it retrieves from and the per-type mixing weights."""

    head: AnswerHead
    vocabulary: tuple[str, ...]
    open_answers: set[str]
    train_items: tuple[VqaItem, ...]
    train_features: VqaFeatures
    weights: dict[str, float]
    k: int = 10
    use_retrieval: bool = True
    graph: GraphFacts | None = None
    graph_weight: float = 0.0

    def graph_evidence(
        self, items: Sequence[VqaItem], features: VqaFeatures
    ) -> tuple[np.ndarray, list[list[Fact]]]:
        """Graph votes (n, V) from the entities of the most similar training images (by image, else question)."""
        if self.graph is None:
            return np.zeros((len(items), len(self.vocabulary))), [[] for _ in items]
        spaces = [name for name in features.images if name in self.train_features.images]
        if spaces:
            similarity = sum(features.images[s] @ self.train_features.images[s].T for s in spaces) / len(
                spaces
            )
        else:
            similarity = features.question @ self.train_features.question.T
        order = np.argsort(-similarity, axis=1, kind="stable")
        records, weights = [], []
        for row in range(len(items)):
            chosen: dict[str, float] = {}
            for j in order[row]:
                record = self.train_items[j].record_id
                if record not in chosen:
                    chosen[record] = float(similarity[row, j])
                    if len(chosen) == self.k:
                        break
            scores = np.array(list(chosen.values()))
            w = np.exp((scores - scores.max()) / 0.1) if len(scores) else scores
            records.append(list(chosen))
            weights.append(w / w.sum() if len(w) else w)
        width = max((len(w) for w in weights), default=0)
        padded = np.zeros((len(items), width))
        for row, w in enumerate(weights):
            padded[row, : len(w)] = w
        records = [r + [""] * (width - len(r)) for r in records]
        return self.graph.vote_matrix(items, self.vocabulary, records, padded)

    def probabilities(self, items: Sequence[VqaItem], features: VqaFeatures) -> tuple[np.ndarray, ...]:
        """Head probabilities, kNN votes (both (n, V)), candidate mask (n, V), neighbours and scores (n, k)."""
        head = _expand(self.head, self.head.predict_proba(features.matrix()), self.vocabulary)
        index = {a: i for i, a in enumerate(self.vocabulary)}
        answers = np.array([index[item.answer] for item in self.train_items], dtype=np.int64)
        votes, neighbours, scores = neighbour_votes(
            features, self.train_features, answers, len(self.vocabulary), self.k
        )
        return head, votes, candidate_mask(items, self.vocabulary, self.open_answers), neighbours, scores

    def predict(self, items: Sequence[VqaItem], features: VqaFeatures) -> list[VqaPrediction]:
        """One `VqaPrediction` per item; citations are the neighbours that voted for the chosen answer."""
        head, votes, mask, neighbours, scores = self.probabilities(items, features)
        weight = np.array(
            [self.weights.get(item.answer_type, 0.0) if self.use_retrieval else 0.0 for item in items]
        )
        combined = combine(head, votes, mask, weight)
        graph_votes, graph_facts = self.graph_evidence(items, features)
        combined = with_graph(combined, graph_votes, mask, self.graph_weight)
        chosen = combined.argmax(axis=1)
        predictions = []
        for row, item in enumerate(items):
            answer = self.vocabulary[chosen[row]]
            supporting = tuple(
                f
                for f in graph_facts[row]
                if answer == normalise_answer(f.head if f.relation == "belong_to" else f.value)
            )
            cited = [
                Citation(
                    self.train_items[j].qid,
                    self.train_items[j].record_id,
                    self.train_items[j].answer,
                    float(s),
                )
                for j, s in zip(neighbours[row], scores[row], strict=True)
                if self.train_items[j].answer == answer
            ]
            if self.use_retrieval and not cited:  # the neighbours disagreed: cite the closest ones consulted
                cited = [
                    Citation(
                        self.train_items[j].qid,
                        self.train_items[j].record_id,
                        self.train_items[j].answer,
                        float(s),
                    )
                    for j, s in zip(neighbours[row][:3], scores[row][:3], strict=True)
                ]
            citations = tuple(cited) if self.use_retrieval else ()
            predictions.append(
                VqaPrediction(item.qid, answer, float(combined[row, chosen[row]]), citations, supporting)
            )
        return predictions


def choose_weights(
    items: Sequence[VqaItem],
    features: VqaFeatures,
    *,
    k: int,
    c: float,
    seed: int,
    graph: ConceptGraph | None = None,
) -> dict[str, float]:
    """Per answer type, the head/kNN mixing weight with the best accuracy on an image-grouped inner hold-out;
    with a graph, also "GRAPH": the weight of graph votes on the questions that have graph facts."""
    n_images = len({item.record_id for item in items})
    if n_images < 2:
        logger.warning("%d training image(s): no inner hold-out, mixing weights default to 0.5", n_images)
        return {"CLOSED": 0.5, "OPEN": 0.5, **({"GRAPH": 0.5} if graph is not None else {})}
    inner_train, inner_test = grouped_folds(items, n_folds=min(5, n_images), seed=seed + 1)[0]
    model = fit_vqa(
        [items[i] for i in inner_train],
        features.subset(inner_train),
        k=k,
        c=c,
        weights={"CLOSED": 0.0, "OPEN": 0.0, "GRAPH": 0.0},
        graph=graph,
    )
    held = [items[i] for i in inner_test]
    head, votes, mask, _, _ = model.probabilities(held, features.subset(inner_test))
    truth = np.array([item.answer for item in held])
    weights: dict[str, float] = {}
    for answer_type in ("CLOSED", "OPEN"):
        rows = np.array([item.answer_type == answer_type for item in held])
        if not rows.any():
            weights[answer_type] = 0.5
            continue
        vocabulary = np.array(model.vocabulary)
        accuracy = [
            float(
                np.mean(
                    vocabulary[combine(head[rows], votes[rows], mask[rows], w).argmax(axis=1)] == truth[rows]
                )
            )
            for w in WEIGHT_GRID
        ]
        weights[answer_type] = WEIGHT_GRID[int(np.argmax(accuracy))]
    if graph is not None:
        mixing = np.array([weights.get(item.answer_type, 0.0) for item in held])
        combined = combine(head, votes, mask, mixing)
        graph_votes, _ = model.graph_evidence(held, features.subset(inner_test))
        rows = (graph_votes * mask).sum(axis=1) > 0
        if rows.any():
            vocabulary = np.array(model.vocabulary)
            accuracy = [
                float(
                    np.mean(
                        vocabulary[with_graph(combined, graph_votes, mask, w)[rows].argmax(axis=1)]
                        == truth[rows]
                    )
                )
                for w in WEIGHT_GRID
            ]
            weights["GRAPH"] = WEIGHT_GRID[int(np.argmax(accuracy))]
        else:
            weights["GRAPH"] = 0.0
    logger.info("mixing weights chosen on the inner hold-out: %s", weights)
    return weights


def fit_vqa(
    items: Sequence[VqaItem],
    features: VqaFeatures,
    *,
    k: int = 10,
    c: float = 10.0,
    use_retrieval: bool = True,
    weights: dict[str, float] | None = None,
    seed: int = 0,
    graph: ConceptGraph | None = None,
) -> VqaModel:
    """Train the answer head on `items` and, unless given, choose the head/kNN weights on a grouped inner split.

    Args:
        items: training questions (normalised answers).
        features: aligned with `items`; drop `images` for a question-only model.
        k: neighbours in the kNN vote.
        use_retrieval: False -> head only (weights 0, no citations).
        weights: "CLOSED"/"OPEN" -> weight of the kNN vote in [0, 1] ("GRAPH": of the graph votes); chosen on
            training data when None.
        graph: the concept graph; facts about the entities of similar training images answer knowledge
            questions (`engine.vqa.graph_facts`). None: no graph evidence.
    """
    if len(items) != len(features):
        raise QueryError(f"{len(items)} items but {len(features)} feature rows")
    head = train_answer_head(features.matrix(), [item.answer for item in items], c=c)
    vocabulary = tuple(sorted({item.answer for item in items}))
    open_answers = {item.answer for item in items if item.answer_type == "OPEN"}
    if not use_retrieval:
        weights = {"CLOSED": 0.0, "OPEN": 0.0}
    elif weights is None:
        weights = choose_weights(items, features, k=k, c=c, seed=seed, graph=graph)
    facts = GraphFacts.from_items(graph, items) if graph is not None else None
    if facts is not None:  # graph answers are open answers even when no training question had them
        extra = facts.possible_answers() - set(vocabulary)
        vocabulary = tuple(sorted(set(vocabulary) | extra))
        open_answers |= extra
    return VqaModel(
        head,
        vocabulary,
        open_answers,
        tuple(items),
        features,
        dict(weights),
        k,
        use_retrieval,
        facts,
        float(weights.get("GRAPH", 0.0)) if facts is not None else 0.0,
    )
