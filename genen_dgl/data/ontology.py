"""Gene Ontology (OBO 1.2, read with obonet) -> terms, GO-GO relations, alt_id map.

Relations are the ``is_a`` lines and every ``relationship: TYPE TARGET`` line
(``part_of``, ``regulates``, ``has_part`` ...), each kept as its own relation type,
directed child -> parent. Obsolete terms are dropped. The relation graph must be
acyclic for ``is_a`` and every relation must point at a defined, non-obsolete term.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import obonet
import pandas as pd

from genen_dgl.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_LEAKAGE_WORDS = ("soluble", "solubility", "insolubility")
_DEF_TEXT = re.compile(r'^"((?:[^"\\]|\\.)*)"')


@dataclass
class Ontology:
    terms: pd.DataFrame  # columns: id, name, definition (one row per live term)
    relations: pd.DataFrame  # columns: child, parent, relation
    alt_ids: dict[str, str]  # alternative id -> primary id

    def resolve(self, go_id: str) -> str:
        """The primary id of ``go_id`` (itself when it is not an alt_id)."""
        return self.alt_ids.get(go_id, go_id)

    def texts(self) -> pd.Series:
        """GO text per term for the encoder: ``name. definition``."""
        return pd.Series(
            (self.terms["name"] + ". " + self.terms["definition"]).str.strip().to_numpy(),
            index=self.terms["id"].to_numpy(), name="text",
        )

    def without(self, words: tuple[str, ...] | list[str] = (), terms: list[str] = (),
                branches: list[str] = ()) -> "Ontology":
        """Drop, with their relations, the terms whose name or definition contains any of
        ``words`` (case-insensitive substrings: the paper's leakage filter for solubility),
        the ``terms`` listed, and each of ``branches`` with every term below it by ``is_a``
        or ``part_of`` (e.g. GO:0016020 membrane, whose branch states a solubility label)."""
        if not (words or terms or branches):
            return self
        live = set(self.terms["id"])
        for t in [*terms, *branches]:
            if self.resolve(t) not in live:
                raise InputError(f"GO term {t!r} in go.exclude_terms/exclude_branches is not a live term of the ontology")
        dropped = {self.resolve(t) for t in terms}
        if words:
            pattern = "|".join(re.escape(w.lower()) for w in words)
            text = (self.terms["name"] + " " + self.terms["definition"]).str.lower()
            dropped |= set(self.terms.loc[text.str.contains(pattern, regex=True), "id"])
        dropped |= self.below([self.resolve(t) for t in branches])
        rel = self.relations
        rel = rel[~rel["child"].isin(dropped) & ~rel["parent"].isin(dropped)]
        log.info("leakage filter (words %s, %d terms, %d branches): dropped %d GO terms", list(words), len(terms),
                 len(branches), len(dropped))
        alt = {a: p for a, p in self.alt_ids.items() if p not in dropped}
        keep = ~self.terms["id"].isin(dropped)
        return Ontology(self.terms[keep].reset_index(drop=True), rel.reset_index(drop=True), alt)

    def below(self, roots: list[str]) -> set[str]:
        """``roots`` and every term that reaches one of them by ``is_a`` / ``part_of``."""
        tree = self.relations[self.relations["relation"].isin(("is_a", "part_of"))]
        children = tree.groupby("parent")["child"].apply(list).to_dict()
        out, todo = set(roots), list(roots)
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in out:
                    out.add(child)
                    todo.append(child)
        return out


def _line_of(path: Path, needle: str) -> int | None:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if needle in line:
                return number
    return None


def read_ontology(path: str | Path, relations: list[str] | None = None) -> Ontology:
    """Read an OBO file. ``relations`` limits the relation types kept (default: all)."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.stat().st_size == 0:
        raise InputError("file is empty; expected an OBO ontology", path)
    try:
        graph = obonet.read_obo(str(path))
    except (ValueError, KeyError) as err:
        raise InputError(f"not a valid OBO file ({err})", path) from None
    defined = {n for n, data in graph.nodes(data=True) if "name" in data}
    if not defined:
        raise InputError("no [Term] stanza with an id and a name; expected an OBO ontology", path)
    for child, parent, rel in graph.edges(keys=True):
        if parent not in defined:
            line = _line_of(path, f"{parent}") if rel == "is_a" else _line_of(path, f"{rel} {parent}")
            raise InputError(f"term {child} has {rel} {parent}, which is not a defined live term", path, line)
    isa = nx.DiGraph([(c, p) for c, p, r in graph.edges(keys=True) if r == "is_a"])
    if not nx.is_directed_acyclic_graph(isa):  # O(V + E); find_cycle is slow on large DAGs
        cycle = nx.find_cycle(isa)
        loop = " -> ".join([c for c, _ in cycle] + [cycle[0][0]])
        raise InputError(f"is_a cycle {loop}; expected an acyclic ontology", path, _line_of(path, f"id: {cycle[0][0]}"))
    rows = []
    alt_ids = {}
    for node, data in graph.nodes(data=True):
        match = _DEF_TEXT.match(data.get("def", ""))
        rows.append((node, data["name"], match.group(1) if match else ""))
        for alt in data.get("alt_id", []):
            alt_ids[alt] = node
    terms = pd.DataFrame(rows, columns=["id", "name", "definition"]).sort_values("id", ignore_index=True)
    rel = pd.DataFrame(
        [(c, p, r) for c, p, r in graph.edges(keys=True) if relations is None or r in relations],
        columns=["child", "parent", "relation"],
    ).drop_duplicates(ignore_index=True)
    log.info("%s: %d terms, %d relations (%s)", path.name, len(terms), len(rel),
             ", ".join(f"{k}={v}" for k, v in rel["relation"].value_counts().items()))
    return Ontology(terms, rel, alt_ids)
