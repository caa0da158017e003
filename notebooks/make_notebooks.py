"""Writes the notebooks from plain Python (run: .venv/bin/python notebooks/make_notebooks.py); keeps their code reviewable."""
import nbformat as nbf
from pathlib import Path

def nb(cells):
    book = nbf.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.cells = [nbf.v4.new_markdown_cell(c[1]) if c[0] == "md" else nbf.v4.new_code_cell(c[1]) for c in cells]
    return book

SETUP = '''import os, tempfile
from pathlib import Path

from engine.settings import Settings
from engine.workspace import Workspace, require_data_dir

# A throwaway home so the notebook never touches your ./.medsearch; set MEDSEARCH_HOME to keep it.
home = Path(os.environ.get("MEDSEARCH_NOTEBOOK_HOME") or tempfile.mkdtemp(prefix="medsearch-nb-"))
settings = Settings(home=home)
data = require_data_dir(settings)   # ../shared/data next to the repo, or MEDSEARCH_DATA
workspace = Workspace(settings)
print("home:", home, "| data:", data)'''

quick = nb([
 ("md", "# 01 · Quickstart\n\nIngest a dataset, search it three ways (keyword, dense, hybrid with the knowledge graph), and look at the result images. Runs on the shared VQA-RAD folder (315 images, CC0) in about a minute on a laptop CPU."),
 ("code", SETUP),
 ("md", "## Ingest\nThe loader validates the folder, images are decoded (unreadable ones are skipped and counted), texts are embedded with all-MiniLM-L6-v2 and linked to concepts. Re-running adds nothing: ids are stable."),
 ("code", '''summary = workspace.ingest("vqa-rad", data / "vqa-rad", progress=False)
summary.as_dict()'''),
 ("code", '''assert summary.added + summary.already_present == 315
workspace.collection().stats()'''),
 ("md", "## Search\n`SearchRequest` is what the CLI, the API and the web app build. Filters use one language for every backend."),
 ("code", '''from engine.search import SearchRequest
from indexers import parse_filters

service = workspace.search_service()
for mode in ("keyword", "dense", "hybrid"):
    hits = service.search(SearchRequest(text="brain hemorrhage", k=5, mode=mode, filter=parse_filters(["body_part=head"])))
    print(f"{mode:>8}:", [h.id for h in hits])
    assert all(h.body_part == "head" for h in hits)'''),
 ("md", "Every hit says why it was returned: rankers and ranks, matched words, matched concepts with their sentence and graph path."),
 ("code", '''hit = service.search(SearchRequest(text="kidney stone", k=1))[0]
hit.to_dict()["why"]'''),
 ("md", "## Show the result images"),
 ("code", '''import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image

hits = service.search(SearchRequest(text="pneumothorax chest x-ray", k=6))
fig, axes = plt.subplots(1, len(hits), figsize=(3 * len(hits), 3.4))
for axis, hit in zip(axes, hits):
    axis.imshow(Image.open(hit.image_path).convert("L"), cmap="gray")
    axis.set_title(f"{hit.id.split(':')[1]}\\n{hit.score:.3f}", fontsize=8)
    axis.axis("off")
plt.tight_layout()
plt.show()
assert all(Path(h.image_path).is_file() for h in hits)'''),
 ("code", "workspace.close()"),
])

