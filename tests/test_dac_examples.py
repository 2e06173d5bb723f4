"""The DAC example and benchmark scripts run end to end (tiny settings; numbers are not checked)."""

from __future__ import annotations

import json

import pytest
from _helpers import EXAMPLES, load_script

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def scripts():
    return (load_script(EXAMPLES / "dac_synthetic_fundus.py"), load_script(EXAMPLES / "benchmarks" / "dac_cost.py"),
            load_script(EXAMPLES / "dac_evidence.py"))


@pytest.mark.slow
def test_synthetic_fundus_example(tmp_path, scripts):
    from medfound.data.synthetic import write_fundus_demo

    example, _, _ = scripts
    write_fundus_demo(tmp_path / "fundus", size="small", seed=0)
    result = example.main(["--out", str(tmp_path / "out"), "--data", str(tmp_path / "fundus"),
                           "--test-domains", "Domain4", "--methods", "supervised", "dac", "--iterations", "2",
                           "--size", "32", "--width", "8", "--batch", "2", "--threads", "1"])
    assert result["synthetic"] and set(result["table"]) == {"supervised", "dac"}
    for method in ("supervised", "dac"):
        dice = result["table"][method]["Domain4"]
        assert 0.0 <= dice["disc"] <= 1.0 and 0.0 <= dice["cup"] <= 1.0
        assert len(result["runs"][f"seed0/Domain4/{method}"]["cases"]) == 8  # every test image of the unseen domain
    assert "pseudo_labels_last_epoch" in result["runs"]["seed0/Domain4/dac"]["diagnostics"]
    text = (tmp_path / "out" / "results.md").read_text()
    assert text.startswith("Dice on the unseen domain, mean over seeds [0] (SYNTHETIC") and "| dac |" in text
    split = json.loads((tmp_path / "out" / "splits" / "test-Domain4.json").read_text())
    assert split["test_domain"] == "Domain4" and "Domain4" not in split["unlabeled_domains"]


def test_cost_benchmark_writes_its_ratios(tmp_path, scripts):
    _, bench, _ = scripts
    path = tmp_path / "cost.json"
    bench.main(["--size", "32", "--width", "8", "--batch", "2", "--rounds", "1", "--warmup", "0",
                "--json", str(path)])
    numbers = json.loads(path.read_text())
    assert numbers["dac_vs_cps_iteration_time"] > 0 and numbers["dac_vs_plain_inference_time"] > 0
    assert numbers["deployed_parameters"] == numbers["plain_parameters"]
    assert numbers["dac_parameters_training"] > numbers["cps_parameters_training"]
    assert all(isinstance(v, (int, float)) for v in numbers.values())  # a flat object of numbers


@pytest.mark.slow
def test_evidence_script_tables_statistics_and_plot(tmp_path, scripts, demo_root):
    _, _, evidence = scripts
    result = evidence.main(["--benchmark", "scgm", "--out", str(tmp_path / "out"), "--data", str(demo_root),
                            "--test-domains", "site4", "--methods", "supervised", "cps", "dac", "--seeds", "0", "1",
                            "--iterations", "2", "--size", "32", "--width", "8", "--batch", "2"])["scgm"]
    assert result["synthetic"] and result["domains"] == ["site4"] and set(result["regions"]) == {"gm", "cord"}
    for method in ("supervised", "cps", "dac"):
        for region in ("gm", "cord"):
            values = result["dice_per_seed"][method]["site4"][region]  # seed -> Dice
            stats = result["table"][method]["site4"][region]
            assert sorted(values) == [0, 1] and stats["mean"] == pytest.approx(sum(values.values()) / 2)
    diff = result["dac_minus_cps"]["site4"]["gm"]
    dac, cps = (result["dice_per_seed"][m]["site4"]["gm"] for m in ("dac", "cps"))
    assert diff["mean"] == pytest.approx((dac[0] - cps[0] + dac[1] - cps[1]) / 2) and diff["n"] == 2
    assert result["paired_differences"]["dac - cps"] == result["dac_minus_cps"]
    sup = result["dice_per_seed"]["supervised"]["site4"]["cord"]
    cps_cord = result["dice_per_seed"]["cps"]["site4"]["cord"]
    gain = result["paired_differences"]["cps - supervised"]["site4"]["cord"]
    assert gain["mean"] == pytest.approx((cps_cord[0] - sup[0] + cps_cord[1] - sup[1]) / 2) and gain["n"] == 2
    # only pairs whose two methods ran
    assert set(result["paired_differences"]) == {"dac - cps", "cps - supervised", "dac - supervised"}
    # the trivial all-foreground Dice is 2|G| / (|G| + N) per case: in (0, 1) for a non-empty structure
    assert 0 < result["all_foreground"]["site4"]["cord"] < 1
    assert {"aux_rot_acc", "aux_mask_iou", "aux_mask_iou_const"} <= set(result["aux"])
    assert result["aux_by_method"]["dac"]["aux_rot_acc"] == result["aux"]["aux_rot_acc"]
    assert set(result["aux_by_method"]) == {"dac"}  # supervised and CPS log no auxiliary task
    text = (tmp_path / "out" / "scgm" / "evidence.md").read_text()
    assert "SYNTHETIC" in text and "| all-foreground |" in text and "DAC - CPS" in text
    assert "- dac: aux_rot_acc" in text and "| cps - supervised |" in text
    # both sub-models' pseudo-label quality per co-training method (supervised has no pseudo labels)
    pseudo = result["pseudo_labels_by_method"]
    assert set(pseudo) == {"cps", "dac"} and set(pseudo["dac"]) == {"a cord", "a gm", "b cord", "b gm"}
    assert all(s["n"] == 2 and 0 <= s["mean"] <= 1 for a in pseudo.values() for s in a.values())
    assert "Pseudo labels on the unlabelled source domains" in text and "- dac: a cord" in text
    assert (tmp_path / "out" / "scgm" / "evidence.png").stat().st_size > 0


