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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genen_dgl.data.ontology import DEFAULT_LEAKAGE_WORDS
from genen_dgl.errors import InputError

SECTIONS = {
    "name": None,
    "ppi": {"links", "aliases", "min_score", "alias_source"},
    "go": {"obo", "annotations", "relations", "exclude_words", "gene_column", "go_column"},
    "summaries": {"file", "gene_column", "text_column"},
    "features": {"gene", "go", "gene_ids", "go_ids"},
    "tasks": None,
    "cache": None,
}
TASK_KEYS = {"file", "gene_column", "label_column", "type", "duplicates"}
# keys naming files that must exist (features may be written later by the encoder)
FILE_KEYS = {("ppi", "links"), ("ppi", "aliases"), ("go", "obo"), ("go", "annotations"), ("summaries", "file")}


@dataclass
class Task:
    name: str
    file: Path
    gene_column: str = "Gene name"
    label_column: str = "Label"
    type: str = "auto"
    duplicates: str = "error"  # a gene listed with different labels: error | first | drop


@dataclass
class DatasetSpec:
    path: Path
    name: str
    ppi: dict[str, Any]
    go: dict[str, Any]
    summaries: dict[str, Any]
    features: dict[str, Any]
    tasks: dict[str, Task]
    cache: Path
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def file(self, section: str, key: str) -> Path | None:
        value = getattr(self, section).get(key)
        return None if value is None else Path(value)

    @property
    def exclude_words(self) -> list[str]:
        return list(self.go.get("exclude_words", DEFAULT_LEAKAGE_WORDS) or [])

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
        files = [self.file(s, k) for s, k in sorted(FILE_KEYS)]
        files += [self.file("features", k) for k in ("gene", "go", "gene_ids", "go_ids")]
        return [f for f in files if f is not None]


def load_spec(path: str | Path) -> DatasetSpec:
    """Parse and validate ``dataset.yaml``; relative paths resolve against its folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "dataset.yaml"
    if not path.exists():
        raise InputError("dataset spec not found", path)
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
    root = path.parent
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
        if sections[section].get(key) is not None:
            sections[section][key] = root / sections[section][key]
    for section, key in sorted(FILE_KEYS):
        f = sections[section].get(key)
        if f is not None and not Path(f).exists():
            raise InputError(f"{section}.{key} names a missing file {f}", path)
    if "links" not in sections["ppi"] and "obo" not in sections["go"]:
        raise InputError("the dataset needs ppi.links or go.obo", path)
    tasks = {}
    for tname, tval in (raw.get("tasks") or {}).items():
        if not isinstance(tval, dict) or "file" not in tval:
            raise InputError(f"tasks.{tname}: expected a mapping with at least 'file'", path)
        bad = set(tval) - TASK_KEYS
        if bad:
            raise InputError(f"tasks.{tname}.{sorted(bad)[0]}: unknown key; expected {', '.join(sorted(TASK_KEYS))}", path)
        file = root / tval["file"]
        if not file.exists():
            raise InputError(f"tasks.{tname}.file names a missing file {file}", path)
        tasks[str(tname)] = Task(str(tname), file, **{k: v for k, v in tval.items() if k != "file"})
    return DatasetSpec(
        path=path, name=str(raw.get("name", path.parent.name)), ppi=sections["ppi"], go=sections["go"],
        summaries=sections["summaries"], features=sections["features"], tasks=tasks,
        cache=root / raw.get("cache", ".cache"), raw=raw,
    )