kgbook = nb([
 ("md", "# 03 · Knowledge graph\n\nLink report text to concepts with negation and uncertainty, expand a query through the hierarchy, and draw a concept's neighbourhood. The graph is built from the Disease Ontology, RadLex, the SLAKE KG and the curated lexicon in `kg/data/` (about 15 s the first time, cached after)."),
 ("code", SETUP),
 ("code", '''knowledge = workspace.knowledge()
knowledge.graph.stats()["concepts"]'''),
 ("md", "## Link a report\nNegation scopes span coordinated lists and stop at sentence ends and at *but* / *however*."),
 ("code", '''from engine.knowledge import mentions_as_dicts

report = "No pneumothorax or pleural effusion. The heart is mildly enlarged. Possible small left effusion, but no consolidation."
mentions = mentions_as_dicts(knowledge.linker.link(report))
for m in mentions:
    print(f"{m['text']!r:32} -> {m['name']:<20} negated={m['negated']!s:5} uncertain={m['uncertain']}")
names = {m["name"]: m for m in mentions}
assert names["pneumothorax"]["negated"] and names["pleural effusion"]["negated"]
assert names["cardiomegaly"]["negated"] is False'''),
 ("md", "## Expand a query\nA query concept reaches its narrower concepts; the path explains each step."),
 ("code", '''[constraint] = knowledge.constraints("effusion")
print(constraint.name, "->", len(constraint.narrower), "concepts, e.g.")
for concept_id, path in list(constraint.narrower.items())[1:6]:
    print("  ", knowledge.graph.concept(concept_id).name, " <- ", " / ".join(rel for _, rel, _ in path))'''),
 ("md", "## Draw a neighbourhood"),
 ("code", '''import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx

graph = knowledge.graph
center = graph.concept("pneumothorax")
view = nx.DiGraph()
for parent in graph.parents(center.id):
    view.add_edge(center.name, parent.name, label="is_a")
for child in graph.children(center.id)[:6]:
    view.add_edge(child.name, center.name, label="is_a")
for relation, other in graph.related(center.id)[:6]:
    view.add_edge(center.name, other.name[:30], label=relation)
plt.figure(figsize=(9, 6))
layout = nx.spring_layout(view, seed=1)
nx.draw_networkx(view, layout, node_size=300, font_size=7, node_color="#cde")
nx.draw_networkx_edge_labels(view, layout, edge_labels=nx.get_edge_attributes(view, "label"), font_size=6)
plt.axis("off")
plt.show()
assert view.number_of_nodes() > 1'''),
 ("code", "workspace.close()"),
])

