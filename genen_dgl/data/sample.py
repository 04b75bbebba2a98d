"""Deterministic sample datasets in the real file formats.

``python -m genen_dgl.data.sample --out DIR [--scale S] [--seed N]`` writes STRING links
and protein info, an OBO ontology, a GAF file, gene summaries, node features and three
LitGene-style label CSVs (binary, multiclass, regression), plus ``DIR/dataset.yaml``.

Without ``--scale`` it is a small graph that builds in seconds. ``--scale S`` gives the paper's
node sets (14,450 genes, 47,595 GO terms, 768-d features) with S times its edges
(13,067,420 PPI pairs, 393,231 gene-GO and 83,796 GO-GO relations at S=1), for benchmarks.

Generative model: each gene belongs to one of ``K`` latent communities. PPI partners and
GO annotations are mostly drawn from the gene's own community, and GO terms of a
community hang together in the ontology. A gene's features carry only a weak, noisy hint
of its community (noisier for genes with short summaries, the "less studied" ones),
while its labels are functions of the community. Aggregating over neighbours denoises
the hint, so message passing beats a per-gene classifier on these labels.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from genen_dgl.atomic import atomic_dir
from genen_dgl.errors import InputError, cli
from genen_dgl.provenance import add_version

log = logging.getLogger(__name__)

OWNER = "genen_dgl.data.sample"  # the marker of a sample folder (genen_dgl.atomic)

PAPER = dict(genes=14_450, go=47_595, ppi=13_067_420, gene_go=393_231, go_go=83_796, dim=768)
SMALL = dict(genes=600, go=240, ppi=7_000, gene_go=3_000, go_go=420, dim=64)
TAXON = "9606"
RELATIONS = ("is_a", "part_of", "regulates")
VOCAB = ["kinase", "membrane", "receptor", "nuclear", "transport", "ribosome", "mitochondrial", "signaling",
         "channel", "binding", "enzyme", "transcription", "synapse", "immune", "metabolic", "repair"]
FILLER = ["the", "protein", "encoded", "by", "this", "gene", "is", "involved", "in", "and", "of", "a", "cell",
          "activity", "process", "regulation", "function", "complex", "pathway", "domain"]


@dataclass
class Sizes:
    genes: int
    go: int
    ppi: int
    gene_go: int
    go_go: int
    dim: int
    communities: int = 6

    @classmethod
    def of(cls, scale: float | None, dim: int | None = None) -> "Sizes":
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise InputError(f"--scale {scale:g}: expected a number > 0 (times the paper's edge counts)")
        if dim is not None and dim < 1:
            raise InputError(f"--dim {dim}: expected a feature width >= 1")
        if scale is None:
            base = SMALL
        else:  # the paper's node sets, S times its edges
            base = {k: (v if k in ("genes", "go") else max(int(round(v * scale)), 1)) for k, v in PAPER.items()}
        return cls(**{**base, "dim": dim if dim is not None else (SMALL["dim"] if scale is None else PAPER["dim"])})


def protein_id(i: np.ndarray | int) -> np.ndarray | str:
    return f"{TAXON}.ENSP{int(i):011d}" if np.isscalar(i) else np.char.add(f"{TAXON}.ENSP", np.char.zfill(np.asarray(i).astype(str), 11))


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """ASCII digits of non-negative ints, zero padded, as an (n, width) uint8 array."""
    out = np.empty((len(values), width), np.uint8)
    v = values.astype(np.int64).copy()
    for col in range(width - 1, -1, -1):
        out[:, col] = 48 + v % 10
        v //= 10
    return out


def write_links_fast(path: Path, prot_a: np.ndarray, prot_b: np.ndarray, scores: np.ndarray) -> None:
    """Write ``9606.ENSP... 9606.ENSP... score`` lines with vectorised formatting (GBs/s,
    where Python formatting of 13M lines takes minutes)."""
    prefix = np.frombuffer(f"{TAXON}.ENSP".encode(), np.uint8)
    n, p = len(prot_a), len(prefix)
    width = 2 * (p + 11) + 3 + 3  # two ids, a 3-digit score, two spaces and a newline
    buf = np.empty((n, width), np.uint8)
    buf[:, :p] = prefix
    buf[:, p:p + 11] = _digits(prot_a, 11)
    buf[:, p + 11] = ord(" ")
    o = p + 12
    buf[:, o:o + p] = prefix
    buf[:, o + p:o + p + 11] = _digits(prot_b, 11)
    buf[:, o + p + 11] = ord(" ")
    buf[:, -4:-1] = _digits(scores, 3)
    buf[:, -1] = ord("\n")
    # mtime=0 keeps the .gz bytes a function of the seed alone (gzip stamps the time otherwise)
    opener = partial(gzip.GzipFile, mtime=0) if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(b"protein1 protein2 combined_score\n")
        fh.write(buf.tobytes())


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    keys = np.sort(keys)  # numpy's hash-based unique is far slower on 10^7 int64 keys
    keep = np.ones(len(keys), dtype=bool)
    keep[1:] = keys[1:] != keys[:-1]
    return keys[keep]


def _unique_pairs(rng, n: int, count: int, community: np.ndarray, members: list[np.ndarray]) -> np.ndarray:
    """``count`` distinct unordered pairs (a < b); about half as dense inside communities
    as it can be, the rest uniform. Draws are sized from the expected collision rate, so
    this takes one or two rounds."""
    space = n * (n - 1) // 2
    if count > space:
        raise ValueError(f"{count} pairs do not fit among {n} genes")
    within_space = sum(len(m) * (len(m) - 1) // 2 for m in members)
    homophily = min(0.8, 0.5 * within_space / count)
    keys = np.empty(0, np.int64)
    while len(keys) < count:
        needed, free = count - len(keys), space - len(keys)
        m = int(-free * np.log1p(-min(needed / free, 0.999)) * 1.05) + 64
        a = rng.integers(0, n, m)
        b = rng.integers(0, n, m)
        inside = rng.random(m) < homophily
        for c, mem in enumerate(members):
            sel = inside & (community[a] == c)
            b[sel] = mem[rng.integers(0, len(mem), sel.sum())]
        ok = a != b
        lo, hi = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
        keys = _sorted_unique(np.concatenate([keys, lo.astype(np.int64) * n + hi]))
    keys = rng.permutation(keys)[:count]
    return np.stack([keys // n, keys % n], 1)


def generate(out: Path, scale: float | None = None, seed: int = 0, dim: int | None = None) -> Path:
    """Write a sample dataset into ``out`` (atomically; an existing ``out`` only if it is
    an earlier sample or empty) and return ``out/dataset.yaml``."""
    sizes = Sizes.of(scale, dim)
    out = Path(out)
    with atomic_dir(out, OWNER) as tmp:
        _generate(tmp, sizes, seed, small=scale is None)
    return out / "dataset.yaml"


def _generate(out: Path, s: Sizes, seed: int, small: bool) -> None:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for sub in ("string", "go", "text", "features", "labels"):
        (out / sub).mkdir()
    K = s.communities
    genes = np.array([f"GN{i:05d}" for i in range(s.genes)])
    community = rng.integers(0, K, s.genes)
    members = [np.flatnonzero(community == c) for c in range(K)]

    # --- summaries: long-tailed word counts, community words; "less studied" genes are short
    words = np.clip(rng.lognormal(3.6, 0.7, s.genes).astype(int), 5, 400)
    vocab = np.array(VOCAB)
    filler = np.array(FILLER)
    if small:
        summaries = []
        for i in range(s.genes):
            own = vocab[(community[i] * 2 + rng.integers(0, 3, words[i])) % len(vocab)]
            text = np.where(rng.random(words[i]) < 0.3, own, filler[rng.integers(0, len(filler), words[i])])
            summaries.append(f"{genes[i]} " + " ".join(text) + ".")
    else:  # at scale only the word count matters; keep it cheap
        summaries = [f"{g} " + " ".join(["gene"] * (w - 1)) + "." for g, w in zip(genes, words)]
    pd.DataFrame({"gene": genes, "summary": summaries}).to_csv(out / "text/summaries.csv", index=False)

    # --- features: weak community hint, noise shrinking with summary length
    centers = rng.normal(0, 1, (K, s.dim)).astype(np.float32)
    hint = 0.35 if small else 0.5
    noise = (1.0 + 6.0 / np.sqrt(words))[:, None].astype(np.float32)
    gene_x = hint * centers[community] + noise * rng.normal(0, 1, (s.genes, s.dim)).astype(np.float32)

    # --- ontology: terms assigned to communities; parents chosen among earlier terms of the same community
    go_ids = np.array([f"GO:{i + 1:07d}" for i in range(s.go)])
    go_comm = rng.integers(0, K, s.go)
    go_comm[0] = -1  # the root
    go_x = 1.5 * np.where(go_comm[:, None] >= 0, centers[np.maximum(go_comm, 0)], 0) \
        + rng.normal(0, 1, (s.go, s.dim)).astype(np.float32)
    n_rel = int(s.go_go * 1.02) + 8  # a few more than needed: duplicates are dropped below
    rel_child = np.concatenate([np.arange(1, s.go), rng.integers(2, s.go, max(n_rel - (s.go - 1), 0))])[:n_rel]
    rel_parent = np.empty(len(rel_child), np.int64)
    rel_type = np.zeros(len(rel_child), np.int64)
    first = np.arange(len(rel_child)) < s.go - 1  # every term's first is_a keeps the DAG connected
    rel_parent[first] = np.maximum(rel_child[first] - 1 - rng.integers(0, 50, first.sum()), 0)
    extra = ~first
    rel_parent[extra] = (rng.random(extra.sum()) * rel_child[extra]).astype(np.int64)
    rel_type[extra] = rng.integers(0, len(RELATIONS), extra.sum())
    pairs = pd.DataFrame({"c": rel_child, "p": rel_parent, "r": rel_type}).drop_duplicates().iloc[: s.go_go]
    obsolete = 3 if small else 30
    alt_of = rng.choice(np.arange(1, s.go), size=min(20 if small else 500, s.go - 1), replace=False)
    names = np.array([f"{vocab[c % len(vocab)]} {FILLER[i % len(FILLER)]} term {i}" for i, c in enumerate(go_comm)])
    if small:
        names[5] = "soluble fraction"  # caught by the solubility leakage filter
    _write_obo(out / "go/go-basic.obo", go_ids, names, pairs, alt_of, obsolete)

    # --- annotations: mostly own-community terms; alt_ids and NOT rows as real GAFs have
    go_members = [np.flatnonzero(go_comm == c) for c in range(K)]
    ann_gene = rng.integers(0, s.genes, int(s.gene_go * 1.15))
    own = rng.random(len(ann_gene)) < 0.8
    ann_go = rng.integers(1, s.go, len(ann_gene))
    for c in range(K):
        sel = own & (community[ann_gene] == c)
        ann_go[sel] = go_members[c][rng.integers(0, len(go_members[c]), sel.sum())]
    ann = pd.DataFrame({"g": ann_gene, "t": ann_go}).drop_duplicates().iloc[: s.gene_go]
    go_text = go_ids[ann["t"].to_numpy()].astype(object)
    alt_map = {int(t): f"GO:{s.go + 100 + j:07d}" for j, t in enumerate(alt_of)}
    use_alt = ann["t"].isin(alt_map).to_numpy() & (rng.random(len(ann)) < 0.5)
    go_text[use_alt] = [alt_map[int(t)] for t in ann["t"].to_numpy()[use_alt]]
    _write_gaf(out / "go/goa_human.gaf", genes[ann["g"].to_numpy()], go_text, rng)

    # --- PPI: distinct gene pairs, mostly within communities; proteins -> genes
    pair = _unique_pairs(rng, s.genes, s.ppi, community, members)
    score = rng.integers(151, 1000, len(pair))
    prot_a, prot_b = pair[:, 0] * 2, pair[:, 1] * 2  # protein 2i is gene i's first product
    n_extra = 0
    if small:  # a second product for some genes, duplicate pairs and sub-threshold lines
        dup = rng.random(len(pair)) < 0.1
        low = rng.integers(0, s.genes, (200, 2))
        prot_a = np.concatenate([prot_a, pair[dup, 0] * 2 + 1, low[:, 0] * 2])
        prot_b = np.concatenate([prot_b, pair[dup, 1] * 2, low[:, 1] * 2])
        score = np.concatenate([score, rng.integers(151, 1000, dup.sum()), rng.integers(0, 151, 200)])
        n_extra = 25  # genes STRING knows but the feature file lacks
        extra = rng.integers(0, s.genes, (300, 2))
        prot_a = np.concatenate([prot_a, (s.genes + extra[:, 0] % n_extra) * 2])
        prot_b = np.concatenate([prot_b, extra[:, 1] * 2])
        score = np.concatenate([score, rng.integers(151, 1000, 300)])
        both = np.concatenate([np.arange(len(prot_a)), np.arange(len(prot_a))])  # STRING lists both directions
        prot_a, prot_b = np.concatenate([prot_a, prot_b]), np.concatenate([prot_b, prot_a])
        score = score[both]
    suffix = ".txt.gz" if small else ".txt"
    write_links_fast(out / f"string/{TAXON}.protein.links.v12.0{suffix}", prot_a, prot_b, score)
    all_genes = np.concatenate([genes, [f"XG{i:03d}" for i in range(n_extra)]])
    prot = np.arange(2 * len(all_genes))
    info = pd.DataFrame({"#string_protein_id": protein_id(prot), "preferred_name": all_genes[prot // 2],
                         "protein_size": 300 + prot % 700, "annotation": "sample protein"})
    info.to_csv(out / f"string/{TAXON}.protein.info.v12.0{suffix}", sep="\t", index=False,
                compression={"method": "gzip", "mtime": 0} if small else None)

    # --- features on disk: CSV like the original Genen files (small) or .npy + ids (scale)
    features = _write_features(out, small, genes, gene_x, go_ids, go_x)

    # --- labels: functions of the community, a share of genes labelled
    labelled = lambda share: np.sort(rng.choice(s.genes, int(share * s.genes), replace=False))  # noqa: E731
    flip = lambda y, p: np.where(rng.random(len(y)) < p, 1 - y, y)  # noqa: E731
    tasks = {}
    idx = labelled(0.6)
    y = flip((community[idx] < K // 2).astype(int), 0.05)
    tasks["membrane"] = _write_labels(out, "membrane", genes[idx], y, ["Soluble", "Membrane"], summaries, idx)
    idx = labelled(0.5)
    tasks["localization"] = _write_labels(out, "localization", genes[idx], community[idx] % 3,
                                          ["Cytoplasm", "Nucleus", "Secreted"], summaries, idx)
    idx = labelled(0.7)
    level = rng.normal(0, 1, K)
    value = level[community[idx]] + 0.3 * rng.normal(0, 1, len(idx))
    tasks["conservation"] = _write_labels(out, "conservation", genes[idx], value, None, summaries, idx)

    spec = {
        "name": "sample" if small else f"synthetic-x{s.ppi / PAPER['ppi']:g}",
        "ppi": {"links": f"string/{TAXON}.protein.links.v12.0{suffix}",
                "aliases": f"string/{TAXON}.protein.info.v12.0{suffix}", "min_score": 150},
        "go": {"obo": "go/go-basic.obo", "annotations": "go/goa_human.gaf",
               "exclude_words": ["soluble", "solubility", "insolubility"]},
        "summaries": {"file": "text/summaries.csv", "gene_column": "gene", "text_column": "summary"},
        "features": features,
        "tasks": tasks,
    }
    (out / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    log.info("sample dataset written in %.1f s", time.perf_counter() - t0)


def _write_obo(path: Path, ids, names, pairs: pd.DataFrame, alt_of, obsolete: int) -> None:
    by_child = {c: g for c, g in pairs.groupby("c")}
    alt_of = {int(t): j for j, t in enumerate(alt_of)}
    n = len(ids)
    lines = ["format-version: 1.2", "ontology: go/sample", ""]
    for i in range(n):
        lines += ["[Term]", f"id: {ids[i]}", f"name: {names[i]}", "namespace: biological_process"]
        if i in alt_of:
            lines.append(f"alt_id: GO:{n + 100 + alt_of[i]:07d}")
        lines.append(f'def: "A sample term about {names[i]}." [GOC:sample]')
        group = by_child.get(i)
        if group is not None:
            for p, r in zip(group["p"].to_numpy(), group["r"].to_numpy()):
                rel = RELATIONS[r]
                lines.append(f"is_a: {ids[p]} ! {names[p]}" if rel == "is_a" else f"relationship: {rel} {ids[p]} ! {names[p]}")
        lines.append("")
    for j in range(obsolete):
        lines += ["[Term]", f"id: GO:{n + 10 + j:07d}", f"name: obsolete term {j}", "is_obsolete: true", ""]
    for rel in RELATIONS[1:]:
        lines += ["[Typedef]", f"id: {rel}", f"name: {rel.replace('_', ' ')}", ""]
    path.write_text("\n".join(lines))


def _write_gaf(path: Path, genes: np.ndarray, go: np.ndarray, rng) -> None:
    """One row per annotation, plus 2% ``NOT`` rows (which readers must drop)."""
    neg = rng.choice(len(genes), len(genes) // 50, replace=False)
    genes, go = np.concatenate([genes, genes[neg]]), np.concatenate([go, rng.permutation(go[neg])])
    order = rng.permutation(len(genes))
    genes, go = genes[order], go[order]
    n = len(genes)
    qualifier = np.where(order >= n - len(neg), "NOT|involved_in", "involved_in")
    frame = pd.DataFrame({
        0: "UniProtKB", 1: [f"P{i:05d}" for i in range(n)], 2: genes, 3: qualifier, 4: go,
        5: "GO_REF:0000043", 6: "IEA", 7: "", 8: "P", 9: "sample protein", 10: "", 11: "protein",
        12: f"taxon:{TAXON}", 13: "20260101", 14: "UniProt", 15: "", 16: "",
    })
    with open(path, "w") as fh:
        fh.write("!gaf-version: 2.2\n!generated-by: genen_dgl.data.sample\n")
        frame.to_csv(fh, sep="\t", header=False, index=False)


def _write_features(out: Path, small: bool, genes, gene_x, go_ids, go_x) -> dict:
    if small:
        for name, ids, x in (("genes", genes, gene_x), ("go", go_ids, go_x)):
            frame = pd.DataFrame(x.round(5), columns=[f"v{i + 1}" for i in range(x.shape[1])])
            frame.insert(0, "id", ids)
            frame.to_csv(out / f"features/{name}.csv", index=False)
        return {"gene": "features/genes.csv", "go": "features/go.csv"}
    for name, ids, x in (("genes", genes, gene_x), ("go", go_ids, go_x)):
        np.save(out / f"features/{name}.npy", x.astype(np.float32))
        (out / f"features/{name}.ids.txt").write_text("\n".join(ids) + "\n")
    return {"gene": "features/genes.npy", "gene_ids": "features/genes.ids.txt",
            "go": "features/go.npy", "go_ids": "features/go.ids.txt"}


def _write_labels(out: Path, name: str, genes, y, classes, summaries, idx) -> dict:
    text = [summaries[i] for i in idx]
    if classes is None:
        frame = pd.DataFrame({"Gene name": genes, "Label": np.round(y, 4), "Summary": text})
        kind = "regression"
    else:
        frame = pd.DataFrame({"Gene name": genes, "StrLabel": np.array(classes)[y], "Label": y, "Summary": text})
        kind = "binary" if len(classes) == 2 else "multiclass"
    frame.to_csv(out / f"labels/{name}.csv", index=False)
    return {"file": f"labels/{name}.csv", "gene_column": "Gene name", "label_column": "Label", "type": kind}


def default_sample_dir() -> Path:
    """Where the embedded sample lives when no dataset is given."""
    import os
    root = os.environ.get("GENEN_DGL_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "genen_dgl")
    return Path(root) / "sample-seed0"


def ensure_sample(path: Path | None = None) -> Path:
    """The embedded sample's ``dataset.yaml``, generated on first use."""
    out = Path(path) if path else default_sample_dir()
    if not (out / "dataset.yaml").exists():
        log.info("generating the embedded sample dataset in %s", out)
        generate(out)
    return out / "dataset.yaml"


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genen_dgl.data.sample", description=__doc__.split("\n\n")[0])
    add_version(parser)
    parser.add_argument("--out", type=Path, required=True,
                        help="folder to write (an earlier sample there is replaced; any other folder is refused)")
    parser.add_argument("--scale", type=float, help="paper-size node sets with SCALE times the paper's edges "
                        "(omit for the small sample)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    parser.add_argument("--dim", type=int, help="feature width (default 64 small, 768 at scale)")
    parser.add_argument("--build", action="store_true", help="also build and cache the graph, and print it")
    args = parser.parse_args(argv)
    spec = generate(args.out, args.scale, args.seed, args.dim)
    print(spec)
    if args.build:
        from genen_dgl.data.graph import load_graph
        print(load_graph(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
