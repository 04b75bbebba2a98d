"""Choosing a configuration per task and regime on the validation share (experiments.choose)."""

from __future__ import annotations

import pandas as pd
from genen_dgl.experiments.choose import main

BASE = [("text", 0.70, 0.05), ("go_annotations", 0.80, 0.05)]


def table(folder, gnn_test, gnn_val, p_go, base=BASE):
    rows = [{"task": "t", "regime": "standard", "kind": "binary", "model": m, "variant": "", "metric": "auc",
             "mean": mean, "std": std, "val_mean": float("nan")} for m, mean, std in base]
    rows.append({"task": "t", "regime": "standard", "kind": "binary", "model": "gat", "variant": "go_ppi",
                 "metric": "auc", "mean": gnn_test, "std": 0.04, "val_mean": gnn_val, "p_vs_text": 0.001,
                 "p_vs_go_annotations": p_go})
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "table.csv", index=False)
    return f"{folder.name}={folder}"


def test_the_choice_is_made_on_validation_never_on_test(tmp_path):
    a = table(tmp_path / "a", gnn_test=0.95, gnn_val=0.80, p_go=0.01)  # best on test, worse on validation
    b = table(tmp_path / "b", gnn_test=0.82, gnn_val=0.90, p_go=0.30)
    assert main([a, b, "--out", str(tmp_path / "out")]) == 0
    frame = pd.read_csv(tmp_path / "out" / "choice.csv")
    chosen = frame[frame["chosen"]]
    assert chosen["configuration"].tolist() == ["b"]
    assert bool(chosen["above_all"].iloc[0]) and chosen["significant"].iloc[0] == "text"  # not GO: p 0.30
    assert "**GAT · go_ppi · b (chosen)**" in (tmp_path / "out" / "choice.md").read_text()
    assert (tmp_path / "out" / "choice.png").stat().st_size > 0


def test_the_ensemble_row_is_a_configuration_of_its_table(tmp_path):
    a = table(tmp_path / "a", gnn_test=0.85, gnn_val=0.88, p_go=0.2)
    frame = pd.read_csv(tmp_path / "a" / "table.csv")
    ranked = frame.iloc[-1].to_dict() | {"model": "gat+baselines", "mean": 0.9, "val_mean": 0.9, "p_vs_go_annotations": 0.01}
    pd.concat([frame, pd.DataFrame([ranked])]).to_csv(tmp_path / "a" / "table.csv", index=False)
    assert main([a, "--out", str(tmp_path / "out")]) == 0
    chosen = pd.read_csv(tmp_path / "out" / "choice.csv").query("chosen")
    assert chosen["model"].tolist() == ["gat+baselines"] and chosen["significant"].iloc[0] == "text,go_annotations"
    assert "**GAT ranked with the baselines · go_ppi · a (chosen)**" in (tmp_path / "out" / "choice.md").read_text()


def test_tables_on_other_folds_are_refused(tmp_path, capsys):
    a = table(tmp_path / "a", 0.9, 0.9, 0.01)
    b = table(tmp_path / "b", 0.9, 0.9, 0.01, base=[("text", 0.71, 0.05), ("go_annotations", 0.80, 0.05)])
    assert main([a, b, "--out", str(tmp_path / "out")]) != 0
    assert "b/table.csv: b: its baselines differ from a's: not the same folds" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main([str(tmp_path / "a"), "--out", str(tmp_path / "out")]) != 0
    assert "expected NAME=DIR" in capsys.readouterr().err