evaluate = nb([
 ("md", "# 02 · Evaluate\n\nRetrieval metrics of an image encoder on the held-out split `medsearch-val-v1`, next to the random and raw-pixel baselines, and finding-search metrics with and without the knowledge graph. To run in CI this notebook trains a *tiny* encoder for a few steps and searches a 300-report slice; the real figures come from `medsearch eval retrieval` and `medsearch eval kg` (see the README). Then VQA accuracy (closed / open / overall) of the answer head with retrieval and graph evidence, beside the majority and question-only baselines, on small slices of VQA-RAD (image-grouped folds) and SLAKE (train -> validation); the real figures come from `medsearch eval vqa`."),
 ("code", SETUP),
 ("md", "## Image retrieval on the held-out split"),
 ("code", '''from engine.encoders import create
from engine.encoders.images import ImagePreprocess
from engine.evaluation.retrieval import evaluate_retrieval, format_retrieval_table, plot_retrieval
from engine.training import ClipTrainConfig, load_shared_records, train_clip, validation_split
from engine.training.data import image_records

records = load_shared_records(data)
split = validation_split(records)
print(split.rule, "|", len(image_records(split.validation)), "held-out images")
train = [r for r in image_records(split.train) if r.source != "medpix"][:32]
tiny = ClipTrainConfig(image=ImagePreprocess(size=48), epochs=3, batch_size=8, dim=64, warmup_steps=1,
                       max_seconds=None, threads=1)
checkpoint = train_clip(train, home / "models" / "clip-tiny", tiny, progress=False,
                        text_encoder=workspace.encoder("minilm"))
held_out = image_records(split.validation)[:80]
results = evaluate_retrieval(held_out, {"tiny clip": create(f"trained:{checkpoint}")}, progress=False)
print(format_retrieval_table(results))
assert {"random", "raw-pixel", "tiny clip"} <= set(results["methods"])'''),
 ("code", '''from IPython.display import Image as Show
Show(filename=str(plot_retrieval(results, home / "retrieval.png")))'''),
 ("md", "## Finding search with and without the knowledge graph"),
 ("code", '''import csv, io, json, shutil
from engine.evaluation.kg_eval import evaluate_kg

iu = home / "iu-slice"
iu.mkdir(exist_ok=True)
rows = list(csv.reader(io.StringIO((data / "iu-xray" / "indiana_reports.csv").read_text(encoding="utf-8"))))[:301]
with open(iu / "indiana_reports.csv", "w", newline="", encoding="utf-8") as handle:
    csv.writer(handle).writerows(rows)
for name in ("indiana_projections.csv", "annotation_r2gen.json"):
    shutil.copy(data / "iu-xray" / name, iu / name)
queries = home / "queries.json"
from engine.settings import REPO_ROOT

all_queries = json.loads((REPO_ROOT / "benchmarks" / "kg_queries.json").read_text())
all_queries["findings"] = all_queries["findings"][:6]
queries.write_text(json.dumps(all_queries))
kg = evaluate_kg(workspace, queries, iu)
kg["search"]["all"]'''),
 ("code", '''import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

systems = ["random", "keyword", "dense", "hybrid", "hybrid+kg"]
table = kg["search"]["all"]
fig, axis = plt.subplots(figsize=(7, 3))
axis.bar(systems, [table[s]["MAP"] for s in systems], color=["#bbb", "#8ab", "#8ab", "#59a", "#e76"])
axis.set_ylabel("MAP (300-report slice)")
plt.show()
assert table["hybrid+kg"]["MAP"] >= table["keyword"]["MAP"]'''),
 ("md", "## Visual question answering against question-only baselines"),
 ("code", '''from engine.datasets import load
from engine.vqa import encode_features, evaluate_vqa, vqa_items

def first_images(items, n, split=None):
    keep = sorted({i.record_id for i in items if split is None or i.split == split})[:n]
    return [i for i in items if i.record_id in set(keep)]

rad = first_images([i for i in vqa_items(load("vqa-rad", data / "vqa-rad"), "vqa-rad") if i.split == "train"], 40)
slake_all = vqa_items(load("slake", data / "slake"), "slake")
slake = first_images(slake_all, 40, "train") + first_images(slake_all, 15, "validation")
image_encoders = {"clip": create(f"trained:{checkpoint}")}
encoded = {name: (items, encode_features(items, workspace.encoder("minilm"), image_encoders))
           for name, items in (("vqa-rad", rad), ("slake", slake))}
vqa = evaluate_vqa(encoded, n_folds=2, k=5, graph=workspace.knowledge().graph)
for name, result in vqa["datasets"].items():
    print(name, result["protocol"], result["n_test"], "test questions")
    for system, row in result["systems"].items():
        print(f"  {system:<24} closed {100 * row['closed']:5.1f}  open {100 * row['open']:5.1f}  overall {100 * row['overall']:5.1f}")
assert set(vqa["datasets"]["slake"]["systems"]) >= {"majority", "question-tfidf-lr", "head+retrieval+graph"}'''),
 ("code", '''systems = ["majority", "question-tfidf-lr", "question-minilm-lr", "head+retrieval+graph", "ablation-no-graph", "ablation-no-images"]
fig, axes = plt.subplots(1, 2, figsize=(11, 3), sharey=True)
for axis, (name, result) in zip(axes, vqa["datasets"].items()):
    axis.bar(range(len(systems)), [100 * result["systems"][s]["overall"] for s in systems], color="#59a")
    axis.set_xticks(range(len(systems)), systems, rotation=35, ha="right", fontsize=7)
    axis.set_title(f"{name} (tiny slice)")
axes[0].set_ylabel("overall accuracy (%)")
plt.show()'''),
 ("code", "workspace.close()"),
])

HERE = Path(__file__).resolve().parent
nbf.write(quick, HERE / "01_quickstart.ipynb")
nbf.write(kgbook, HERE / "03_knowledge_graph.ipynb")
nbf.write(evaluate, HERE / "02_evaluate.ipynb")
