"""`medsearch` command line: a table of subcommands, each parsing its input and calling one engine function."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engine.errors import MEDSEARCH_ERRORS, QueryError
from engine.settings import Settings
from ui.logs import configure_logging

logger = logging.getLogger("medsearch")

DATASETS = ("vqa-rad", "slake", "medpix", "iu-xray", "folder", "dicom")
DEMO_SOURCES = (("vqa-rad", "vqa-rad"), ("slake", "slake"), ("medpix", "medpix-2.0"), ("iu-xray", "iu-xray"))
DEMO_ASK = ("synpic100176.jpg", "Is there a pneumothorax?")
DEMO_QUERIES = ("enlarged heart", "no pleural effusion", "brain tumor on MRI", "kidney stone")


# ---------------------------------------------------------------------- helpers
def _workspace(args: argparse.Namespace):  # noqa: ANN202 - engine import kept lazy for fast --help
    from engine.workspace import Workspace

    return Workspace(args.settings)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


def _print_hits(hits: Sequence[Any]) -> None:
    if not hits:
        print("no results")
        return
    for rank, hit in enumerate(hits, start=1):
        where = "/".join(x for x in (hit.modality, hit.body_part) if x) or "-"
        snippet = " ".join(hit.text.split())[:110]
        print(f"{rank:>2}. {hit.score:.4f}  {hit.id:<34} {hit.kind:<10} {where:<14} {snippet}")
        ranks = ", ".join(f"{name}#{rank_}" for name, rank_ in hit.why.ranks.items())
        terms = ", ".join(hit.why.matched_terms)
        print(f"    why: {ranks}" + (f"; words: {terms}" if terms else ""))
        for match in hit.why.matched_concepts:
            via = "; ".join(f"{step['from']} {step['relation']} {step['to']}" for step in match["path"])
            sentence = " ".join((match["sentence"] or "").split())[:90]
            print(
                f"    concept: {match['query_concept']['name']} = {match['concept']['name']} "
                f"({match['polarity']}{', via ' + via if via else ''}) in {match['field']}: "
                f'"{sentence}"'
            )


def _request(args: argparse.Namespace, text: str | None, image_path: str | None):  # noqa: ANN202
    from engine.ingest import load_image
    from engine.search import SearchRequest
    from indexers import parse_filters

    image = load_image(image_path) if image_path else None
    return SearchRequest(
        text=text,
        image=image,
        k=args.k,
        mode=args.mode,
        space=args.space,
        filter=parse_filters(args.filter or []),
    )


# ---------------------------------------------------------------------- commands
def cmd_ingest(args: argparse.Namespace) -> int:
    with _workspace(args) as workspace:
        options = (
            {"frames": args.frames, "allow_burned_in": args.allow_burned_in}
            if args.dataset == "dicom"
            else {}
        )
        summary = workspace.ingest(
            args.dataset, args.path, collection=args.collection, backend=args.backend, **options
        )
    report = summary.as_dict()
    if args.json:
        _print_json(report)
    else:
        print(
            f"{args.dataset}: {report['added']} added, {report['already_present']} already present, "
            f"{report['failed_images']} unreadable images skipped, of {report['total']} records "
            f"({report['missing_images']} left out for missing image files) "
            f"in {report['seconds_total']}s (stages: {report['seconds']})"
        )
        if report["embedded_existing"]:
            print(f"  stored records embedded in new spaces: {report['embedded_existing']}")
        for failure in report["failed"][:20]:
            print(f"  skipped {failure['path']}: {failure['reason']}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    if not args.text and not args.image:
        raise QueryError("give query text, --image PATH, or both")
    with _workspace(args) as workspace:
        hits = workspace.search_service(args.collection).search(_request(args, args.text, args.image))
    if args.json:
        _print_json([hit.to_dict() for hit in hits])
    else:
        _print_hits(hits)
    return 0


def _read_queries(path: Path) -> list[dict[str, Any]]:
    queries = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise QueryError(f"{path}:{number}: not valid JSON ({e.msg})") from e
            if not isinstance(item, dict) or "qid" not in item or not (item.get("text") or item.get("image")):
                raise QueryError(
                    f'{path}:{number}: expected {{"qid": ..., "text": ...}} or {{"qid": ..., "image": PATH}}'
                )
            queries.append(item)
    return queries


def cmd_search_batch(args: argparse.Namespace) -> int:
    queries = _read_queries(Path(args.input))
    started = time.perf_counter()
    with _workspace(args) as workspace:
        service = workspace.search_service(args.collection)
        requests = [_request(args, q.get("text"), q.get("image")) for q in queries]
        results = []
        for start in range(0, len(requests), 256):
            results.extend(service.search_many(requests[start : start + 256]))
    tmp = Path(args.output).with_suffix(Path(args.output).suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for query, hits in zip(queries, results):
            out.write(
                json.dumps({"qid": query["qid"], "hits": [{"id": h.id, "score": h.score} for h in hits]})
                + "\n"
            )
    tmp.replace(args.output)
    print(f"{len(queries)} queries -> {args.output} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


def _print_answer(answer: Any) -> None:
    line = f"{answer.answer}  (confidence {answer.confidence:.2f}, {answer.answer_type.lower()} question)"
    print(line)
    if answer.sentence:
        print(f"  {answer.sentence}  [phrased by {answer.phrased_by}]")
    for number, citation in enumerate(answer.citations, start=1):
        print(
            f"  [{number}] {citation['record_id']}  Q: {citation['question']}  A: {citation['answer']}"
            f"  (similarity {citation['similarity']:.2f})"
        )
    for fact in answer.facts:
        print(f"  fact: {fact['head']} --{fact['relation']}--> {fact['value']}  (via {fact['record_id']})")


def cmd_ask(args: argparse.Namespace) -> int:
    from engine.ingest import load_image
    from engine.vqa.service import Question

    image = load_image(args.image) if args.image else None
    with _workspace(args) as workspace:
        answer = workspace.ask(
            [Question("query", args.question, image)], generator=args.generator, phrase=args.phrase
        )[0]
    if args.json:
        _print_json(answer.as_dict())
    else:
        _print_answer(answer)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from engine.ingest import load_image
    from engine.rag.report import draft_report

    if not args.image and not (args.indication or "").strip():
        raise QueryError("give --image PATH, --indication TEXT, or both")
    image = load_image(args.image) if args.image else None
    with _workspace(args) as workspace:
        generator = workspace.generator(args.generator) if args.generator else None
        draft = draft_report(
            workspace, image, args.indication, collection=args.collection, k=args.k, generator=generator
        )
    if args.json:
        _print_json(draft.as_dict())
        return 0
    print(draft.text)
    print()
    for citation in draft.citations:
        unused = "" if citation.sentences else "; retrieved, not used in the draft"
        print(
            f"[{citation.number}] {citation.record_id} (case {citation.case_id}, "
            f"similarity {citation.similarity:.2f}{unused})"
        )
    for fact in draft.facts:
        print(f"fact: {fact}")
    phrasing = draft.phrasing
    if phrasing.get("fallback_reason"):
        print(f"(the generator's text was not used: {phrasing['fallback_reason']})", file=sys.stderr)
    return 0


def _read_qa_file(path: Path) -> list[tuple[str, str, str]]:
    """(qid, image name, question) from a VQA-RAD (image_name) or SLAKE (img_name) JSON list."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise QueryError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(data, list):
        raise QueryError(f"{path}: expected a JSON list of questions, got {type(data).__name__}")
    rows = []
    for number, item in enumerate(data):
        image = item.get("image_name", item.get("img_name")) if isinstance(item, dict) else None
        if (
            not isinstance(item, dict)
            or "qid" not in item
            or not isinstance(item.get("question"), str)
            or not image
        ):
            raise QueryError(
                f"{path}: item {number}: expected qid, question and image_name (VQA-RAD) or img_name (SLAKE)"
            )
        rows.append((str(item["qid"]), str(image), item["question"]))
    seen: set[str] = set()
    for qid, _, _ in rows:
        if qid in seen:
            raise QueryError(f"{path}: qid {qid!r} appears more than once")
        seen.add(qid)
    return rows


