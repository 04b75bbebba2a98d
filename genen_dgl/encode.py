"""Encode gene summaries and GO texts with a local BERT-style model -> node feature files.

``python -m genen_dgl.encode --model DIR --dataset PATH/dataset.yaml`` encodes the spec's
gene texts and every GO term's ``name. definition`` and writes the files its
``features`` section names (``features/genes.npy`` + ids and ``features/go.npy`` + ids
beside the yaml when none are set, recorded in the yaml). The gene texts are the
summaries, one row per summary, or, when the spec sets ``genes.nodes``, one row per gene
node: its summary, else its ``summaries.fallback`` text, else a zero vector.
``--input texts.csv --out PATH`` encodes a plain CSV with columns ``id,text``.

Recipe (GeneLLM-Base): tokenise (at most ``--max-length`` tokens, longer texts truncated and
counted), run the model, mean-pool the last hidden state weighted by the attention mask,
float32 out. The model is loaded from ``DIR`` only (``local_files_only``, ``HF_HUB_OFFLINE``):
nothing is downloaded. Embeddings are cached per model and text (sha256) in shards under
``<output folder>/.encode-cache/<model key>/``, written as each group of batches finishes, so
a re-run encodes only new or changed texts and an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from genen_dgl.atomic import atomic_path
from genen_dgl.data.features import read_features, read_ids
from genen_dgl.data.genes import gene_node_ids, gene_texts, read_spec_summaries
from genen_dgl.data.ontology import read_ontology
from genen_dgl.data.spec import DatasetSpec, load_spec, run_spec
from genen_dgl.data.tables import collapse_duplicates, read_table
from genen_dgl.device import pick_device
from genen_dgl.errors import InputError, cli
from genen_dgl.provenance import add_version

log = logging.getLogger(__name__)

RECIPE = "mean-pool-last-hidden/v1"  # part of the cache key: change it when the pooling changes
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.safetensors.index.json", "*.bin.index.json")
VOCAB_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
TOKENIZER_FILES = VOCAB_FILES + ("tokenizer_config.json", "merges.txt", "special_tokens_map.json")
SAVED = "expected a transformers model saved with save_pretrained"
DTYPES = ("fp32", "bf16", "fp16")
LOG_EVERY = 50  # batches between progress lines when there is no terminal for a bar


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_model_dir(model_dir: str | Path) -> list[Path]:
    """The weight files of a ``save_pretrained`` folder (model and tokenizer); InputError naming what is missing."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError(f"model directory not found; {SAVED}", model_dir)
    if not (model_dir / "config.json").is_file():
        raise InputError(f"model directory has no config.json; {SAVED}", model_dir)
    weights = sorted(p for pattern in WEIGHT_FILES for p in model_dir.glob(pattern))
    if not weights:
        raise InputError(f"model directory has no weights (model.safetensors or pytorch_model.bin); {SAVED}", model_dir)
    if not any((model_dir / name).is_file() for name in VOCAB_FILES):  # transformers would build an empty vocab
        raise InputError("model directory has no tokenizer vocabulary (tokenizer.json or vocab.txt); save the "
                         "tokenizer with save_pretrained too", model_dir)
    return weights


def model_key(model_dir: str | Path, max_length: int, dtype: str = "fp32") -> str:
    """Cache key of a model: its folder name + a hash of config.json, the tokenizer files,
    the weight files' names, sizes and mtimes, the pooling recipe, max length and dtype."""
    model_dir = Path(model_dir)
    weights = check_model_dir(model_dir)
    h = hashlib.sha256(f"{RECIPE}|max_length={max_length}|dtype={dtype}".encode())
    h.update(_sha256_file(model_dir / "config.json").encode())
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            h.update(f"{name}:{_sha256_file(model_dir / name)}".encode())
    for w in weights:
        st = w.stat()
        h.update(f"{w.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", model_dir.resolve().name) or "model"
    return f"{name}-{h.hexdigest()[:16]}"


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def mean_pool(hidden, mask):
    """Attention-mask-weighted mean of ``hidden`` (batch, tokens, dim) over tokens, float32."""
    m = mask.unsqueeze(-1).to(hidden.device).float()
    return (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)


