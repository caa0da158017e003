"""Report drafting: consensus composition, citations, generator fallback, metrics and the benchmark on tiny data."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.encoders.base import l2_normalise
from engine.encoders.images import open_image
from engine.evaluation.text_metrics import (
    concept_f1,
    corpus_bleu,
    lcs_length,
    linker_concept_sets,
    paired_bootstrap,
    rouge_l,
)
from engine.ingest import ingest_records
from engine.rag.consensus import (
    CaseNeighbour,
    coherent_subset,
    compose_findings,
    compose_impression,
    split_sentences,
)
from engine.rag.report import ReportDrafter, check_citations, draft_report
from engine.settings import Settings
from engine.workspace import Workspace

HELD = ("MPX1007", "MPX1009", "MPX1075")  # held out by medsearch-val-v1, with images
GALLERY_WITH_IMAGES = ("MPX1074", "MPX1109", "MPX1325")
_VOCAB = {"effusion": "C1", "mass": "C2", "pneumothorax": "C3", "fracture": "C4", "diverticulum": "C5"}


def fake_linker(text: str) -> list[tuple[str, str]]:
    """Links a 5-word vocabulary; "no <word>" (within two words) is negated."""
    out = []
    for match in re.finditer(r"[a-z]+", text.lower()):
        if match.group(0) in _VOCAB:
            before = text.lower()[max(0, match.start() - 16) : match.start()]
            out.append((_VOCAB[match.group(0)], "negated" if re.search(r"\bno\b", before) else "present"))
    return out


class PixelEncoder:
    """16x16 grey thumbnails, mean-centred unit rows (an image space for tests)."""

    name = "test-pixels"
    dim = 256
    space = "clip"
    modalities = frozenset({"image"})

    def encode_images(self, images: Sequence) -> np.ndarray:
        rows = [np.asarray(i.convert("L").resize((16, 16)), dtype=np.float32).ravel() for i in images]
        vectors = np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
        return l2_normalise(vectors - vectors.mean(axis=1, keepdims=True))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


@pytest.fixture(scope="module")
def medpix(shared_data: Path):
    from engine.datasets import load

    return load("medpix", shared_data / "medpix-2.0")


@pytest.fixture(scope="module")
def tiny_medpix(medpix):
    """3 held-out dev cases, 3 trainable dev cases (with their images) and 3 official train cases (text only)."""
    train_cases = [r for r in medpix if r.kind == "report" and r.split == "train"][:3]
    wanted = set(HELD + GALLERY_WITH_IMAGES)
    chosen = [r for r in medpix if (r.extra or {}).get("case_id") in wanted or r.id.split(":")[1] in wanted]
    return chosen + train_cases


def neighbours_of(medpix, case_ids: Sequence[str]) -> list[CaseNeighbour]:
    from engine.rag.case_retrieval import neighbour_of

    by_id = {r.id: r for r in medpix}
    return [neighbour_of(by_id[f"medpix:{c}"], 1.0 - i / 10) for i, c in enumerate(case_ids)]


# ---------------------------------------------------------------------------- metrics


def test_rouge_l_hand_checked():
    assert lcs_length("a b c d".split(), "a c d b".split()) == 3
    # LCS "the cat on the mat" = 5 of 6 hypothesis and 5 of 5 reference tokens: F = 10/11
    assert rouge_l("The cat sat on the mat.", "the cat on the mat") == pytest.approx(10 / 11)
    assert rouge_l("", "x") == 0.0


def test_corpus_bleu_hand_checked():
    # 1-4-gram precisions 5/6, 3/5, 2/4, 1/3, same length: BLEU = (1/12) ** (1/4)
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(12**-0.25)
    assert corpus_bleu(["a b c d e"], ["a b c d e"]) == pytest.approx(1.0)
    # no 4-gram match: smoothed to 0.1 matches; brevity penalty exp(1 - 6/4)
    value = corpus_bleu(["a b c x"], ["a b c d e f"])
    expected = np.exp(1 - 6 / 4) * (3 / 4 * 2 / 3 * 1 / 2 * 0.1 / 1) ** 0.25
    assert value == pytest.approx(expected)


def test_concept_f1_excludes_negated_and_scores_polarity():
    sets = linker_concept_sets(fake_linker)
    scores = concept_f1(
        ["Pleural effusion and a mass. No pneumothorax.", "No effusion.", "anything"],
        ["Effusion, no mass.", "Effusion.", "no finding here"],
        sets,
    )
    # pair 1: asserted {C1, C2} vs {C1} -> 2/3; pair 2: {} vs {C1} -> 0; pair 3 skipped (no reference concept)
    assert scores["n"] == 2
    assert scores["concept_f1"] == pytest.approx((2 / 3 + 0) / 2)
    # polarity: {C1+, C2+, C3-} vs {C1+, C2-} -> 1 common: P 1/3, R 1/2 -> 0.4; pair 2: {C1-} vs {C1+} -> 0
    assert scores["concept_f1_polarity"] == pytest.approx(0.4 / 2)


def test_paired_bootstrap_sign_and_interval():
    references = [
        "there is a right pleural effusion",
        "there is a left pneumothorax here",
        "a mass in the liver is seen",
        "there is no acute fracture seen",
    ]
    good = list(references)
    bad = ["normal study without findings"] * 4
    sets = linker_concept_sets(fake_linker)
    same = paired_bootstrap(good, good, references, sets, resamples=200)
    assert all(v["delta"] == 0.0 and v["low"] == 0.0 == v["high"] for v in same.values())
    better = paired_bootstrap(good, bad, references, sets, resamples=200)
    assert better["rouge_l"]["delta"] == pytest.approx(1.0) and better["rouge_l"]["low"] > 0
    assert better["concept_f1"]["delta"] == pytest.approx(1.0)  # 3 references assert a concept
    assert better["bleu4"]["p_not_better"] < 0.05


# ---------------------------------------------------------------------------- composition


def test_consensus_prefers_agreed_sentences_and_respects_negation():
    neighbours = [
        CaseNeighbour("r1", "c1", 0.9, "Large right pleural effusion. Odd unique detail here.", "Effusion"),
        CaseNeighbour(
            "r2", "c2", 0.8, "Right pleural effusion is present. No pneumothorax.", "Pleural effusion"
        ),
        CaseNeighbour("r3", "c3", 0.7, "Small pneumothorax. Pleural effusion on the right.", "Effusion"),
    ]
    findings = compose_findings(neighbours, fake_linker)
    texts = [s.text for s in findings]
    assert any("effusion" in t.lower() for t in texts)
    assert "Odd unique detail here." not in texts
    assert not ("No pneumothorax." in texts and "Small pneumothorax." in texts)  # never both polarities
    impression = compose_impression(neighbours, fake_linker)
    assert impression is not None and impression.text == "Effusion" and impression.citation == 1


def test_coherent_subset_keeps_one_region_or_the_exact_case():
    def case(name, similarity, region):
        return CaseNeighbour(name, name, similarity, f"{name} finding.", f"{name} diagnosis", region=region)

    mixed = [case("a", 0.9, "head"), case("b", 0.8, "chest"), case("c", 0.7, "chest"), case("d", 0.6, None)]
    assert coherent_subset(mixed) == [1, 2, 3]  # chest outweighs head by rank weight; unknown region kept
    assert coherent_subset([case("a", 0.995, "head"), *mixed[1:]]) == [0]  # the query image is indexed
    drafter = ReportDrafter(ListRetriever(mixed), linker=fake_linker)
    draft = drafter.draft(indication="x", k=4)
    assert {s.citation for s in draft.sentences} <= {2, 3, 4} and len(draft.citations) == 4
    assert draft.impression.endswith("[2].")


def test_compose_on_real_cases_cites_each_sentence_verbatim(medpix):
    neighbours = neighbours_of(medpix, ("MPX1009", "MPX1074", "MPX1109", "MPX1325"))
    draft = ReportDrafter(retriever=None, linker=fake_linker).compose(neighbours)  # type: ignore[arg-type]
    assert draft.sentences and draft.sentences[-1].section == "impression"
    for sentence in draft.sentences:
        source = neighbours[sentence.citation - 1]
        assert sentence.text in split_sentences(source.findings) or sentence.text == source.impression
        assert f"[{sentence.citation}]" in (
            draft.findings if sentence.section == "findings" else draft.impression
        )
    assert draft.text.startswith("FINDINGS: ") and "\n\nIMPRESSION: " in draft.text
    cited = {c.number for c in draft.citations if c.sentences}
    assert cited == {s.citation for s in draft.sentences}
    data = json.loads(json.dumps(draft.as_dict()))
    assert [c["case_id"] for c in data["citations"]] == [n.case_id for n in neighbours]
    assert data["phrasing"]["method"] == "extractive"


# ---------------------------------------------------------------------------- retrieval + drafting


def test_embedding_retriever_finds_the_query_case(medpix):
    from engine.evaluation.report_eval import build_galleries, split_medpix
    from engine.rag.case_retrieval import EmbeddingCaseRetriever, neighbour_of

    chosen = [
        r
        for r in medpix
        if r.id.split(":")[1] in GALLERY_WITH_IMAGES or r.extra.get("case_id") in GALLERY_WITH_IMAGES
    ]
    _, gallery, images = split_medpix(chosen)
    retriever = EmbeddingCaseRetriever(
        [neighbour_of(r, 0) for r in gallery], build_galleries(gallery, images, {"clip": PixelEncoder()})
    )
    query = images["MPX1109"][0]
    draft = ReportDrafter(retriever, linker=fake_linker).draft(open_image(query.image_path), k=3)
    assert draft.citations[0].case_id == "medpix:MPX1109"
    assert draft.citations[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert {c.case_id for c in draft.citations} <= {f"medpix:{c}" for c in GALLERY_WITH_IMAGES}


def test_draft_report_through_a_workspace_collection(tmp_path: Path, tiny_medpix):
    pixels = PixelEncoder()
    with Workspace(Settings(home=tmp_path, data=None, kg_enabled=False)) as workspace:
        workspace._encoders[pixels.name] = pixels
        collection = workspace.collection("medpix", create=True)
        ingest_records(collection, tiny_medpix, {"clip": pixels}, source="medpix", progress=False)
        query = next(r for r in tiny_medpix if r.kind == "image+text" and r.extra["case_id"] == "MPX1009")
        draft = draft_report(workspace, open_image(query.image_path), collection="medpix", k=3)
        assert draft.citations[0].case_id == "medpix:MPX1009" and draft.query == "image"
        assert len({c.case_id for c in draft.citations}) == len(draft.citations)  # one citation per case
        assert all(s.citation <= len(draft.citations) for s in draft.sentences)
        text = draft_report(workspace, indication="bladder diverticulum hematuria", collection="medpix", k=3)
        assert text.query == "text" and "medpix:MPX1009" in {c.case_id for c in text.citations}
        # image + indication: the text ranking joins the order, the similarity stays the image cosine
        both = draft_report(
            workspace, open_image(query.image_path), indication="hematuria", collection="medpix", k=3
        )
        assert both.query == "image+text" and both.citations[0].case_id == "medpix:MPX1009"
        assert both.citations[0].similarity == pytest.approx(1.0, abs=1e-4)


# ---------------------------------------------------------------------------- generator phrasing


class FakeGenerator:
    def __init__(self, answer) -> None:
        self.answer, self.name, self.messages = answer, "fake", None

    def generate(self, messages, images=None, max_tokens=256, temperature=0.0) -> str:
        self.messages = messages
        return self.answer(messages) if callable(self.answer) else self.answer

    def stream(self, messages, images=None, max_tokens=256, temperature=0.0):
        yield self.generate(messages, images, max_tokens, temperature)


class ListRetriever:
    def __init__(self, neighbours) -> None:
        self.neighbours = neighbours

    def retrieve(self, images, indication, k):
        return self.neighbours[:k]


@pytest.fixture
def drafter(medpix):
    return ReportDrafter(
        ListRetriever(neighbours_of(medpix, ("MPX1009", "MPX1074", "MPX1109"))), linker=fake_linker
    )


def test_generator_without_citations_falls_back(drafter):
    generator = FakeGenerator("FINDINGS: The bladder looks abnormal. IMPRESSION: Diverticulum.")
    draft = drafter.draft(indication="hematuria", generator=generator)
    assert draft.phrasing["method"] == "extractive" and draft.phrasing["fallback_reason"] == "no citations"
    assert "[1]" in draft.findings + draft.impression
    assert "Indication: hematuria" in generator.messages[-1]["content"]


def test_generator_citing_unknown_or_dropping_cases_falls_back(drafter, medpix):
    unknown = drafter.draft(indication="x", generator=FakeGenerator("FINDINGS: A [9]. IMPRESSION: B [1]."))
    assert "not retrieved" in unknown.phrasing["fallback_reason"]
    # no near-duplicate top case (similarity < 0.99), so the draft mixes cases and a rewrite can drop one
    mixed = [
        replace(n, similarity=n.similarity - 0.2)
        for n in neighbours_of(medpix, ("MPX1009", "MPX1074", "MPX1109"))
    ]
    mixing = ReportDrafter(ListRetriever(mixed), linker=fake_linker)
    assert len({s.citation for s in mixing.draft(indication="x").sentences}) > 1
    dropped = mixing.draft(indication="x", generator=FakeGenerator("FINDINGS: A [1]. IMPRESSION: B [1]."))
    assert dropped.phrasing["fallback_reason"].startswith("dropped citations")


def test_generator_that_keeps_citations_is_used(drafter):
    def rewrite(messages):
        draft = messages[-1]["content"].split("citation:\n", 1)[1]
        return draft.replace("FINDINGS:", "FINDINGS: Compared with prior cases,", 1)

    draft = drafter.draft(indication="hematuria", generator=FakeGenerator(rewrite))
    assert draft.phrasing["method"] == "generator" and draft.phrasing["fallback_reason"] is None
    assert draft.findings.startswith("Compared with prior cases,")
    assert check_citations(
        "FINDINGS: A mass [1]. The rest is uncited. IMPRESSION: Mass [1].", 3, {1}
    ).startswith("sentence without")


def test_rewrites_with_an_empty_section_or_a_left_out_case_are_refused(drafter, medpix):
    assert check_citations("FINDINGS: IMPRESSION: Pneumonia [1].", 3, {1}) == "empty FINDINGS section"
    assert check_citations("FINDINGS: A mass [1]. IMPRESSION:", 3, {1}) == "empty IMPRESSION section"
    ok = "FINDINGS: A mass [1]. Fluid [2]. IMPRESSION: Mass [1]."
    assert check_citations(ok, 3, {1}) is None
    assert check_citations(ok, 3, {1}, allowed={1}).startswith("cites [2], cases the draft left out")
    # the drafter's top case is a near-duplicate (similarity 1.0): a rewrite may cite that case only
    left_out = drafter.draft(indication="x", generator=FakeGenerator(ok))
    assert left_out.phrasing["fallback_reason"].startswith("cites [2], cases the draft left out")


# ---------------------------------------------------------------------------- benchmark


def test_report_benchmark_on_tiny_data(tmp_path: Path, tiny_medpix, shared_data: Path):
    from engine.evaluation.report_eval import format_report_table, run_report_benchmark

    out = tmp_path / "results" / "report.json"
    results = run_report_benchmark(
        tmp_path,
        shared_data,
        out,
        k=2,
        encoders={"clip": PixelEncoder()},
        linker=fake_linker,
        records=tiny_medpix,
        text_only=False,
        progress=False,
    )
    assert results["split"] == "medsearch-val-v1"
    assert results["n_cases"] == len(HELD)
    assert results["gallery"]["cases"] == len(GALLERY_WITH_IMAGES) + 3
    methods = results["methods"]
    assert {"image: ours", "image: copy-nearest", "copy-random"} <= set(methods)
    for metrics in methods.values():
        assert 0.0 <= metrics["rouge_l"] <= 1.0 and 0.0 <= metrics["bleu4"] <= 1.0
        assert 0.0 <= metrics["concept_f1"] <= 1.0
    assert "image: ours vs image: copy-nearest" in results["comparisons"]
    saved = out.read_text()
    assert json.loads(saved)["n_cases"] == len(HELD)
    assert str(shared_data.resolve()) not in saved and str(tmp_path) not in saved
    assert "copy-random" in format_report_table(results)


def test_draft_needs_an_image_or_an_indication(drafter):
    from engine.errors import QueryError

    with pytest.raises(QueryError, match="image or an indication"):
        drafter.draft(None, "  ")
    with pytest.raises(QueryError, match="k must be"):
        drafter.draft(indication="x", k=0)