def cmd_ask_batch(args: argparse.Namespace) -> int:
    from engine.errors import ImageReadError
    from engine.ingest import load_image
    from engine.vqa.service import MAX_QUESTION_CHARS, Question

    rows = _read_qa_file(Path(args.input))
    images_dir = Path(args.images).resolve()
    started = time.perf_counter()
    failed = 0
    tmp = Path(args.output).with_suffix(Path(args.output).suffix + ".tmp")
    with _workspace(args) as workspace, open(tmp, "w", encoding="utf-8") as out:
        workspace.vqa()  # load once, fail early when untrained
        decoded: dict[str, Any] = {}
        for start in range(0, len(rows), args.batch_size):
            batch, lines = [], {}
            for qid, name, question in rows[start : start + args.batch_size]:
                path = (images_dir / name).resolve()
                if not question.strip():
                    lines[qid] = {"qid": qid, "answer": None, "error": "empty question"}
                    continue
                if len(question) > MAX_QUESTION_CHARS:
                    error = f"question is {len(question)} characters (limit {MAX_QUESTION_CHARS})"
                    lines[qid] = {"qid": qid, "answer": None, "error": error}
                    continue
                if not path.is_relative_to(images_dir):
                    lines[qid] = {"qid": qid, "answer": None, "error": f"{name}: outside the images folder"}
                    continue
                try:
                    if name not in decoded:
                        if len(decoded) >= 64:  # questions come grouped by image: keep a small cache
                            decoded.clear()
                        decoded[name] = load_image(str(path))
                    batch.append(Question(qid, question, decoded[name]))
                except (ImageReadError, FileNotFoundError, OSError) as e:
                    lines[qid] = {"qid": qid, "answer": None, "error": f"{name}: {e}"}
            for answer in workspace.ask(batch, generator=args.generator, phrase=args.phrase) if batch else []:
                row = answer.as_dict()
                lines[answer.qid] = {
                    "qid": answer.qid,
                    **{k: v for k, v in row.items() if k not in ("qid", "question")},
                }
            for qid, _, _ in rows[start : start + args.batch_size]:
                if "error" in lines[qid]:
                    failed += 1
                    print(f"medsearch ask-batch: {qid}: {lines[qid]['error']}", file=sys.stderr)
                out.write(json.dumps(lines[qid], ensure_ascii=False) + "\n")
    tmp.replace(args.output)
    print(
        f"{len(rows) - failed} answered, {failed} failed -> {args.output} in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    return 1 if failed and failed == len(rows) else 0


def cmd_collections(args: argparse.Namespace) -> int:
    with _workspace(args) as workspace:
        stats = [workspace.collection(name).stats() for name in workspace.collection_names()]
    if args.json:
        _print_json(stats)
    elif not stats:
        print(f"no collections in {args.settings.home}")
    for item in [] if args.json else stats:
        spaces = ", ".join(f"{s}({v['encoder']}, {v['dim']}d)" for s, v in item["spaces"].items())
        print(f"{item['name']}: {item['records']} records, backend {item['backend']}, spaces {spaces}")
        print(f"  by source: {item['by_source']}  by kind: {item['by_kind']}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _workspace(args) as workspace:
        removed = workspace.delete(args.ids, collection=args.collection)
    print(f"deleted {removed} of {len(args.ids)} ids")
    return 0 if removed == len(args.ids) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from engine.workspace import require_data_dir

    data = require_data_dir(args.settings)
    with _workspace(args) as workspace:
        for space, path in workspace.ensure_trained().items():
            print(f"trained the {space} image encoder: {path} (model card: {path / 'model_card.json'})")
        for dataset, folder in DEMO_SOURCES:
            summary = workspace.ingest(dataset, data / folder, collection=args.collection).as_dict()
            print(
                f"{dataset}: {summary['added']} added, {summary['already_present']} already present, "
                f"{summary['failed_images']} unreadable, {summary['seconds_total']}s"
                + (
                    f", embedded in new spaces: {summary['embedded_existing']}"
                    if summary["embedded_existing"]
                    else ""
                )
            )
        if (trained := workspace.ensure_vqa()) is not None:
            print(f"trained the VQA model: {trained} (card: {trained / 'card.json'})")
        service = workspace.search_service(args.collection)
        from engine.search import SearchRequest

        for query in DEMO_QUERIES:
            print(f"\n=== {query}")
            _print_hits(service.search(SearchRequest(text=query, k=5)))
        from engine.ingest import load_image
        from engine.vqa.service import Question

        image = data / "vqa-rad" / "images" / DEMO_ASK[0]
        if image.is_file():
            print(f"\n=== ask: {DEMO_ASK[1]} ({image.name})")
            _print_answer(workspace.ask([Question("demo", DEMO_ASK[1], load_image(str(image)))])[0])
    if args.no_serve:
        print('\nTry: medsearch search "cardiomegaly" --filter source=iu-xray --json')
        return 0
    print(
        f"\nServing: API http://{args.host}:{args.port}/docs, web app http://{args.host}:{args.port}/ui (Ctrl-C stops)"
    )
    args.no_web = False
    return cmd_serve(args)


def _knowledge(workspace):  # noqa: ANN001, ANN202
    from engine.errors import CollectionError

    knowledge = workspace.knowledge()
    if knowledge is None:
        raise CollectionError("the knowledge graph is disabled (MEDSEARCH_KG_ENABLED=false)")
    return knowledge


def cmd_kg(args: argparse.Namespace) -> int:
    from engine.knowledge import concept_card, mentions_as_dicts

    with _workspace(args) as workspace:
        knowledge = _knowledge(workspace)
        if args.kg_command == "link":
            mentions = mentions_as_dicts(knowledge.linker.link(args.text))
            if args.json:
                _print_json(mentions)
            for m in [] if args.json else mentions:
                flags = "".join((" NEGATED" if m["negated"] else "", " UNCERTAIN" if m["uncertain"] else ""))
                print(
                    f"{m['start']:>4}-{m['end']:<4} {m['text']!r:<28} -> {m['concept_id']} {m['name']}{flags}"
                )
        elif args.kg_command == "show":
            concept = knowledge.graph.concept(args.concept)
            names = workspace.collection_names()
            collection = args.collection or workspace.settings.collection
            linked = (
                workspace.collection(collection).records_mentioning([concept.id])
                if collection in names
                else {}
            )
            card = concept_card(knowledge, concept.id, linked)
            _print_json(card) if args.json else _print_card(card)
        elif args.kg_command == "stats":
            _print_json({**knowledge.graph.stats(), "metadata": knowledge.graph.metadata})
        elif args.kg_command == "relink":
            print(f"relinked {workspace.relink(args.collection)} records")
    return 0


def _print_card(card: dict[str, Any]) -> None:
    print(f"{card['id']}  {card['name']}  [{card['semantic_type']}]  sources: {', '.join(card['sources'])}")
    for label in ("synonyms", "xrefs"):
        if card[label]:
            print(f"  {label}: {'; '.join(card[label][:15])}")
    if card["definition"]:
        print(f"  definition: {card['definition'][:300]}")
    for label in ("parents", "children"):
        if card[label]:
            listed = "; ".join(f"{c['name']} ({c['id']})" for c in card[label])
            print(f"  {label}: {listed}")
    for rel in card["related"]:
        print(f"  {rel['relation']}: {rel['name']} ({rel['id']})")
    for polarity, found in card["records"].items():
        if found["count"]:
            print(f"  records ({polarity}): {found['count']}: {', '.join(found['ids'][:8])}")


def cmd_train(args: argparse.Namespace) -> int:
    if args.space == "vqa":
        with _workspace(args) as workspace:
            path = workspace.train_vqa(force=args.force)
        card = json.loads((path / "card.json").read_text())
        print(f"trained vqa -> {path}")
        per_dataset = ", ".join(f"{name}: {row['questions']}" for name, row in card["data"].items())
        spaces = [space for space in card["encoders"] if space != "text"]
        print(
            f"train questions ({per_dataset}), {card['answers']} answers, image spaces {spaces}, "
            f"graph {card['graph']}, {card['seconds']['total']}s"
        )
        return 0
    with _workspace(args) as workspace:
        path = workspace.train(
            args.space, epochs=args.epochs, force=args.force, from_clip=not args.from_scratch
        )
    card = json.loads((path / "model_card.json").read_text())
    print(f"trained {args.space} -> {path}")
    training = card.get("training", {})
    print(
        f"{training.get('steps')} steps, {training.get('epochs')} epochs in {training.get('wall_seconds')}s"
    )
    if card.get("validation_metrics"):
        from engine.evaluation.retrieval import format_retrieval_table

        print(format_retrieval_table(card["validation_metrics"]))
    print(
        "re-ingest to embed stored records in this space: medsearch ingest <dataset> <path>", file=sys.stderr
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from engine.workspace import require_data_dir

    if args.target == "retrieval":
        from engine.evaluation.retrieval import format_retrieval_table, run_retrieval_benchmark

        out = args.out or args.settings.home / "eval" / "retrieval.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        result = run_retrieval_benchmark(
            args.settings.home, require_data_dir(args.settings), out, out.with_suffix(".png")
        )
        print(format_retrieval_table(result))
        print(f"saved {out} and {out.with_suffix('.png')}", file=sys.stderr)
        return 0
    if args.target == "report":
        from engine.evaluation.report_eval import format_report_table, run_report_benchmark

        out = args.out or args.settings.home / "eval" / "report.json"
        result = run_report_benchmark(
            args.settings.home.resolve(), require_data_dir(args.settings).resolve(), out
        )
        print(format_report_table(result))
        print(f"saved {out}", file=sys.stderr)
        return 0
    if args.target == "vqa":
        from engine.evaluation.vqa_eval import format_table, run_vqa_benchmark

        out = args.out or args.settings.home / "eval" / "vqa.json"
        result = run_vqa_benchmark(
            args.settings.home.resolve(), require_data_dir(args.settings).resolve(), out, folds=args.folds
        )
        print(format_table(result))
        print(f"saved {out}", file=sys.stderr)
        return 0
    from engine.evaluation.kg_eval import evaluate_kg

    queries = args.queries or Path(__file__).resolve().parents[1] / "benchmarks" / "kg_queries.json"
    with _workspace(args) as workspace:
        result = evaluate_kg(workspace, queries, require_data_dir(args.settings) / "iu-xray")
    out = args.out or args.settings.home / "eval" / "kg.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    summary = {
        "linking": {s: result["linking"][s] for s in ("all", "validation")},
        "search": result["search"],
    }
    _print_json(summary)
    print(f"saved {out}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ui.api.serve import WorkerStartupError, serve

    try:
        serve(
            args.settings,
            host=args.host,
            port=args.port,
            workers=getattr(args, "workers", 1),  # `demo` serves in one process
            web=not args.no_web,
            verbose=args.verbose,
        )
    except WorkerStartupError as e:
        print(f"medsearch serve: error: {e}", file=sys.stderr)
        return 3
    except ValueError as e:  # --workers without --no-web, invalid API settings
        print(f"medsearch serve: error: {e}", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------------- parser
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k", type=int, default=10, help="number of hits (default 10)")
    parser.add_argument("--mode", choices=("hybrid", "dense", "keyword"), default="hybrid")
    parser.add_argument(
        "--space",
        choices=("text", "clip", "ssl"),
        default=None,
        help="dense space (default: text for text queries, clip for image queries)",
    )
    parser.add_argument(
        "--filter",
        action="append",
        metavar="EXPR",
        help="key=value, key=v1,v2 (any of), key>=n, key<n, key=lo..hi; repeat to AND",
    )
    parser.add_argument("--collection", default=None)


def _add_generator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--phrase", action="store_true", help="add a sentence with citations (template unless --generator)"
    )
    parser.add_argument(
        "--generator",
        default=None,
        help="phrases the sentence with --phrase: local, extractive, openai:URL, vllm:MODEL (kept only if it "
        "states the answer and cites a case)",
    )


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "ingest": (cmd_ingest, "ingest a dataset folder into a collection"),
    "search": (cmd_search, "search a collection"),
    "search-batch": (cmd_search_batch, "run a JSONL file of queries, write hits as JSONL"),
    "collections": (cmd_collections, "list collections with counts"),
    "delete": (cmd_delete, "delete records by id"),
    "demo": (cmd_demo, "ingest the shared datasets and run example searches"),
    "kg": (cmd_kg, "knowledge graph: link text, show a concept, stats, relink a collection"),
    "train": (
        cmd_train,
        "train this home's models (clip: LiT/ConVIRT against MiniLM; ssl: SimCLR; vqa: answer head + retrieval)",
    ),
    "ask": (cmd_ask, "answer a question about an image, with the cases and graph facts it rests on"),
    "report": (cmd_report, "draft FINDINGS and IMPRESSION from the most similar prior cases, with citations"),
    "ask-batch": (cmd_ask_batch, "answer a VQA-RAD/SLAKE-format question file, write one answer per line"),
    "eval": (
        cmd_eval,
        "evaluate (retrieval: image encoders; vqa, report: vs baselines; kg: linking, finding search); save JSON",
    ),
    "serve": (cmd_serve, "serve the HTTP API (/, docs at /docs) and the web app (/ui)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medsearch", description=__doc__)
    parser.add_argument(
        "--home", type=Path, help="medsearch home folder (MEDSEARCH_HOME, default ./.medsearch)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    parsers = {name: sub.add_parser(name, help=help_) for name, (_, help_) in COMMANDS.items()}

    p = parsers["ingest"]
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("path", type=Path)
    p.add_argument("--collection", default=None)
    p.add_argument(
        "--backend",
        choices=("faiss", "qdrant", "milvus"),
        default=None,
        help="vector backend for a new collection (default faiss)",
    )
    p.add_argument("--json", action="store_true", help="print the ingest summary as JSON")
    p.add_argument("--frames", choices=("middle", "all"), default="middle", help="dicom: multi-frame files")
    p.add_argument(
        "--allow-burned-in",
        action="store_true",
        help="dicom: also ingest images flagged BurnedInAnnotation=YES (text in the pixels)",
    )

    p = parsers["search"]
    p.add_argument("text", nargs="?", default=None)
    p.add_argument("--image", default=None, help="query image file")
    p.add_argument("--json", action="store_true")
    _add_search_options(p)

    p = parsers["search-batch"]
    p.add_argument(
        "--input", required=True, help='JSONL: {"qid": ..., "text": ...} or {"qid": ..., "image": PATH}'
    )
    p.add_argument("--output", required=True, help='JSONL: {"qid": ..., "hits": [{"id": ..., "score": ...}]}')
    _add_search_options(p)

    p = parsers["collections"]
    p.add_argument("--json", action="store_true")

    p = parsers["delete"]
    p.add_argument("ids", nargs="+")
    p.add_argument("--collection", default=None)

    p = parsers["kg"]
    kg_sub = p.add_subparsers(dest="kg_command", required=True)
    q = kg_sub.add_parser("link", help="concepts in a text, with spans and negated/uncertain flags")
    q.add_argument("text")
    q.add_argument("--json", action="store_true")
    q = kg_sub.add_parser("show", help="a concept: synonyms, parents, children, related, linked records")
    q.add_argument("concept", help="concept id (DOID:..., RID..., UMLS:...) or name")
    q.add_argument("--collection", default=None)
    q.add_argument("--json", action="store_true")
    kg_sub.add_parser("stats", help="graph counts by source, semantic type and relation")
    q = kg_sub.add_parser("relink", help="re-link every record of a collection with the current graph")
    q.add_argument("--collection", default=None)

    p = parsers["ask"]
    p.add_argument("--image", default=None, help="the image the question is about")
    p.add_argument("--question", required=True)
    p.add_argument("--json", action="store_true")
    _add_generator_options(p)

    p = parsers["report"]
    p.add_argument("--image", default=None, help="the study image")
    p.add_argument("--indication", default=None, help="clinical indication (alone: a text query)")
    p.add_argument("--k", type=int, default=5, help="similar cases to draft from (default 5)")
    p.add_argument("--collection", default=None, help="collection holding MedPix (and IU X-ray) cases")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--generator",
        default=None,
        help="rephrase with local, openai:URL or vllm:MODEL (kept only if every sentence stays cited)",
    )

    p = parsers["ask-batch"]
    p.add_argument(
        "--input", required=True, help="JSON list: {qid, image_name|img_name, question} (VQA-RAD/SLAKE)"
    )
    p.add_argument("--images", required=True, help="folder the image names are relative to")
    p.add_argument("--output", required=True, help='JSONL: {"qid", "answer", "confidence", "citations", ...}')
    p.add_argument("--batch-size", type=_positive_int, default=64, help="questions encoded together")
    _add_generator_options(p)

    p = parsers["train"]
    p.add_argument("space", choices=("clip", "ssl", "vqa"))
    p.add_argument(
        "--epochs", type=int, default=None, help="passes over the training images (default config)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="ssl: start from random weights (default: from this home's trained clip backbone when there is one)",
    )

    p = parsers["eval"]
    p.add_argument("target", choices=("retrieval", "vqa", "report", "kg"))
    p.add_argument("--folds", type=int, default=5, help="vqa: image-grouped folds over VQA-RAD train")
    p.add_argument(
        "--queries", type=Path, default=None, help="finding query set (default benchmarks/kg_queries.json)"
    )
    p.add_argument("--out", type=Path, default=None, help="metrics JSON (default <home>/eval/<target>.json)")

    p = parsers["demo"]
    p.add_argument("--collection", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-serve", action="store_true", help="stop after the example searches")

    p = parsers["serve"]
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--no-web", action="store_true", help="serve the API only, without the web app at /ui")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="API worker processes, each with its own models and indexes (default 1; more than 1 needs --no-web)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {"home": args.home} if args.home else {}
    try:
        args.settings = Settings(**overrides)
    except ValueError as e:
        print(f"medsearch: invalid settings: {e}", file=sys.stderr)
        return 2
    configure_logging(args.settings.log_level, verbose=args.verbose)
    try:
        return COMMANDS[args.command][0](args)
    except MEDSEARCH_ERRORS as e:
        print(f"medsearch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"medsearch {args.command}: error: {e.filename or e}: file not found", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