class Encoder:
    """A local transformers model with the mean-pooling recipe."""

    def __init__(self, model_dir: str | Path, device: str = "auto", dtype: str = "fp32",
                 max_length: int = 512, batch_size: int = 32):
        self.model_dir = Path(model_dir)
        if dtype not in DTYPES:
            raise InputError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
        check_model_dir(self.model_dir)  # before the slow imports
        os.environ["HF_HUB_OFFLINE"] = "1"  # never reach the hub, whatever the model's files say
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.device = pick_device(device)
        if dtype != "fp32" and self.device.type == "cpu":
            raise InputError(f"--dtype {dtype} needs a GPU (--device cuda); on the CPU use fp32")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        except Exception as err:  # transformers raises OSError, ValueError, KeyError ... on bad folders
            raise InputError(f"cannot load the tokenizer ({_first_line(err)}); {SAVED}", self.model_dir) from None
        try:
            self.model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True)
        except Exception as err:
            raise InputError(f"cannot load the model ({_first_line(err)}); {SAVED}", self.model_dir) from None
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise InputError("the tokenizer has no pad or eos token; cannot batch", self.model_dir)
            self.tokenizer.pad_token = self.tokenizer.eos_token
        limit = getattr(self.model.config, "max_position_embeddings", None) or max_length
        self.max_length = min(int(max_length), int(limit))
        self.dtype = dtype
        torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        self.model.to(self.device, dtype=torch_dtype).eval()
        self.batch_size = int(batch_size)
        self.key = model_key(self.model_dir, self.max_length, dtype)
        log.info("model %s on %s (%s), max %d tokens, hidden %d", self.model_dir, self.device, dtype,
                 self.max_length, self.dim)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def lengths(self, texts: list[str]) -> np.ndarray:
        """Token count of each text with special tokens, before truncation."""
        enc = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return np.array([len(ids) for ids in enc["input_ids"]], dtype=np.int64)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of one batch, (len(texts), dim) float32."""
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            out = self.model(**batch)
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:
            raise InputError("the model returns no last_hidden_state; expected an encoder (BERT-like)", self.model_dir)
        return mean_pool(hidden, batch["attention_mask"]).cpu().numpy().astype(np.float32)


# ---------------------------------------------------------------- cache


def _shard_written(path: Path) -> None:
    """Called after each cache shard is on disk (tests raise here to simulate a crash)."""


class EmbeddingCache:
    """Embeddings keyed by text sha256, in ``.npz`` shards of one folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.rows: dict[str, tuple[np.ndarray, bool]] = {}
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(shard) as z:
                    keys, vectors, truncated = z["keys"], z["vectors"], z["truncated"]
            except Exception as err:  # a damaged shard is only lost work
                log.warning("ignoring unreadable cache shard %s (%s)", shard, _first_line(err))
                continue
            for k, v, t in zip(keys.astype(str), vectors, truncated):
                self.rows[k] = (v, bool(t))
        self.shards = len(list(self.folder.glob("shard-*.npz")))
        if self.rows:
            log.info("cache %s: %d embeddings in %d shards", self.folder, len(self.rows), self.shards)

    def write(self, keys: list[str], vectors: np.ndarray, truncated: np.ndarray) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, keys=np.array(keys, dtype="U64"), vectors=vectors.astype(np.float32),
                     truncated=np.asarray(truncated, dtype=bool))
        for k, v, t in zip(keys, vectors, truncated):
            self.rows[k] = (v, bool(t))
        self.shards += 1
        _shard_written(path)
        return path

    def compact(self, max_shards: int = 32) -> None:
        """Merge the shards into one when there are many (the merged one is written first)."""
        old = sorted(self.folder.glob("shard-*.npz"))
        if len(old) <= max_shards:
            return
        keys = list(self.rows)
        self.write(keys, np.stack([self.rows[k][0] for k in keys]), np.array([self.rows[k][1] for k in keys]))
        for shard in old:
            shard.unlink(missing_ok=True)
        self.shards = 1


