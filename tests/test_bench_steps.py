"""`smft bench steps`: how far each optimizer setting moves the rows it trains, on the tiny model."""

import json

import pytest

from cli.main import main


def test_each_setting_is_measured_and_adam_moves_rows_more_evenly_than_sgd(
        tiny_lm, tiny_model_dir, background_file, tmp_path, monkeypatch, capsys):
    from model.snapshot import save_snapshot

    lm, stats, _ = tiny_lm
    for name, value in {"SMFT_BATCH_FACTS": "2", "SMFT_STEPS": "4", "SMFT_TOP_T": "16", "SMFT_MAX_ROW_NORM": "none",
                        "SMFT_NEIGHBOURS_PER_FACT": "0", "SMFT_BACKGROUND": f'["{background_file}"]'}.items():
        monkeypatch.setenv(name, value)
    v0 = save_snapshot(lm, stats, 0, tmp_path / "v0.safetensors")
    out = tmp_path / "steps.json"
    assert main(["bench", "steps", "--model", str(tiny_model_dir), "--snapshot", str(v0), "--facts", "4",
                 "--optimizers", "adam:1,sgd:100", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| adam lr 1 |" in table and "| sgd lr 100 |" in table
    adam, sgd = json.loads(out.read_text())["settings"]
    for row in (adam, sgd):
        assert row["rows_written"] > 0 and row["energy"] > 0 and row["at_cap"] == 0  # no cap set
        p10, p50, p90 = row["change_norm"]
        assert 0 < p10 <= p50 <= p90
        assert 0 <= row["answered"] <= 1
    # Adam's per-coordinate scaling moves a row with a small gradient about as far as the largest; SGD in proportion.
    assert adam["change_norm"][2] / adam["change_norm"][0] < sgd["change_norm"][2] / sgd["change_norm"][0]


@pytest.mark.parametrize("setting", ["rmsprop:1", "adam", "sgd:-1"])
def test_a_bad_optimizer_setting_is_refused_with_what_is_wrong(setting):
    with pytest.raises(SystemExit, match="--optimizers"):
        main(["bench", "steps", "--optimizers", setting])
