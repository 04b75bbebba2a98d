"""One graph cache per graph: the key ignores tasks, and ``python -m genen_dgl.data.cache``
lists and prunes only the caches it made."""

from __future__ import annotations

import shutil

import yaml

from genen_dgl.data.cache import graph_caches, main
from genen_dgl.data.graph import cache_key, load_full_graph
from genen_dgl.data.spec import load_spec


def copy_sample(sample_spec, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sample_spec.parent, data, ignore=shutil.ignore_patterns(".cache"))
    return data / "dataset.yaml"


def test_cache_key_ignores_tasks_but_not_graph_options(sample_spec, tmp_path):
    path = copy_sample(sample_spec, tmp_path)
    raw = yaml.safe_load(path.read_text())
    before = cache_key(load_spec(path))
    raw["tasks"]["membrane"]["label_column"] = "StrLabel"
    del raw["tasks"]["conservation"]
    raw["name"] = "renamed"
    path.write_text(yaml.safe_dump(raw))
    assert cache_key(load_spec(path)) == before
    mine = tmp_path / "mine.yaml"  # a spec of one's own on the same graph, as docs/real-data.md shows
    mine.write_text(f"base: {path}\ntasks:\n  t: {{file: {path.parent / 'labels/membrane.csv'}}}\n")
    assert cache_key(load_spec(mine)) == before
    raw["ppi"]["min_score"] = 400
    path.write_text(yaml.safe_dump(raw))
    assert cache_key(load_spec(path)) != before
    raw["ppi"]["min_score"] = 150
    raw["tasks"]["membrane"]["text_column"] = "Summary"  # task text shapes the gene features: another graph
    path.write_text(yaml.safe_dump(raw))
    assert cache_key(load_spec(path)) != before


def test_prune_keeps_the_current_cache_and_leaves_other_files(sample_spec, tmp_path, capsys):
    path = copy_sample(sample_spec, tmp_path)
    raw = yaml.safe_load(path.read_text())
    for score in (400, 300, 150):  # three graphs, the last one current
        raw["ppi"]["min_score"] = score
        path.write_text(yaml.safe_dump(raw))
        load_full_graph(load_spec(path))
    cache = path.parent / ".cache"
    strangers = [cache / "notes.txt", cache / "graph-0123456789abcdef.bin", cache / "graph-zz.json"]
    for f in strangers:  # not ours: a .bin without its json, a json of another name, any other file
        f.write_text("keep me")
    assert len(graph_caches(cache)) == 3
    assert main(["list", "--data", str(path)]) == 0
    listed = capsys.readouterr().out
    assert listed.count("(current)") == 1 and "3 graph cache(s)" in listed
    assert main(["prune", "--keep", "2", "--data", str(path)]) == 0
    left = graph_caches(cache)
    assert len(left) == 2 and cache_key(load_spec(path)) in {c.key for c in left}
    assert main(["prune", "--keep", "0", "--data", str(path)]) == 0
    assert graph_caches(cache) == [] and all(f.read_text() == "keep me" for f in strangers)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f.name for f in strangers)
