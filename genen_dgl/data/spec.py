"""The dataset spec: one YAML file naming the sources and options.

Paths are relative to the YAML file. Example (the embedded sample writes one)::

    name: sample
    ppi:       {links: string/links.txt.gz, aliases: string/info.txt.gz, min_score: 150}
    go:        {obo: go/go.obo, annotations: go/genes.gaf,
                exclude_words: [soluble, solubility, insolubility]}
    summaries: {file: text/summaries.csv, gene_column: gene, text_column: summary}
    features:  {gene: features/genes.csv, go: features/go.csv}
    tasks:
      membrane: {file: labels/membrane.csv, gene_column: Gene name, label_column: Label, type: binary}

Real files as they come (``examples/human/dataset.yaml``)::

    ppi:       {links: string.csv.gz, a_column: protein1, b_column: protein2, score_column: score,
                score_scale: 1, min_score: 0.15}          # an edge list of symbols, 0-1 scores
    summaries: {file: [a.csv, b.csv], gene_column: Gene name, text_column: Summary,
                fallback: protein_name}                   # text for genes without a summary
    genes:     {nodes: [ppi, annotations]}                # the gene node set
    features:  {gene: features/genes.npy, go: features/go.npy}   # or {zeros: 384}: no text

``genes.nodes`` lists the sources whose genes are the gene nodes: ``ppi`` (every gene of
the links file), ``annotations`` (every gene of the GAF/BioMart file), ``summaries``
(every gene with a summary), or ``features`` (the gene feature file's ids; the default,
and then alone). ``summaries.fallback`` is the text of a node gene without a summary:
``protein_name`` (the GAF's column 10) or ``none`` (a zero feature vector; the default).
``features.zeros: DIM`` gives every gene and GO node a zero vector of width DIM and needs
no feature file: the "no text" run to compare against.

A task's ``text_column`` (e.g. LitGene's ``Summary``) makes the task file's text its genes'
text, as ``summaries`` are (it wins over a summaries file's text for those genes); the
gene features are then another encoding, read from ``genes.TASK.npy`` (+ ids) beside the
spec's gene feature file (:meth:`DatasetSpec.check_text_features` says how to encode them).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genen_dgl.data.ontology import DEFAULT_LEAKAGE_WORDS
from genen_dgl.errors import InputError

SECTIONS = {
    "base": None,
    "name": None,
    "ppi": {"links", "aliases", "min_score", "alias_source", "a_column", "b_column", "score_column", "score_scale"},
    "go": {"obo", "annotations", "relations", "exclude_words", "exclude_terms", "exclude_branches",
           "gene_column", "go_column"},
    "summaries": {"file", "gene_column", "text_column", "fallback"},
    "genes": {"nodes"},
    "features": {"gene", "go", "gene_ids", "go_ids", "zeros"},
    "tasks": None,
    "cache": None,
}
TASK_KEYS = {"file", "gene_column", "label_column", "type", "duplicates", "text_column"}
NODE_SOURCES = ("features", "ppi", "annotations", "summaries")
FALLBACKS = ("none", "protein_name")
# keys naming files that must exist (features may be written later by the encoder); summaries.file may be a list
FILE_KEYS = {("ppi", "links"), ("ppi", "aliases"), ("go", "obo"), ("go", "annotations"), ("summaries", "file")}


@dataclass
class Task:
    name: str
    file: Path
    gene_column: str = "Gene name"
    label_column: str = "Label"
    type: str = "auto"
    duplicates: str = "error"  # a gene listed with different labels: error | first | drop
    text_column: str | None = None  # the file's gene text (e.g. LitGene's Summary), read as summaries


@dataclass
class DatasetSpec:
    path: Path
    name: str
    ppi: dict[str, Any]
    go: dict[str, Any]
    summaries: dict[str, Any]
    features: dict[str, Any]
    genes: dict[str, Any]
    tasks: dict[str, Task]
    cache: Path
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    text_free_features: dict[str, Any] | None = None  # the features section as given, when task text moved it
    added: list[str] = field(default_factory=list)  # the --labels options of a task added to the file's

    def file(self, section: str, key: str) -> Path | None:
        value = getattr(self, section).get(key)
        return None if value is None else Path(value)

    def files(self, section: str, key: str) -> list[Path]:
        """The file(s) a key names (``summaries.file`` may be a list)."""
        value = getattr(self, section).get(key)
        if value is None:
            return []
        return [Path(v) for v in value] if isinstance(value, (list, tuple)) else [Path(value)]

    @property
    def gene_nodes(self) -> list[str]:
        """Sources of the gene node set (``genes.nodes``; default ``[features]``)."""
        return list(self.genes.get("nodes") or ["features"])

    @property
    def zero_features(self) -> int | None:
        """Width of the all-zero features (``features.zeros``), or None."""
        z = self.features.get("zeros")
        return None if z is None else int(z)

    @property
    def text_fallback(self) -> str:
        return str(self.summaries.get("fallback") or "none")

    @property
    def ppi_options(self) -> dict[str, Any]:
        """Keyword arguments of ``read_string_links`` from the ppi section."""
        p = self.ppi
        out: dict[str, Any] = {"aliases": p.get("aliases"), "score_scale": p.get("score_scale", 1000),
                               "columns": (p.get("a_column", "protein1"), p.get("b_column", "protein2"),
                                           p.get("score_column", "combined_score"))}
        if p.get("min_score") is not None:
            out["min_score"] = float(p["min_score"])
        if "alias_source" in p:
            out["alias_source"] = p["alias_source"]
        return out

    @property
    def exclude_words(self) -> list[str]:
        return list(self.go.get("exclude_words", DEFAULT_LEAKAGE_WORDS) or [])

    @property
    def exclusions(self) -> dict[str, list[str]]:
        """The leakage filter: ``words`` (in a term's name or definition), ``terms`` (GO ids)
        and ``branches`` (GO ids, each with every term below it by is_a / part_of)."""
        return {"words": self.exclude_words, "terms": list(self.go.get("exclude_terms") or []),
                "branches": list(self.go.get("exclude_branches") or [])}

    @property
    def text_tasks(self) -> list[Task]:
        """Tasks whose file gives gene text (``text_column``)."""
        return [t for t in self.tasks.values() if t.text_column]

    def text_sources(self) -> list[tuple[Path, str, str]]:
        """Every (file, gene column, text column) of gene text: the ``summaries`` files,
        then each task file with a ``text_column``."""
        s = self.summaries
        out = [(f, s.get("gene_column", "gene"), s.get("text_column", "summary")) for f in self.files("summaries", "file")]
        return out + [(t.file, t.gene_column, t.text_column) for t in self.text_tasks]

    def add_task(self, task: Task) -> None:
        """A task from outside the spec (``--labels``); its text, if any, is gene text."""
        if task.name in self.tasks:
            raise InputError(f"the dataset already has a task named {task.name!r}; rename the label file", task.file)
        self.tasks[task.name] = task
        self.added += ["--labels", shlex.quote(str(task.file)), "--gene-column", shlex.quote(task.gene_column)]
        if task.text_column:
            self.added += ["--text-column", shlex.quote(task.text_column)]
        self._text_features()

    def check_text_features(self) -> None:
        """Task text must be in the gene features: refuse, with the encode command, when
        they are missing or older than a task file whose text they hold."""
        gene = self.features.get("gene")
        if not self.text_tasks or gene is None or self.zero_features is not None:
            return
        gene = Path(gene)
        command = " ".join(["python -m genen_dgl.encode --model MODEL_DIR --dataset", str(self.path), *self.added])
        names = ", ".join(f"{t.name}.{t.text_column}" for t in self.text_tasks)
        if not gene.exists():
            raise InputError(f"the gene features with the text of {names} are not encoded yet; run: {command}", gene)
        stale = [t for t in self.text_tasks if t.file.stat().st_mtime_ns > gene.stat().st_mtime_ns]
        if stale:
            raise InputError(f"task file {stale[0].file} changed after its text was encoded; run: {command}", gene)

    def _text_features(self) -> None:
        """With task text the gene features are another encoding: they go to their own
        files, ``genes.TASK.npy`` beside the spec's (never over the spec's own features)."""
        names = ".".join(t.name for t in self.text_tasks)
        gene = self.features.get("gene")
        if not names or gene is None or self.zero_features is not None:
            return
        if self.text_free_features is None:
            self.text_free_features = dict(self.features)
        base = self.text_free_features
        for key in ("gene", "gene_ids"):
            if base.get(key) is not None:
                path = Path(base[key])
                stem, suffix = (path.name[:-len(".ids.txt")], ".ids.txt") if path.name.endswith(".ids.txt") \
                    else (path.stem, path.suffix)
                self.features[key] = path.with_name(f"{stem}.{names}{suffix}")

    def task(self, name: str | None) -> Task:
        if not self.tasks:
            raise InputError("the dataset defines no tasks", self.path)
        if name is None:
            return next(iter(self.tasks.values()))
        if name not in self.tasks:
            raise InputError(f"unknown task {name!r}; the dataset defines {', '.join(self.tasks)}", self.path)
        return self.tasks[name]

    def input_files(self) -> list[Path]:
        """Every file the graph is built from (the cache key covers them)."""
        files = [f for s, k in sorted(FILE_KEYS) for f in self.files(s, k)] + [t.file for t in self.text_tasks]
        if self.zero_features is None:
            files += [f for k in ("gene", "go", "gene_ids", "go_ids") for f in self.files("features", k)]
        return files


def read_raw(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict, dict[str, Path]]:
    """The spec's mapping with its ``base`` chain applied, and the folder that each
    section's relative paths resolve against. ``base: OTHER.yaml`` (relative to this file)
    starts from OTHER's sections; a section given here replaces OTHER's whole section."""
    if not path.exists():
        raise InputError("dataset spec not found", path)
    if path.resolve() in seen:
        raise InputError("base specs form a cycle", path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"not valid YAML ({getattr(err, 'problem', err)})", path, mark.line + 1 if mark else None) from None
    if not isinstance(raw, dict):
        raise InputError("expected a mapping with sections ppi, go, features, tasks", path)
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise InputError(f"unknown section {sorted(unknown)[0]!r}; expected {', '.join(SECTIONS)}", path)
    roots = {k: path.parent for k in raw}
    if "base" in raw:
        if not isinstance(raw["base"], str):
            raise InputError(f"base: expected the file name of another spec, found {raw['base']!r}", path)
        base, base_roots = read_raw(path.parent / raw["base"], seen + (path.resolve(),))
        raw = {**base, **{k: v for k, v in raw.items() if k != "base"}}
        roots = {**base_roots, **{k: r for k, r in roots.items() if k != "base"}}
    return raw, roots


def load_spec(path: str | Path) -> DatasetSpec:
    """Parse and validate ``dataset.yaml``; relative paths resolve against the folder of
    the file that gives their section (the spec itself, or its ``base``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "dataset.yaml"
    raw, roots = read_raw(path)
    sections: dict[str, dict] = {}
    for name, keys in SECTIONS.items():
        value = raw.get(name) or {}
        if keys is None:
            continue
        if not isinstance(value, dict):
            raise InputError(f"section {name!r} must be a mapping", path)
        bad = set(value) - keys
        if bad:
            raise InputError(f"{name}.{sorted(bad)[0]}: unknown key; expected one of {', '.join(sorted(keys))}", path)
        sections[name] = dict(value)
    for section, key in [("features", k) for k in ("gene", "go", "gene_ids", "go_ids")] + sorted(FILE_KEYS):
        value = sections[section].get(key)
        if value is None:
            continue
        if isinstance(value, list) and (section, key) == ("summaries", "file"):
            if not value or not all(isinstance(v, str) for v in value):
                raise InputError(f"{section}.{key}: expected a file name or a list of file names", path)
            sections[section][key] = [roots[section] / v for v in value]
        elif isinstance(value, str):
            sections[section][key] = roots[section] / value
        else:
            raise InputError(f"{section}.{key}: expected a file name, found {value!r}", path)
    for section, key in sorted(FILE_KEYS):
        value = sections[section].get(key)
        for f in value if isinstance(value, list) else [value]:
            if f is not None and not Path(f).exists():
                raise InputError(f"{section}.{key} names a missing file {f}", path)
    if "links" not in sections["ppi"] and "obo" not in sections["go"]:
        raise InputError("the dataset needs ppi.links or go.obo", path)
    _check_options(sections, path)
    tasks = {}
    for tname, tval in (raw.get("tasks") or {}).items():
        if not isinstance(tval, dict) or "file" not in tval:
            raise InputError(f"tasks.{tname}: expected a mapping with at least 'file'", path)
        bad = set(tval) - TASK_KEYS
        if bad:
            raise InputError(f"tasks.{tname}.{sorted(bad)[0]}: unknown key; expected {', '.join(sorted(TASK_KEYS))}", path)
        file = roots["tasks"] / tval["file"]
        if not file.exists():
            raise InputError(f"tasks.{tname}.file names a missing file {file}", path)
        tasks[str(tname)] = Task(str(tname), file, **{k: v for k, v in tval.items() if k != "file"})
    spec = DatasetSpec(
        path=path, name=str(raw.get("name", path.parent.name)), ppi=sections["ppi"], go=sections["go"],
        summaries=sections["summaries"], features=sections["features"], genes=sections["genes"], tasks=tasks,
        cache=roots.get("cache", path.parent) / raw.get("cache", ".cache"), raw=raw,
    )
    spec._text_features()
    return spec


def run_spec(path: str | Path, config) -> DatasetSpec:
    """The spec a run trains on: ``path``, with the run's ``--labels`` file (``config.labels``
    and its columns) added as a task named by the file's stem."""
    spec = load_spec(path)
    if getattr(config, "labels", None):
        file = Path(config.labels)
        if not file.exists():
            raise InputError("--labels names a missing file", file)
        spec.add_task(Task(file.stem, file, config.gene_column or "Gene name", config.label_column or "Label",
                           config.task_type or "auto", text_column=config.text_column))
    return spec


def _check_options(sections: dict[str, dict], path: Path) -> None:
    """The new options' values, each with a one-line error naming the key."""
    ppi, genes, features, summaries = (sections[k] for k in ("ppi", "genes", "features", "summaries"))
    if ppi.get("score_scale", 1000) not in (1, 1000):
        raise InputError(f"ppi.score_scale: expected 1000 (STRING's 0-1000 scores) or 1 (0-1 scores), "
                         f"found {ppi['score_scale']!r}", path)
    for key in ("a_column", "b_column", "score_column"):
        if key in ppi and not isinstance(ppi[key], str):
            raise InputError(f"ppi.{key}: expected a column name, found {ppi[key]!r}", path)
    if "min_score" in ppi and not isinstance(ppi["min_score"], (int, float)):
        raise InputError(f"ppi.min_score: expected a number, found {ppi['min_score']!r}", path)
    nodes = genes.get("nodes", ["features"])
    if isinstance(nodes, str):
        nodes = genes["nodes"] = [nodes]
    if not isinstance(nodes, list) or not nodes or any(n not in NODE_SOURCES for n in nodes):
        raise InputError(f"genes.nodes: expected a list of {', '.join(NODE_SOURCES)}, found {nodes!r}", path)
    if "features" in nodes and len(nodes) > 1:
        raise InputError("genes.nodes: 'features' (the feature file's ids) cannot be combined with other sources", path)
    needs = {"ppi": ("ppi", "links"), "annotations": ("go", "annotations"), "summaries": ("summaries", "file")}
    for n in nodes:
        if n in needs and not sections[needs[n][0]].get(needs[n][1]):
            raise InputError(f"genes.nodes lists {n!r} but {'.'.join(needs[n])} is not set", path)
    zeros = features.get("zeros")
    if zeros is not None:
        if isinstance(zeros, bool) or not isinstance(zeros, int) or zeros < 1:
            raise InputError(f"features.zeros: expected a feature width (a positive integer), found {zeros!r}", path)
        if "features" in nodes:
            raise InputError("features.zeros needs genes.nodes (there is no feature file to take the genes from)", path)
        other = sorted(k for k in features if k != "zeros")
        if other:
            raise InputError(f"features.zeros excludes features.{other[0]}: zero features read no file", path)
    fallback = summaries.get("fallback", "none")
    if fallback not in FALLBACKS:
        raise InputError(f"summaries.fallback: expected one of {', '.join(FALLBACKS)}, found {fallback!r}", path)
    if fallback == "protein_name" and not sections["go"].get("annotations"):
        raise InputError("summaries.fallback: protein_name reads the GAF's protein names; go.annotations is not set", path)
