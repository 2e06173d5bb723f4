"""The recipe check (examples/umedpt_recipe.py): its multi-seed summary (--summarise) and same seed, same table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _helpers import EXAMPLES, load_script

EXAMPLE = EXAMPLES / "umedpt_recipe.py"


def _table(seed, scores):
    rows = [{"task": task, "kind": "segmentation", "metric": "dice_mean", "synthetic": task != "real",
             "pretrained": p, "random_frozen": r, "difference": p - r} for task, (p, r) in scores.items()]
    return {"seed": seed, "quick": False, "iterations": 18, "rows": rows}


def test_summary_counts_the_seeds_where_pre_training_is_above():
    summary, text = load_script(EXAMPLE).summarise_seeds([
        _table(0, {"organs": (0.7, 0.1), "real": (0.5, 0.6)}),
        _table(1, {"organs": (0.6, 0.2), "real": (0.6, 0.6)}),   # a tie is not above
        _table(2, {"organs": (0.8, 0.0), "real": (0.9, 0.3)}),
    ])
    organs, real = summary["rows"]
    assert summary["seeds"] == [0, 1, 2]
    assert organs["above"] == 3 and real["above"] == 1
    assert organs["pretrained"] == [0.7, 0.6, 0.8] and organs["pretrained_mean"] == pytest.approx(0.7)
    assert real["random_frozen_mean"] == pytest.approx(0.5)
    # paired over seeds: organs 0.6 / 0.4 / 0.8, std 0.2, Student-t(2) 97.5 % = 4.3027
    half = 4.302653 * 0.2 / 3 ** 0.5
    assert organs["difference"]["mean"] == pytest.approx(0.6)
    assert (organs["difference"]["low"], organs["difference"]["high"]) == pytest.approx((0.6 - half, 0.6 + half))
    assert "| 3 of 3 | +0.600 [+0.103, +1.097] |" in text
    assert ("| organs | synthetic | dice_mean | 0.700 / 0.600 / 0.800 | 0.100 / 0.200 / 0.000 | 0.700 | 0.100 "
            "| 3 of 3 |") in text
    assert "| real | real |" in text and "1 of 3 |" in text


def test_summary_of_one_seed_has_no_interval():
    summary, text = load_script(EXAMPLE).summarise_seeds([_table(5, {"organs": (0.7, 0.1)})])
    difference = summary["rows"][0]["difference"]
    assert difference["mean"] == pytest.approx(0.6) and difference["low"] is None and difference["n"] == 1
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary  # strict JSON: no NaN
    assert text.rstrip().endswith("| 1 of 1 | +0.600 |")


def test_summary_refuses_repeated_seeds_and_different_tasks():
    recipe = load_script(EXAMPLE)
    with pytest.raises(ValueError, match="repeat a seed"):
        recipe.summarise_seeds([_table(0, {"a": (1, 0)}), _table(0, {"a": (1, 0)})])
    with pytest.raises(ValueError, match="different tasks"):
        recipe.summarise_seeds([_table(0, {"a": (1, 0)}), _table(1, {"b": (1, 0)})])


def test_summarise_command_writes_the_table(tmp_path):
    for seed in (3, 4):
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "recipe_table.json").write_text(json.dumps(_table(seed, {"organs": (0.7, 0.1)})))
    subprocess.run([sys.executable, str(EXAMPLE), "--summarise", str(tmp_path / "s3"), str(tmp_path / "s4"),
                    "--out", str(tmp_path / "seeds")], check=True, capture_output=True)
    summary = json.loads((tmp_path / "seeds" / "recipe_seeds.json").read_text())
    assert summary["seeds"] == [3, 4] and summary["rows"][0]["above"] == 2
    assert "2 of 2" in (tmp_path / "seeds" / "recipe_seeds.md").read_text()


@pytest.mark.slow
def test_same_seed_same_table_and_weights(tmp_path):
    recipe = load_script(EXAMPLE)
    first = recipe.run_recipe(tmp_path / "a", quick=True, seed=1)
    again = recipe.run_recipe(tmp_path / "b", quick=True, seed=1)
    assert first == again and first["seed"] == 1 and first["quick"]
    assert (tmp_path / "a" / "recipe_table.json").read_bytes() == (tmp_path / "b" / "recipe_table.json").read_bytes()
    for run in ("pretrained", "random_frozen"):
        # the weights themselves, not just the scores rounded into the table
        assert (tmp_path / "a" / run / "model.pt").read_bytes() == (tmp_path / "b" / run / "model.pt").read_bytes()
    # the two runs differ (the reference's encoder is frozen at its random initialisation)
    assert any(row["pretrained"] != row["random_frozen"] for row in first["rows"])