@dataclass
class EncodeStats:
    texts: int = 0  # distinct texts asked for
    cached: int = 0  # found in the cache
    encoded: int = 0  # run through the model now
    truncated: int = 0  # texts longer than max_length (cached ones included)
    seconds: float = 0.0

    def __str__(self) -> str:
        rate = f", {self.encoded / self.seconds:.1f} texts/s" if self.encoded and self.seconds else ""
        return (f"{self.texts} texts: {self.cached} from cache, {self.encoded} encoded in {self.seconds:.1f} s{rate}; "
                f"{self.truncated} truncated")


def encode_texts(encoder: Encoder, texts: pd.Series, cache_dir: Path, group: int = 1024,
                 label: str = "texts") -> tuple[np.ndarray, EncodeStats]:
    """Embeddings of ``texts`` (id -> text), in its order, using and filling the cache.
    Texts are encoded longest first in batches; a shard is written every ``group`` texts."""
    t0 = time.perf_counter()
    cache = EmbeddingCache(Path(cache_dir) / encoder.key)
    keys = [text_key(t) for t in texts.tolist()]
    first: dict[str, str] = {}
    for k, t in zip(keys, texts.tolist()):
        first.setdefault(k, t)
    pending = [k for k in first if k not in cache.rows]
    stats = EncodeStats(texts=len(first), cached=len(first) - len(pending))
    if pending:
        pending_texts = [first[k] for k in pending]
        lengths = encoder.lengths(pending_texts)
        order = np.argsort(-lengths, kind="stable")
        log.info("%s: encoding %d texts (%d cached), median %d tokens, %d over %d", label, len(pending),
                 stats.cached, int(np.median(lengths)), int((lengths > encoder.max_length).sum()), encoder.max_length)
        bar = tqdm(total=len(pending), desc=f"encode {label}", unit="text", disable=None)  # a bar on a terminal
        buf_keys: list[str] = []
        buf_vecs: list[np.ndarray] = []
        buf_trunc: list[np.ndarray] = []
        try:
            for start in range(0, len(order), encoder.batch_size):
                idx = order[start:start + encoder.batch_size]
                buf_vecs.append(encoder.embed([pending_texts[i] for i in idx]))
                buf_keys += [pending[i] for i in idx]
                buf_trunc.append(lengths[idx] > encoder.max_length)
                stats.encoded += len(idx)
                bar.update(len(idx))
                if bar.disable and (start // encoder.batch_size + 1) % LOG_EVERY == 0:  # a log file: a line instead
                    seconds = time.perf_counter() - t0
                    log.info("%s: %d of %d texts encoded, %.1f texts/s, about %.0f s left", label, stats.encoded,
                             len(pending), stats.encoded / seconds, (len(pending) - stats.encoded) * seconds / stats.encoded)
                if len(buf_keys) >= group or start + encoder.batch_size >= len(order):
                    cache.write(buf_keys, np.concatenate(buf_vecs), np.concatenate(buf_trunc))
                    buf_keys, buf_vecs, buf_trunc = [], [], []
        finally:
            bar.close()
        cache.compact()
    stats.truncated = sum(cache.rows[k][1] for k in first)
    stats.seconds = time.perf_counter() - t0
    matrix = np.stack([cache.rows[k][0] for k in keys]) if keys else np.zeros((0, encoder.dim), np.float32)
    log.info("%s: %s", label, stats)
    return matrix.astype(np.float32, copy=False), stats


# ---------------------------------------------------------------- outputs


def default_ids_path(path: Path) -> Path:
    """``genes.npy`` -> ``genes.ids.txt``."""
    return path.with_name(path.name[: -len(path.suffix)] + ".ids.txt")


def _same_npy(path: Path, ids_path: Path, ids: list[str], matrix: np.ndarray) -> bool:
    try:
        return read_ids(ids_path) == list(ids) and np.array_equal(np.load(path, mmap_mode="r"), matrix)
    except (InputError, OSError, ValueError):
        return False


def write_features(path: str | Path, ids: list[str], matrix: np.ndarray, ids_path: str | Path | None = None) -> None:
    """Write features as data/features.py reads them: ``.npy`` + ids file, or CSV
    ``id,v1..vN``. Each file is replaced atomically; unchanged files are left untouched
    (so the graph cache, keyed by mtimes, stays valid)."""
    path = Path(path)
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if path.suffix == ".npy":
        ids_path = Path(ids_path) if ids_path else default_ids_path(path)
        if path.exists() and ids_path.exists() and _same_npy(path, ids_path, ids, matrix):
            log.info("%s unchanged", path)
            return
        with atomic_path(ids_path) as tmp_ids, atomic_path(path) as tmp:
            tmp_ids.write_text("\n".join(ids) + "\n", encoding="utf-8")
            with open(tmp, "wb") as fh:
                np.save(fh, matrix)
    elif path.suffix == ".csv":
        frame = pd.DataFrame(matrix, columns=[f"v{i + 1}" for i in range(matrix.shape[1])])
        frame.insert(0, "id", list(ids))
        text = frame.to_csv(index=False, float_format="%.9g", lineterminator="\n")
        if path.exists() and path.read_text(encoding="utf-8") == text:
            log.info("%s unchanged", path)
            return
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    else:
        raise InputError("unknown feature file type; expected .npy or .csv", path)
    log.info("wrote %s (%d x %d)", path, *matrix.shape)


def read_texts(path: str | Path) -> pd.Series:
    """A CSV with columns ``id,text`` as a Series ``id -> text``. A row repeated exactly is
    collapsed with one logged line; an id with two different texts is an InputError."""
    frame = read_table(path, {"id": "str", "text": "str"})
    table = pd.DataFrame({"id": frame["id"].astype(str).to_numpy(), "text": frame["text"].astype(str).to_numpy(),
                          "_row": np.arange(1, len(frame) + 1)})
    table = collapse_duplicates(table, "id", "text", path, "id")
    return pd.Series(table["text"].to_numpy(), index=table["id"].to_numpy())


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def encode_dataset(spec: DatasetSpec | str | Path, encoder: Encoder, cache_dir: Path | None = None
                   ) -> dict[str, EncodeStats]:
    """Encode a dataset's gene texts (summaries and task text columns) and GO texts into
    its ``features`` files, recording default paths in the yaml when it had none."""
    spec = spec if isinstance(spec, DatasetSpec) else load_spec(spec)
    root = spec.path.parent
    if spec.zero_features is not None:
        raise InputError("features.zeros is set: this dataset uses zero features and has nothing to encode", spec.path)
    nodes = gene_node_ids(spec)
    if nodes is None:  # the summaries define the gene nodes
        if not spec.text_sources():
            raise InputError("the dataset has no summaries.file; add summaries: {file, gene_column, text_column} "
                             "naming a CSV of gene summaries", spec.path)
        sources = {"gene": read_spec_summaries(spec)}
    else:
        sources = {"gene": gene_texts(spec, nodes)[0]}
    go = spec.features.get("go")
    if spec.text_free_features is not None and go is not None and Path(go).exists():
        # task text changes the gene texts only: the dataset's GO features stay as they are
        width = read_features(go, spec.features.get("go_ids"))[1].shape[1]
        if width != encoder.dim:
            raise InputError(f"the model gives {encoder.dim}-d vectors, the dataset's GO features are {width}-d: "
                             "encode the task's text with the model that encoded the dataset", go)
        log.info("GO features kept: %s (task text changes gene texts only)", go)
    elif spec.go.get("obo"):
        sources["go"] = read_ontology(spec.go["obo"]).texts()
    defaults = {"gene": root / "features/genes.npy", "go": root / "features/go.npy"}
    updates: dict[str, str] = {}
    stats = {}
    for kind, texts in sources.items():
        out = spec.features.get(kind) or defaults[kind]
        ids_path = spec.features.get(f"{kind}_ids")
        if out.suffix == ".npy" and ids_path is None:
            ids_path = default_ids_path(out)
            updates[f"{kind}_ids"] = _relative(ids_path, root)
        if not spec.features.get(kind):
            updates[kind] = _relative(out, root)
        has_text = (texts != "").to_numpy()
        matrix = np.zeros((len(texts), encoder.dim), np.float32)  # no text: a zero vector
        matrix[has_text], stats[kind] = encode_texts(encoder, texts[has_text], cache_dir or out.parent / ".encode-cache",
                                                     label=kind)
        if not has_text.all():
            log.info("%s: %d of %d ids have no text: zero vectors", kind, int((~has_text).sum()), len(texts))
        write_features(out, list(texts.index), matrix, ids_path)
        if kind == "gene" and any(t.file.stat().st_mtime_ns > out.stat().st_mtime_ns for t in spec.text_tasks):
            os.utime(out)  # unchanged, yet encoded from the task file as it is now (what training checks)
    if updates:
        update_features_section(spec.path, updates)
    return stats


def update_features_section(yaml_path: Path, updates: dict[str, str]) -> None:
    """Set keys of the yaml's ``features`` section, keeping everything else (comments are lost)."""
    raw = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    features = dict(raw.get("features") or {})
    features.update(updates)
    if "features" in raw:
        raw["features"] = features
    else:  # keep the usual section order: features before tasks
        items = list(raw.items())
        at = next((i for i, (k, _) in enumerate(items) if k in ("tasks", "cache")), len(items))
        raw = dict(items[:at] + [("features", features)] + items[at:])
    with atomic_path(yaml_path) as tmp:
        tmp.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    log.info("%s: features %s", yaml_path, json.dumps(updates))


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genen_dgl.encode", description=__doc__.split("\n\n")[0])
    add_version(parser)
    parser.add_argument("--model", type=Path, required=True, help="local model folder (save_pretrained output)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", type=Path, help="dataset.yaml: encode its summaries and GO texts")
    src.add_argument("--input", type=Path, help="CSV with columns id,text")
    parser.add_argument("--labels", help="with --dataset: a label file of your own whose --text-column is gene text "
                                          "(as python -m genen_dgl.train --labels reads it)")
    parser.add_argument("--gene-column", help="with --labels: the gene symbol column (default: Gene name)")
    parser.add_argument("--text-column", help="with --labels: the gene text column, e.g. Summary")
    parser.add_argument("--out", type=Path, help="with --input: output .npy (+ .ids.txt) or .csv")
    parser.add_argument("--cache", type=Path, help="cache folder (default: .encode-cache beside the output)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--dtype", default="fp32", choices=DTYPES, help="model dtype; bf16/fp16 need a GPU")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per batch (default 32)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--max-length", type=int, default=512, help="tokens per text, longer ones truncated (default 512)")
    args = parser.parse_args(argv)
    if args.input is not None and args.out is None:
        parser.error("--input needs --out")
    if (args.gene_column or args.text_column) and not args.labels or args.labels and not args.text_column:
        parser.error("--labels, --gene-column and --text-column go together (--gene-column optional), with --dataset")
    if args.labels and args.dataset is None:
        parser.error("--labels needs --dataset")
    if args.batch_size < 1 or args.max_length < 2:
        parser.error("--batch-size must be >= 1 and --max-length >= 2")
    if args.out is not None and args.out.suffix not in (".npy", ".csv"):
        raise InputError(f"--out {args.out}: unknown feature file type; expected a .npy or .csv name")
    if args.out is not None and args.out.is_dir():
        raise InputError("--out is a folder; expected a .npy or .csv file name", args.out)
    texts = read_texts(args.input) if args.input is not None else None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    encoder = Encoder(args.model, args.device, args.dtype, args.max_length, args.batch_size)
    if texts is not None:
        matrix, stats = encode_texts(encoder, texts, args.cache or args.out.parent / ".encode-cache", label=args.input.name)
        write_features(args.out, list(texts.index), matrix)
        print(f"{args.out}: {stats}")
    else:
        spec = run_spec(args.dataset, argparse.Namespace(labels=args.labels and str(Path(args.labels).resolve()),
                                                         gene_column=args.gene_column, label_column=None,
                                                         task_type=None, text_column=args.text_column))
        for kind, stats in encode_dataset(spec, encoder, args.cache).items():
            print(f"{kind}: {stats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