def test_last_pseudo_label_dice_averages_the_last_epoch_over_domains(tmp_path, scripts):
    _, _, evidence = scripts
    assert evidence.last_pseudo_label_dice(tmp_path) == {}  # no log: a method without pseudo labels
    first = {"D2|a|disc": {"dice": 0.1, "confident_fraction": 1.0}}
    last = {key: {"dice": dice, "confident_fraction": 1.0}
            for key, dice in (("D2|a|disc", 0.6), ("D3|a|disc", 0.8), ("D2|b|disc", 0.0), ("D3|b|disc", 0.0))}
    (tmp_path / "pseudo_labels.jsonl").write_text(json.dumps({"epoch": 1, "pseudo_labels": first}) + "\n"
                                                   + json.dumps({"epoch": 2, "pseudo_labels": last}) + "\n")
    assert evidence.last_pseudo_label_dice(tmp_path) == {"a disc": pytest.approx(0.7), "b disc": 0.0}


@pytest.mark.slow
def test_evidence_collect_reads_finished_runs_and_never_retrains(tmp_path, scripts, demo_root):
    _, _, evidence = scripts
    argv = ["--benchmark", "scgm", "--out", str(tmp_path / "out"), "--data", str(demo_root), "--test-domains",
            "site4", "--methods", "supervised", "--seeds", "0", "1", "--iterations", "2", "--size", "32",
            "--width", "8", "--batch", "2"]
    trained = evidence.main(argv)["scgm"]["dice_per_seed"]["supervised"]["site4"]
    runs = tmp_path / "out" / "scgm" / "runs"
    run0, run1 = (runs / f"seed{s}" / "test-site4" / "supervised" for s in (0, 1))
    (run1 / "model.pt").unlink()  # seed 1 now looks unfinished: --collect must leave it out, not train it
    (run1 / evidence.RUN_RECORD).unlink()
    (run0 / evidence.RUN_RECORD).unlink()  # seed 0 finished without a record: evaluated, not trained again
    files = {f: (run0 / f).stat().st_mtime_ns for f in ("last.pt", "model.pt", "config.json", "training_log.jsonl")}
    collected = evidence.main([*argv, "--collect"])["scgm"]
    assert collected["dice_per_seed"]["supervised"]["site4"] == {
        "gm": {0: trained["gm"][0]}, "cord": {0: trained["cord"][0]}}
    assert collected["table"]["supervised"]["site4"]["gm"]["n"] == 1
    assert not (run1 / "model.pt").exists() and not (run1 / evidence.RUN_RECORD).exists()
    assert {f: (run0 / f).stat().st_mtime_ns for f in files} == files  # the finished run was not rewritten
    record = json.loads((run0 / evidence.RUN_RECORD).read_text())
    assert record["dice"] == {"gm": trained["gm"][0], "cord": trained["cord"][0]}
    assert record["seconds"] >= 0 and record["last_epoch"] == evidence.last_epoch(run0) != {}
    # a second --collect reads the record back: same table
    again = evidence.main([*argv, "--collect"])["scgm"]
    assert again["table"] == collected["table"] and again["runs"] == collected["runs"]
