"""`smft bench learn-forget --quick` on the real model: every method runs and every output is written."""

import json

import pytest

from service.cli import main

pytestmark = pytest.mark.integration


def test_quick_benchmark_writes_json_table_and_plots(real_v0, tmp_path, capsys):
    _, _, _, v0_path = real_v0
    assert main(["bench", "learn-forget", "--quick", "--snapshot", str(v0_path), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "learn_forget.json").read_text())
    labels = [r["label"] for r in report["results"]]
    assert {r["settings"]["method"] for r in report["results"]} == {"sparse", "full", "lora"}
    assert any("tf " in label for label in labels)  # the TF-only ablation
    for result in report["results"]:
        final = result["checkpoints"][-1]
        assert final["facts_taught"] == 3 and result["steps"] == 9
        assert 0 <= final["learned"] <= 1 and final["nll_change"] > -0.5
    assert set(report["matched"]) == {"sparse", "full", "lora"}
    table = (tmp_path / "learn_forget.md").read_text()
    assert table.count("\n") == len(labels) + 2 and "retention F1 change" in table
    for png in ("learning_vs_forgetting.png", "over_facts.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert "learned (contains)" in capsys.readouterr().out
