"""unetlib.report: the results table beside the paper, its provenance, and the benchmark tables."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from unetlib.paths import PROJECT_ROOT
from unetlib.plots import KERAS_REPRODUCTION
from unetlib.report import (
    EXPERIMENTS,
    benchmark_rows,
    benchmark_table,
    budget_note,
    comparison_rows,
    describe_few_images,
    describe_run_set,
    elastic_speedups,
    load_benchmarks,
    load_results,
    provenance_table,
)


def _experiment(dataset="DIC-C2DH-HeLa", profile="quick", **metrics):
    return {
        "dataset": dataset,
        "profile": profile,
        "metrics": metrics or {"train": {"iou": 0.81234, "f1": 0.9, "seg": 0.7}},
        "runs": {name: {"steps_done": 100 * (i + 1)} for i, name in enumerate(metrics or ["t"])},
        "hardware": {"cpu": "AMD EPYC", "cpu_count": 2},
        "wall_seconds": 241.6,
        "command": "python -m unetlib.book run --profile quick --only 02_train",
    }


def _header(table: str) -> list[str]:
    return [c.strip() for c in table.splitlines()[0].strip("|").split("|")]


def _row(table: str, name: str) -> list[str]:
    lines = [line for line in table.splitlines() if line.startswith(f"| {name} |")]
    assert len(lines) == 1, f"{name!r} not exactly once in\n{table}"
    return [c.strip() for c in lines[0].strip("|").split("|")]


# ----------------------------------------------------------------------------------------------
# load_results, load_benchmarks


def test_load_results_reads_the_experiments_only(tmp_path):
    for name in EXPERIMENTS[:2]:
        (tmp_path / f"{name}.json").write_text(json.dumps({"name": name}))
    (tmp_path / "pipeline_quick.json").write_text("{}")  # not an experiment
    (tmp_path / "other.json").write_text("not even JSON")  # never read
    got = load_results(tmp_path)
    assert got == {name: {"name": name} for name in EXPERIMENTS[:2]}
    assert list(got) == list(EXPERIMENTS[:2])


def test_load_results_of_a_missing_folder_is_empty(tmp_path):
    assert load_results(tmp_path / "nowhere") == {}
    assert load_results(str(tmp_path)) == {}


@pytest.mark.parametrize("text", ["{", "", "{'single': 'quotes'}", "[1, 2,]"])
def test_load_results_names_the_invalid_file(tmp_path, text):
    (tmp_path / "02_train.json").write_text("{}")
    (tmp_path / "04_weight_maps.json").write_text(text)
    with pytest.raises(ValueError, match=r"04_weight_maps\.json: not valid JSON"):
        load_results(tmp_path)


def test_load_benchmarks_reads_every_json_by_stem_in_order(tmp_path):
    for name in ("bench_b", "bench_a", "bench_c"):
        (tmp_path / f"{name}.json").write_text(json.dumps({"n": name}))
    (tmp_path / "notes.txt").write_text("{")
    got = load_benchmarks(tmp_path)
    assert list(got) == ["bench_a", "bench_b", "bench_c"]
    assert got["bench_b"] == {"n": "bench_b"}
    assert load_benchmarks(tmp_path / "missing") == {}


def test_load_benchmarks_names_the_invalid_file(tmp_path):
    (tmp_path / "good.json").write_text("{}")
    (tmp_path / "broken.json").write_text('{"a": ')
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        load_benchmarks(tmp_path)


# ----------------------------------------------------------------------------------------------
# comparison_rows, provenance_table


def test_comparison_has_our_runs_then_the_published_rows():
    results = {"02_train": _experiment(train={"iou": 0.81234, "f1": 0.9, "seg": 0.7})}
    table = comparison_rows(results, "DIC-C2DH-HeLa")
    lines = table.splitlines()
    ours = "02_train: train (quick)"
    assert lines[2].startswith(f"| {ours} |")
    header = _header(table)
    row = dict(zip(header, _row(table, ours), strict=True))
    assert (row["pixel IoU"], row["pixel F1"], row["SEG"]) == ("0.812", "0.900", "0.700")
    paper = dict(zip(header, _row(table, "Ronneberger et al. 2015 (paper)"), strict=True))
    assert paper["SEG"] == "0.7756" and paper["pixel IoU"] == "–"  # as published
    keras = dict(zip(header, _row(table, "Keras reproduction, with augmentation"), strict=True))
    assert (keras["pixel IoU"], keras["pixel F1"]) == ("0.77", "0.891")
    for name in KERAS_REPRODUCTION:
        assert f"| Keras reproduction, {name} |" in table
    assert "isbi" not in table and "Rand error" not in header


def test_isbi_table_has_the_challenges_errors_only():
    table = comparison_rows({"02_train_em": _experiment(
        "isbi2012", train={"isbi_rand_error": 0.0671, "isbi_warping_error": 0.003339,
                           "seg": 0.6})}, "isbi2012")
    header = _header(table)
    # columns with a value in some row (the paper gives no information error), in order
    assert header[1:] == ["Rand error", "warping error", "pixel error (challenge)"]
    row = dict(zip(header, _row(table, "Ronneberger et al. 2015 (paper)"), strict=True))
    assert (row["warping error"], row["Rand error"]) == ("0.000353", "0.0382")
    ours = dict(zip(header, _row(table, "02_train_em: train (quick)"), strict=True))
    assert ours["warping error"] == "0.003339"  # four significant digits for small errors
    assert "Keras" not in table


def test_keras_rows_only_beside_dic_hela():
    table = comparison_rows({"02_train": _experiment(dataset="PhC-C2DH-U373")}, "PhC-C2DH-U373")
    assert "Keras reproduction" not in table
    assert "| Ronneberger et al. 2015 (paper) |" in table
    assert "pixel IoU" in _header(table)  # our run has one
    assert "Keras reproduction" in comparison_rows({}, "DIC-C2DH-HeLa")


def test_comparison_lists_each_chapter_run_once_and_no_study_runs():
    shared = _experiment(a={"iou": 0.1}, b={"iou": 0.2})
    shared["runs"] = {"a": {"run": "R1"}, "b": {"run": "R2"}}
    again = _experiment(with_aug={"iou": 0.1}, without={"iou": 0.3})
    again["runs"] = {"with_aug": {"run": "R1"}, "without": {"run": "R3"}}
    study = _experiment(x={"iou": 0.5})
    results = {"02_train": shared, "03_augmentation_ablation": again, "ablations": study,
               "02_train_em": _experiment("isbi2012", c={"iou": 0.9})}
    table = comparison_rows(results, "DIC-C2DH-HeLa")
    for label in ("02_train: a (quick)", "02_train: b (quick)",
                  "03_augmentation_ablation: without (quick)"):
        _row(table, label)
    assert "with_aug" not in table and "ablations" not in table and "02_train_em" not in table
    n_published = 1 + len(KERAS_REPRODUCTION)
    assert len(table.splitlines()) == 2 + 3 + n_published


def test_provenance_table():
    exp = _experiment(a={"iou": 0.1}, b={"iou": 0.2})
    exp["hardware"]["gpu"] = "NVIDIA H100"
    table = provenance_table({"02_train": exp, "04_weight_maps": _experiment()})
    lines = table.splitlines()
    assert lines[0] == "| experiment | profile | hardware | wall time | steps | command |"
    assert len(lines) == 4 and table.endswith("\n")
    assert lines[2] == ("| 02_train | quick | AMD EPYC, 2 cores, NVIDIA H100 | 242 s | 100, 200 | "
                        "`python -m unetlib.book run --profile quick --only 02_train` |")
    assert "| 04_weight_maps | quick | AMD EPYC, 2 cores | 242 s | 100 |" in lines[3]


def test_provenance_table_without_details():
    table = provenance_table({"02_train": {"profile": "smoke"}})
    assert table.splitlines()[2] == "| 02_train | smoke | ?, ? cores | 0 s |  | `?` |"


# ----------------------------------------------------------------------------------------------
# benchmark_rows, benchmark_table

BENCH = {
    "command": "python benchmarks/bench_elastic.py --threads 2",
    "hardware": {"cpu": "AMD EPYC", "device": "cpu", "torch": "2.4.0", "torch_threads": 2,
                 "cpu_count": 2, "processor": "x86_64"},
    "results": [
        {"method": "ours", "median_s": 0.1128, "images_per_s": 70.88, "times_s": [0.1, 0.12],
         "note": None},
        {"method": "elasticdeform", "median_s": 0.5, "images_per_s": 16, "times_s": [0.5],
         "note": "1 thread"},
    ],
    "speedups": {"ours / elasticdeform (1 thread)": 4.81408, "ours / compiled": 1.7},
}


@pytest.mark.parametrize("key", ["rows", "results"])
def test_benchmark_rows_from_rows_or_results(key):
    data = {key: [{"a": 1}, {"a": 2}]}
    rows = benchmark_rows(data)
    assert rows == [{"a": 1}, {"a": 2}]
    rows[0]["a"] = 99
    assert data[key][0]["a"] == 1  # copies


def test_benchmark_rows_prefers_rows_and_tolerates_other_shapes():
    assert benchmark_rows({"rows": [{"a": 1}], "results": [{"b": 2}]}) == [{"a": 1}]
    assert benchmark_rows({}) == []
    assert benchmark_rows({"results": "oops"}) == []


def test_benchmark_table_head_and_scalar_columns():
    table = benchmark_table(BENCH)
    head, _, body = table.partition("\n\n")
    assert head == ("Measured on AMD EPYC, cpu, 2.4.0, 2 threads, 2 cores; "
                    "command: `python benchmarks/bench_elastic.py --threads 2`")
    assert _header(body) == ["#", "method", "median_s", "images_per_s", "note"]  # no times_s
    assert _row(body, "0") == ["0", "ours", "0.1128", "70.88", "–"]
    assert _row(body, "1") == ["1", "elasticdeform", "0.5", "16", "1 thread"]
    # two CPUs both called "AMD EPYC": the vector instructions and native bf16 tell them apart
    hw = {**BENCH["hardware"], "cpu_isa": "AVX2", "cpu_bf16": False}
    head = benchmark_table({**BENCH, "hardware": hw}).partition("\n\n")[0]
    assert head.startswith("Measured on AMD EPYC, AVX2, cpu, 2.4.0 (without native bf16), 2 "
                           "threads")
    # kernels held to AVX2 on an AVX-512 CPU: said, never read as an AVX2-only CPU
    limits = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    head = benchmark_table({**BENCH, "hardware": {**hw, "cpu_isa_limits": limits}}
                           ).partition("\n\n")[0]
    assert head.startswith("Measured on AMD EPYC, AVX2, cpu, 2.4.0 (without native bf16), its "
                           "kernels held to AVX2 by `ATEN_CPU_CAPABILITY=avx2` and "
                           "`ONEDNN_MAX_CPU_ISA=AVX2`, 2 threads")


def test_benchmark_table_speedups_line():
    table = benchmark_table(BENCH)
    speed = [line for line in table.splitlines() if line.startswith("Speed-ups")]
    assert speed == ["Speed-ups (ratio of images per second): ours / elasticdeform (1 thread): "
                     "4.81x; ours / compiled: 1.70x."]
    assert table.endswith("1.70x.\n")


@pytest.mark.parametrize("speedups", [None, {}, "absent"])
def test_benchmark_table_without_speedups(speedups):
    data = dict(BENCH)
    if speedups == "absent":
        del data["speedups"]
    else:
        data["speedups"] = speedups
    table = benchmark_table(data)
    assert "Speed-ups" not in table
    assert table.endswith("| 1 thread |\n")


def test_benchmark_table_columns_select_and_order():
    table = benchmark_table(BENCH, ["images_per_s", "method", "missing"])
    body = table.partition("\n\n")[2]
    assert _header(body) == ["#", "images_per_s", "method", "missing"]
    assert _row(body, "0") == ["0", "70.88", "ours", "–"]
    assert "median_s" not in table


def test_benchmark_table_hardware_fallbacks():
    table = benchmark_table({"rows": [{"a": 1}], "hardware": {"processor": "x86_64",
                                                               "threads": 4}})
    assert table.startswith("Measured on x86_64, 4 threads, ? cores; command: `?`\n\n")
    bare = benchmark_table({"rows": [{"a": 1}]})
    assert bare.startswith("Measured on ?, ? cores; command: `?`\n\n")
    assert "| # | a |" in bare


def test_benchmark_table_without_rows():
    assert benchmark_table({"hardware": {"cpu": "x"}}) == "_no rows_\n"
    assert benchmark_table({"rows": []}) == "_no rows_\n"


def test_benchmark_table_of_results_keyed_by_case():
    data = {"hardware": {"cpu": "AMD EPYC", "cpu_count": 2}, "command": "python bench_widgets.py",
            "results": {"augmentation/sigma": {"n": 20, "median_ms": 41.2, "p90_ms": 43.7},
                        "weight_map/w0": {"n": 20, "median_ms": 18.0, "p90_ms": 18.4}}}
    assert len(benchmark_rows(data)) == 2
    table = benchmark_table(data)
    assert "augmentation/sigma" in table and "41.2" in table and "median_ms" in table


def test_threshold_column_shows_each_runs_threshold():
    data = _experiment(a={"iou": 0.7}, b={"iou": 0.6})
    data["thresholds"] = {"a": {"value": 0.3, "chosen_on": "validation"},
                          "b": {"value": 0.5, "chosen_on": "fixed"}}
    table = comparison_rows({"02_train": data}, "DIC-C2DH-HeLa")
    header = _header(table)
    assert header[-1] == "threshold"
    a = dict(zip(header, _row(table, "02_train: a (quick)"), strict=True))
    b = dict(zip(header, _row(table, "02_train: b (quick)"), strict=True))
    paper = dict(zip(header, _row(table, "Ronneberger et al. 2015 (paper)"), strict=True))
    assert (a["threshold"], b["threshold"], paper["threshold"]) == ("0.30", "0.50", "–")
    assert "threshold" not in _header(comparison_rows({"02_train": _experiment()},
                                                      "DIC-C2DH-HeLa"))


# ----------------------------------------------------------------------------------------------
# seeds: summaries, the headline and the answer table


def _run(seg_cc, seg_ws, iou=0.8, merges=1.0, splits=0.5):
    def metrics(seg):
        return {"seg": seg, "iou": iou, "merges": merges, "splits": splits}
    return {"instances": {"components": {"metrics": metrics(seg_cc)},
                          "watershed": {"metrics": metrics(seg_ws)}}}


def test_seed_summary_mean_sd_and_values():
    from unetlib.report import seed_summary

    s = seed_summary({"seed 0": _run(0.4, 0.7), "seed 1": _run(0.5, 0.8), "seed 2": _run(0.6, 0.6)})
    assert s["components"]["seeds"] == 3
    assert s["components"]["seg"]["values"] == [0.4, 0.5, 0.6]
    assert s["components"]["seg"]["mean"] == pytest.approx(0.5)
    assert s["components"]["seg"]["sd"] == pytest.approx(0.1)  # sample sd (ddof 1)
    assert s["watershed"]["seg"]["mean"] == pytest.approx(0.7)
    assert seed_summary({"seed 0": _run(0.4, 0.7)})["watershed"]["seg"]["sd"] == 0.0


def test_headline_table_states_both_methods_beside_the_paper():
    from unetlib.report import headline_table, seed_summary

    s = seed_summary({"a": _run(0.4, 0.7), "b": _run(0.5, 0.8)})
    table = headline_table(s, "DIC-C2DH-HeLa")
    assert "paper's way" in table and "beyond the paper" in table
    assert "0.450 ± 0.071 (0.400–0.500)" in table and "0.750 ± 0.071 (0.700–0.800)" in table
    assert "0.7756" in table and "0.770" in table  # paper's SEG, Keras pixel IoU
    assert "0.7756" not in headline_table(s, "isbi2012")


def test_variant_and_answer_tables():
    from unetlib.report import answer_table, seed_summary, variant_table

    summaries = {"with": seed_summary({"a": _run(0.4, 0.7)}),
                 "without": seed_summary({"a": _run(0.2, 0.3), "b": _run(0.4, 0.5)})}
    table = variant_table(summaries, "watershed")
    assert _row(table, "with")[1:3] == ["1", "0.700"]
    assert _row(table, "without")[1:3] == ["2", "0.400 ± 0.141 (0.300–0.500)"]
    results = {"02_train": {**_experiment(), "summary": seed_summary({"a": _run(0.4, 0.7)})},
               "04_weight_maps": {**_experiment(), "summaries": summaries},
               "02_train_em": _experiment("isbi2012", train={"seg": 0.3, "iou": 0.9,
                                                               "isbi_rand_error": 0.05})}
    answer = answer_table(results, "DIC-C2DH-HeLa")
    assert _row(answer, "02_train")[2:4] == ["0.400", "0.700 (seeded ws)"]
    assert _row(answer, "04_weight_maps: without")[1:3] == ["2", "0.300 ± 0.141"]  # no range
    assert "02_train_em" not in answer
    assert _row(answer, "Ronneberger et al. 2015 (paper)")[2] == "0.7756"
    em = answer_table(results, "isbi2012")
    assert _header(em) == ["experiment", "seeds", "Rand error", "information error",
                           "warping error", "pixel error"]
    assert _row(em, "02_train_em")[1:3] == ["1", "0.0500"]  # three significant digits
    assert _row(em, "Ronneberger et al. 2015 (paper; the challenge's secret test slices)")[
        2:5] == ["0.0382", "–", "0.000353"]


def test_answer_table_names_an_arm_of_the_same_runs_instead_of_repeating_it():
    from unetlib.report import answer_table, seed_summary

    summary = seed_summary({"a": _run(0.4, 0.7)})
    chapter = {**_experiment(), "summary": summary, "runs": {"seed 0": {"run": "R0"}}}
    study = {**_experiment(), "summaries": {"same": summary, "other": summary},
             "runs": {"same, seed 0": {"run": "R0"}, "other, seed 0": {"run": "R9"}}}
    answer = answer_table({"02_train": chapter, "ablations": study}, "DIC-C2DH-HeLa")
    _row(answer, "02_train")
    _row(answer, "ablations: other")
    assert "| ablations: same |" not in answer
    assert "the same runs as a row above: ablations: same = 02_train." in answer
    # the same runs scored with test-time augmentation are a row of their own
    tta = {**_experiment(), "summaries": {"no TTA": summary, "8-fold TTA": summary},
           "runs": {"no TTA, seed 0": {"run": "R0", "config": {"tta": False}},
                    "8-fold TTA, seed 0": {"run": "R0", "config": {"tta": True}}}}
    answer = answer_table({"02_train": chapter, "tta_hela": tta}, "DIC-C2DH-HeLa")
    _row(answer, "tta_hela: 8-fold TTA")
    assert "the same runs as a row above: tta_hela: no TTA = 02_train." in answer


def _front_run(seg_cc, seg_ws, steps_done, truth="gold", steps=1000, n_train=6):
    return {**_run(seg_cc, seg_ws), "steps_done": steps_done,
            "config": {"steps": steps, "truth": truth},
            "frames": {"train": [f"t{i:03d}" for i in range(n_train)], "val": ["a", "b"]}}


def test_front_page_table_rows_come_from_the_result_files():
    from unetlib.report import front_page_table, seed_summary

    cpu = {"02_train": {**_experiment(), "runs": (runs := {
        f"seed {i}": _front_run(0.3 + 0.1 * i, 0.7, 1000) for i in range(3)}),
        "summary": seed_summary(runs)}}
    gpu_runs = {f"seed {i}": _front_run(0.4, 0.6 + 0.1 * i, steps_done, steps=4000)
                for i, steps_done in enumerate((2871, 3354))}
    gpu = {"gpu_quick_long": {**_experiment(), "runs": gpu_runs,
                              "hardware": {"gpu": "NVIDIA H200", "cpu_count": 16},
                              "summary": seed_summary(gpu_runs)}}
    gap_runs = {"seed 0": _front_run(0.6, 0.8, 5000, truth="silver", n_train=65)}
    gap_runs["seed 0"]["config"]["silver_gap"] = 5
    gap = {"silver_truth_gap": {**_experiment(), "runs": gap_runs,
                                "summary": seed_summary(gap_runs)}}
    members = {f"one run, seed {i}": _front_run(0.5, 0.8, 10000, truth="silver", n_train=82)
               for i in range(3)}
    members["all runs averaged, seeds 0+1+2"] = _front_run(0.7, 0.9, 10000, truth="silver",
                                                             n_train=82)
    ens = {"ensemble_silver_10k": {
        **_experiment(), "runs": members, "members": {
            "all runs averaged, seeds 0+1+2": ["a", "b", "c"]},
        "summaries": {"one run": seed_summary({k: v for k, v in members.items()
                                               if k.startswith("one run")}),
                      "all runs averaged": seed_summary(
                          {"x": members["all runs averaged, seeds 0+1+2"]})}}}
    wide_runs = {"seed 0": _front_run(0.6, 0.8, 2500, truth="silver", n_train=82)}
    wide_runs["seed 0"]["config"]["base_channels"] = 24
    wide = {"silver_truth_wide": {**_experiment(), "runs": wide_runs,
                                  "summary": seed_summary(wide_runs)}}
    deep_runs = {"seed 0": _front_run(0.6, 0.8, 5000, truth="silver", n_train=82)}
    deep_runs["seed 0"]["config"]["depth"] = 4  # the profile's former four levels, its width
    deep = {"silver_truth_deep": {**_experiment(), "runs": deep_runs,
                                  "summary": seed_summary(deep_runs)}}
    bf16_runs = {"seed 0": _front_run(0.6, 0.8, 20000, truth="silver", n_train=82)}
    bf16_runs["seed 0"]["config"]["amp_cpu"] = True  # trained in bf16 on a CPU that has it
    bf16 = {"silver_truth_20k": {**_experiment(), "runs": bf16_runs,
                                 "summary": seed_summary(bf16_runs)}}
    paper_runs = {"seed 0": _front_run(0.5, 0.7, 14645, steps=20000)}
    paper_runs["seed 0"]["config"]["base_channels"] = 64
    paper = {"gpu_paper": {**_experiment(), "runs": paper_runs, "summary": seed_summary(paper_runs),
                           "hardware": {"gpu": "NVIDIA H200", "cpu_count": 16}}}
    table = front_page_table({**cpu, **gpu, **gap, **ens, **wide, **deep, **paper, **bf16,
                              "unlisted": cpu["02_train"]})
    assert _row(table, "the paper's (31 M)")[1:4] == ["gold, 6 frames", "14,645, one H200 GPU",
                                                      "1"]  # its own width, not renamed
    assert _row(table, "quick, 24 channels")[1:4] == ["silver, 82 frames", "2,500, 2 CPU cores",
                                                      "1"]
    assert _row(table, "quick, 4 levels")[1:4] == ["silver, 82 frames", "5,000, 2 CPU cores",
                                                   "1"]
    # an ensemble shows its row of all runs averaged, not its single runs
    assert _row(table, "quick, three runs averaged")[1:] == [
        "silver, 82 frames", "10,000, 2 CPU cores", "3", "0.700", "–", "0.900"]
    quick_rows = [line.split("|")[2:5] for line in table.splitlines()
                  if line.startswith("| quick |")]
    assert [[c.strip() for c in r] for r in quick_rows] == [
        ["silver, 82 frames", "20,000, 2 CPU cores (bf16 steps)", "1"],
        ["silver, 65 frames, none within 5 of a validation frame", "5,000, 2 CPU cores", "1"]]
    row = _row(table, "quick (1.94 M), `make book`")
    assert row[1:] == ["gold, 6 frames", "1,000, 2 CPU cores", "3", "0.400 ± 0.100", "–",
                       "0.700 ± 0.000"]
    # a time limit stops runs at different steps: the range; a method the result predates: "–"
    row = _row(table, "quick, 45 s a seed")
    assert row[1:4] == ["gold, 6 frames", "2,871–3,354, one H200 GPU", "2"]
    assert row[4:] == ["0.400 ± 0.000", "–", "0.650 ± 0.071"]
    assert table.splitlines()[-1].split("|")[5].strip() == "0.7756"  # the paper's, last
    assert len(table.splitlines()) == 2 + 8 + 1  # header, eight results, the paper


def test_describe_budget_curve_names_the_best_step_and_the_differences():
    from unetlib.config import TrainConfig
    from unetlib.report import describe_budget_curve

    rows = [{"step": s, "watershed": {"val_seg": v, "seg": t}, "components": {"seg": c}}
            for s, v, t, c in ((200, 0.5, 0.4, 0.3), (400, 0.8, 0.7, 0.5))]
    curve = {"command": "python studies/budget_curve.py", "train_seconds": 12.0,
             "hardware": {"cpu": "AMD EPYC", "cpu_count": 2}, "rows": rows,
             "config": {"tile": 256, "steps": 400, "lr": 0.002}}
    config = TrainConfig(lr=0.002, input_tile=608, ema=0.99, padding="same", depth=4)
    text = describe_budget_curve(curve, config)
    assert "step 400: test SEG 0.700 (seeded watershed) and 0.500 (paper's way)" in text
    # rows that have the distance-transform watershed report it, chosen by its own val SEG
    for row, d in zip(rows, ({"val_seg": 0.9, "seg": 0.8}, {"val_seg": 0.6, "seg": 0.75}),
                      strict=True):
        row["distance"] = d
    assert ("step 200: test SEG 0.800 (distance watershed) and 0.300 (paper's way)"
            in describe_budget_curve(curve, config))
    assert "`input_tile=256` (here `608`)" in text and "`ema=0.0` (here `0.99`)" in text
    # five levels: every tile that keeps the 96-pixel margins gives the same probabilities
    five = describe_budget_curve({**curve, "config": {**curve["config"], "tile": 608}},
                                 dataclasses.replace(config, depth=5, input_tile=704))
    assert "input_tile" not in five and "`ema=0.0` (here `0.99`)" in five
    assert "steps" not in text.split("differ")[1] and "lr=" not in text


@pytest.mark.parametrize("vals, expected", [
    ((0.40, 0.50, 0.52, 0.525, 0.60), 600),  # stops at the first gain under 0.01, not the best
    ((0.40, 0.405, 0.50), 200),
    ((0.40, 0.45, 0.50), 600),
])
def test_steps_from_budget_curve_walks_until_a_checkpoint_gains_less_than_the_rule(vals, expected):
    from unetlib.report import steps_from_budget_curve

    rows = [{"step": 200 * (i + 1), "distance": {"val_seg": v, "seg": 1.0 - v}}
            for i, v in enumerate(vals)]
    assert steps_from_budget_curve({"rows": rows[::-1]}) == expected  # order of rows is free
    # the test scores take no part
    for row in rows:
        row["distance"]["seg"] = 0.0
    assert steps_from_budget_curve({"rows": rows}) == expected


def test_the_quick_profile_trains_the_steps_its_budget_curve_recommends():
    """profiles.py says the quick profile's steps come from the committed budget curve by the
    studies' rule; a new curve or an edited profile that disagree fail here."""
    from unetlib.profiles import PROFILES
    from unetlib.report import steps_from_budget_curve

    curve = json.loads((PROJECT_ROOT / "book" / "results" / "budget_curve.json").read_text())
    assert steps_from_budget_curve(curve) == PROFILES["quick"]["train"]["02_train"]["steps"]


def test_elastic_speedups_pair_gpu_rows_with_the_cpu_reference():
    cpu = {"hardware": {"device": "cpu", "cpu": "EPYC", "cpu_count": 2},
           "results": [{"method": "elasticdeform 0.5.1 (1 thread)", "images_per_s": 10.0},
                       {"method": "unetlib (eager)", "images_per_s": 50.0}]}
    gpu = {"hardware": {"device": "cuda", "device_name": "H200"},
           "results": [{"method": "unetlib (compiled)", "images_per_s": 5000.0},
                       {"method": "torchvision v2.ElasticTransform", "images_per_s": 9.0}]}
    table = elastic_speedups({"bench_elastic_cpu": cpu, "bench_elastic_cuda": gpu})
    rows = table.strip().splitlines()[2:]
    assert rows == ["| unetlib (compiled), H200 | 5,000 | elasticdeform 0.5.1 (1 thread), EPYC "
                    "(2 cores) | 10.0 | 500x |"]
    assert "no GPU result" in elastic_speedups({"bench_elastic_cpu": cpu})


def test_describe_run_set_says_why_runs_stopped():
    run = {"steps_done": 3000, "train_seconds": 45.2, "stopped_early": True,
           "stopped_by": "time_limit"}
    data = {"profile": "quick", "dataset": "DIC-C2DH-HeLa", "command": "python x.py",
            "hardware": {"gpu": "NVIDIA H200"},
            "runs": {"seed 0": run, "seed 1": {**run, "stopped_early": False, "steps_done": 4000}}}
    text = describe_run_set(data)
    assert "3000, 4000 steps" in text and "1 of 2 stopped early (time limit)" in text
    assert "NVIDIA H200" in text and "`python x.py`" in text


def test_budget_note_speaks_only_when_a_study_trained_at_another_budget():
    def study(*steps):
        return {"runs": {f"arm {i}": {"config": {"steps": s}, "steps_done": s}
                         for i, s in enumerate(steps)}}

    assert budget_note(study(1000, 1000), 1000) == ""
    assert budget_note({"runs": {"seed 0": {"run": "x"}}}, 1000) == ""  # no configs: no claim
    text = budget_note(study(700, 700), 1000)
    assert "set to 700 steps, this page's to 1,000" in text and "`-p steps=700`" in text
    # an arm stopped early still counts by its setting, and two settings are both named
    mixed = study(700, 2500)
    mixed["runs"]["arm 0"]["steps_done"] = 300
    assert "700 and 2,500 steps" in budget_note(mixed, 1000)
    assert "-p steps" not in budget_note(mixed, 1000)  # no one override reruns two budgets
    said = budget_note({**study(2500), "command": "python studies/tta.py -p steps=2500"}, 1000)
    assert "set to 2,500 steps" in said and "Its command" not in said  # it says so already
    committed = json.loads((PROJECT_ROOT / "book" / "results" / "schedule.json").read_text())
    assert budget_note(committed, committed["runs"]["constant rate (the book), seed 0"]["config"]
                       ["steps"]) == ""


def test_budget_note_names_another_depth_when_the_page_gives_its_own():
    def study(steps, depth, command="python studies/x.py"):
        return {"command": command, "runs": {"seed 0": {"config": {"steps": steps,
                                                                   "depth": depth}}}}

    assert budget_note(study(800, 4), 800) == ""  # the page's depth not given: not compared
    assert budget_note(study(800, 5), 800, 5) == ""
    text = budget_note(study(800, 4), 800, 5)
    assert "set to 4 levels, this page's to 5 levels" in text and "`-p depth=4`" in text
    both = budget_note(study(700, 4), 800, 5)
    assert "set to 700 steps and 4 levels, this page's to 800 steps and 5 levels" in both
    assert "`-p steps=700 -p depth=4`" in both
    said = budget_note(study(700, 4, "python studies/x.py -p steps=700 -p depth=4"), 800, 5)
    assert "Its command" not in said  # it says so already


def test_budget_note_names_a_tile_only_where_it_changes_the_probabilities():
    def study(depth, tile, command="python studies/x.py"):
        return {"command": command, "runs": {"seed 0": {"config": {
            "steps": 800, "depth": depth, "padding": "same", "input_tile": tile}}}}

    # five levels: 608 and 704 give the same probabilities, nothing to say
    assert budget_note(study(5, 608), 800, 5, 704) == ""
    assert budget_note(study(5, 608), 800, 5) == ""  # the page's tile not given: not compared
    # four levels: the 608-pixel tile's probabilities differ from a 704-pixel one's
    text = budget_note(study(4, 608), 800, 5, 704)
    assert ("set to 4 levels and 608-pixel tiles, this page's to 5 levels and 704-pixel tiles"
            in text) and "`-p depth=4 -p input_tile=608`" in text
    three = budget_note({**study(4, 608), "runs": {"seed 0": {"config": {
        "steps": 700, "depth": 4, "padding": "same", "input_tile": 608}}}}, 800, 5, 704)
    assert ("set to 700 steps, 4 levels and 608-pixel tiles, this page's to 800 steps, 5 levels "
            "and 704-pixel tiles") in three


def _few(frames_to_arms):
    summaries = {}
    for (frames, kind), (mean, sd) in frames_to_arms.items():
        entry = {"mean": mean, "sd": sd, "values": [mean]}
        summaries[f"{frames} frame{'s' if frames != 1 else ''}, {kind}"] = {
            "watershed": {"seg": entry}, "components": {"seg": entry, "iou": entry}}
    return {"summaries": summaries, "seeds": [0, 1, 2], "steps": 300, "dataset": "DIC-C2DH-HeLa"}


def test_few_images_effects_are_stated_against_the_spread():
    data = _few({(1, "augmented"): (0.50, 0.05), (1, "not augmented"): (0.20, 0.05),
                 (8, "augmented"): (0.60, 0.10), (8, "not augmented"): (0.55, 0.10)})
    text = describe_few_images(data)
    assert "1 frame: SEG 0.500 ± 0.050 augmented, 0.200 ± 0.050 not; difference +0.300, " \
           "larger than the seeds' spread (0.100)" in text
    assert "8 frames: SEG 0.600 ± 0.100 augmented, 0.550 ± 0.100 not; difference +0.050, " \
           "within the seeds' spread (0.200)" in text
    assert "3 seeds, 300 steps" in text
    assert "not run both arms" in describe_few_images(_few({(1, "augmented"): (0.5, 0.1)}))


def test_few_images_points_are_sorted_by_frames_and_plot():
    from unetlib.plots import few_images_points, plot_few_images

    data = _few({(8, "augmented"): (0.6, 0.1), (1, "augmented"): (0.5, 0.05),
                 (1, "not augmented"): (0.2, 0.05), (8, "not augmented"): (0.55, 0.1)})
    points = few_images_points(data)
    assert points["augmented"]["frames"] == [1, 8]
    assert points["augmented"]["seg_watershed"] == [(0.5, 0.05), (0.6, 0.1)]
    fig = plot_few_images(data)
    assert len(fig.axes) == 2


def test_few_images_report_the_distance_watershed_where_the_study_scored_it():
    from unetlib.plots import few_images_points, plot_few_images

    data = _few({(1, "augmented"): (0.5, 0.05), (1, "not augmented"): (0.2, 0.05)})
    for summary in data["summaries"].values():
        summary["distance"] = {"seg": {"mean": 0.7, "sd": 0.01, "values": [0.7]}}
    assert few_images_points(data)["augmented"]["seg_distance"] == [(0.7, 0.01)]
    assert describe_few_images(data).startswith("beyond the paper: distance-transform watershed")
    assert "probability-seeded" in describe_few_images(data, "watershed")
    fig = plot_few_images(data)
    assert "distance-transform" in fig.axes[0].get_title()


def test_study_result_is_the_chapters_own_or_none(tmp_path):
    from unetlib.report import study_result

    (tmp_path / "ablations.json").write_text(json.dumps({"dataset": "DIC-C2DH-HeLa",
                                                         "profile": "quick"}))
    assert study_result("ablations", "DIC-C2DH-HeLa", "quick", tmp_path)["profile"] == "quick"
    assert study_result("ablations", "DIC-C2DH-HeLa", results_dir=tmp_path) is not None
    assert study_result("ablations", "isbi2012", results_dir=tmp_path) is None  # another set
    assert study_result("ablations", "DIC-C2DH-HeLa", "paper", tmp_path) is None
    assert study_result("few_images", "DIC-C2DH-HeLa", results_dir=tmp_path) is None  # absent
    (tmp_path / "few_images.json").write_text('{"dataset": ')
    with pytest.raises(ValueError, match="few_images.json: not valid JSON"):
        study_result("few_images", "DIC-C2DH-HeLa", results_dir=tmp_path)


def test_instance_metrics_name_each_method_the_run_was_scored_with():
    from unetlib.report import instance_metrics

    run = {"instances": {m: {"metrics": {"seg": s}} for m, s in
                         (("components", 0.2), ("watershed", 0.4), ("distance", 0.7))}}
    rows = instance_metrics(run, "seed 0")
    assert list(rows) == ["seed 0, paper's way", "seed 0, distance-transform watershed",
                          "seed 0, probability-seeded watershed"]
    del run["instances"]["distance"]  # scored before the distance watershed existed
    assert list(instance_metrics(run, "x")) == ["x, paper's way", "x, probability-seeded watershed"]


def _arm_runs(values: dict[str, list[float]], isbi: bool = False) -> dict[str, dict]:
    runs = {}
    for arm, segs in values.items():
        for seed, v in enumerate(segs):
            metrics = {"seg": v, "iou": v, "merges": 1.0, "splits": 0.5}
            if isbi:
                metrics["isbi_rand_error"] = 1 - v
            runs[f"{arm}, seed {seed}"] = {
                "instances": {m: {"metrics": metrics} for m in ("components", "distance")},
                "steps_done": 7}
    return runs


@pytest.mark.parametrize("isbi", [False, True])
def test_describe_arms_sets_every_arm_against_the_first_and_the_spread(isbi):
    from unetlib.report import describe_arms, seed_summary

    values = {"base": [0.70, 0.72, 0.74], "far": [0.40, 0.41, 0.42], "near": [0.71, 0.73, 0.76]}
    runs = _arm_runs(values, isbi)
    summaries = {arm: seed_summary({k: r for k, r in runs.items() if k.startswith(arm + ",")})
                 for arm in values}
    data = {"runs": runs, "summaries": summaries, "command": "python studies/x.py",
            "hardware": {"cpu": "AMD EPYC", "cpu_count": 2},
            "questions": {"q": ["base", "far", "near"], "missing": ["base", "absent"]}}
    text = describe_arms(data, "q")
    lines = text.splitlines()
    assert lines[0].startswith("3 seeds an arm, 7 steps a run")
    far = [ln for ln in lines if ln.startswith("- ") and "with far" in ln]
    near = [ln for ln in lines if ln.startswith("- ") and "with near" in ln]
    assert far and all("larger than the seeds' spread" in ln for ln in far)
    assert near and all("within the seeds' spread" in ln for ln in near)
    assert "| far | 7 | 0.410 ± 0.010 (0.400–0.420) |" in text
    assert ("Rand error" in text) == isbi
    assert describe_arms(data, "missing") == "_the study has not run these arms yet_"
    # the CPU's instruction set, where recorded: two CPUs of one model name served the studies
    assert "on AMD EPYC (2 cores);" in lines[0]
    data["hardware"]["cpu_isa"] = "AVX2"
    assert "on AMD EPYC (2 cores, AVX2);" in describe_arms(data, "q").splitlines()[0]


@pytest.mark.parametrize("argv, expected", [
    (["studies/recipes.py", "--seeds", "0"], "python studies/recipes.py --seeds 0"),
    (["/x/.venv/lib/python3.11/site-packages/ipykernel_launcher.py", "-f", "k.json"],
     "python -m unetlib.book run --profile quick --only 03_augmentation_ablation"),
])
def test_recorded_command_is_what_made_the_file_not_what_trained_its_first_run(
        tmp_path, monkeypatch, argv, expected):
    """A reused run keeps the command that trained it; the experiment file names the command
    that wrote it (a notebook's: the pipeline that ran its kernel)."""
    from unetlib.report import record_experiment

    monkeypatch.setattr("sys.argv", argv)
    run = {"dataset": "DIC-C2DH-HeLa", "metrics": {"seg": 0.5}, "wall_seconds": 1.0, "hardware": {},
           "command": "python -m unetlib.book run --profile quick --only 02_train"}
    path = record_experiment(tmp_path / "x.json", "03_augmentation_ablation", "quick",
                             {"seed 0": run})
    assert json.loads(path.read_text())["command"] == expected


def test_verdict_is_written_from_the_numbers():
    from unetlib.report import seed_summary, verdict

    arms = {"base": [0.70, 0.72, 0.74], "worse": [0.40, 0.41, 0.42], "same": [0.71, 0.73, 0.75]}
    summaries = {a: seed_summary({f"{a}, seed {i}": _run(v, v) for i, v in enumerate(vals)})
                 for a, vals in arms.items()}
    data = {"summaries": summaries, "questions": {"q": ["base", "worse", "same"]}}
    text = verdict(data, "q", "worse")
    assert text.startswith("worse lowered SEG (beyond the paper: probability-seeded watershed) "
                           "by 0.310")
    assert text.endswith("more than the seeds' spread")
    assert "raised" in verdict(data, "q", "same") and "within" in verdict(data, "q", "same")
    assert "paper's way" in verdict(data, "q", "worse", method="components")
    assert verdict(data, "q", "base", against="worse").startswith("base raised SEG")
    # the steps the study's runs were set to, where they share one
    data["runs"] = {f"{a}, seed {i}": {"config": {"steps": 700}} for a in arms for i in range(3)}
    assert verdict(data, "q", "worse").endswith("more than the seeds' spread (700 steps a run)")
    data["runs"]["same, seed 2"]["config"]["steps"] = 1000
    assert verdict(data, "q", "worse").endswith("more than the seeds' spread")


def test_training_conclusion_speaks_of_the_data_sets_measures():
    from unetlib.report import seed_summary, training_conclusion

    summary = seed_summary({f"seed {i}": _run(v, v + 0.3) for i, v in enumerate((0.2, 0.3))})
    hela = training_conclusion("DIC-C2DH-HeLa", summary)
    assert "SEG 0.250 the paper's way and 0.550" in hela and "the paper: 0.7756" in hela
    assert training_conclusion("isbi2012", summary).startswith("_no result")
    runs = {f"{arm}, seed {i}": {"instances": {"components": {"metrics": {
        "seg": 0.5, "iou": 0.5, "merges": 1.0, "splits": 1.0, "isbi_rand_error": v,
        "isbi_warping_error": v / 10}}}} for arm, vals in (("no TTA", (0.1, 0.12)),
                                                          ("8-fold TTA", (0.3, 0.32)))
        for i, v in enumerate(vals)}
    tta = {"questions": {"tta": ["no TTA", "8-fold TTA"]},
           "summaries": {a: seed_summary({k: r for k, r in runs.items() if k.startswith(a)})
                         for a in ("no TTA", "8-fold TTA")}}
    em = training_conclusion("isbi2012", summary, tta=tta)
    assert "8-fold TTA raised Rand error by 0.2000" in em and "warping error" in em


def test_performance_conclusion_is_written_from_the_benchmark_files():
    from unetlib.report import load_benchmarks, performance_conclusion

    benchmarks = load_benchmarks(PROJECT_ROOT / "benchmarks" / "results")
    text = performance_conclusion(benchmarks)
    peers = benchmarks["bench_elastic_peers_cpu"]
    ours = next(r for r in peers["results"] if r["peer"] == "unetlib")
    assert f"unetlib {ours['images_per_s']:.0f} images/s" in text
    assert f"{peers['unetlib_over_fastest_inexact']:.1f}x the fastest library" in text
    step = benchmarks["bench_train_step_cpu"]["results"]["channels_last + bf16"]
    assert f"({step['speedup_vs_before']:.2f}x)" in text
    hundred = next(r for r in benchmarks["bench_weights_cpu"]["rows"]
                   if r["case"] == "random" and r["cells"] == 100)
    assert f"{hundred['speedup_vs_naive_min']:.0f}x the per-cell distance transform" in text
    assert (f"before the compiled kernel (one scipy transform per cell's window, the same bits: "
            f"True) {hundred['windowed_scipy_median_s'] * 1000:.0f} ms") in text
    tiles = {r["tile"]: r for r in benchmarks["bench_predict_tile_cpu"]["results"]}
    assert (f"{tiles[704]['median_s']:.2f} s with one 704-pixel tile against "
            f"{tiles[256]['median_s']:.2f} s with 64 of 256 pixels, the same probabilities bit "
            "for bit.") in text
    changed = {**benchmarks["bench_predict_tile_cpu"], "results": [
        {**r, "bitwise_equal_to_first": r["tile"] == 256,
         "max_abs_diff_vs_first": 0.0 if r["tile"] == 256 else 2e-4}
        for r in benchmarks["bench_predict_tile_cpu"]["results"]]}
    assert "probabilities that differ by up to 2.0e-04." in performance_conclusion(
        {"bench_predict_tile_cpu": changed})
    assert performance_conclusion({}) == "_no benchmark results to conclude from_\n"
    # a missing file drops its bullet, not the others
    partial = performance_conclusion({"bench_train_step_cpu": benchmarks["bench_train_step_cpu"]})
    assert partial.count("\n- ") == 0 and partial.startswith("- The book's training step")


def test_at_a_glance_says_what_ran_and_the_result_beside_the_paper():
    from unetlib.config import TrainConfig
    from unetlib.report import at_a_glance, headline

    summary = {m: {"seeds": 2, "seg": {"mean": v, "sd": 0.01, "min": v - 0.01, "max": v + 0.01,
                                       "values": [v - 0.01, v + 0.01]}}
               for m, v in (("components", 0.25), ("distance", 0.7), ("watershed", 0.6))}
    line = headline("DIC-C2DH-HeLa", summary)
    assert "0.250 ± 0.010" in line and "0.700 ± 0.010" in line and "0.7756" in line
    assert "distance-transform watershed" in line  # the better method beyond the paper
    runs = {f"seed {s}": {"train_seconds": (120.0, 180.0, 900.0)[s], "steps_done": 700,
                          "frames": {"train": ["a"] * 6, "test": ["b"] * 9},
                          "hardware": {"cpu": "AMD EPYC", "cpu_count": 2}} for s in (0, 1, 2)}
    text = at_a_glance(TrainConfig(dataset="DIC-C2DH-HeLa", image_size=256), runs, 1_940_000,
                       line)
    assert text.startswith("**At a glance.** 3 runs of a U-Net of 1.9 M parameters")
    assert "700 steps on 6 annotated frames" in text and "the 9 test frames" in text
    assert "3.0 min of training a run, the median, on AMD EPYC (2 cores))" in text
    runs["seed 0"]["hardware"]["cpu_isa"] = "AVX2"  # recorded since 2026-12-05
    text = at_a_glance(TrainConfig(dataset="DIC-C2DH-HeLa", image_size=256, amp_cpu=True), runs,
                       1_940_000, line)
    assert "on AMD EPYC (2 cores, AVX2) in bf16)" in text
    assert text.endswith(line + "\n")
    em = {"components": {k: {"mean": 0.05, "sd": 0.0, "min": 0.05, "max": 0.05, "values": [0.05]}
                         for k in ("isbi_rand_error", "isbi_warping_error", "isbi_pixel_error")}}
    assert "Rand error 0.0500 (the paper: 0.0382)" in headline("isbi2012", em)


def test_results_conclusion_names_each_run_set_and_the_closest_to_the_paper():
    from unetlib.report import results_conclusion

    def entry(v, n=1):
        return {"mean": v, "sd": 0.0, "values": [v] * n}

    def summary(cc, dist, seeds):
        return {"components": {"seeds": seeds, "seg": entry(cc, seeds)},
                "distance": {"seg": entry(dist, seeds)}}

    em = {"components": {"seeds": 1, **{k: entry(0.05) for k in
                                        ("isbi_rand_error", "isbi_warping_error",
                                         "isbi_pixel_error")}}}
    results = {
        "02_train": {"dataset": "DIC-C2DH-HeLa", "profile": "quick",
                     "summary": summary(0.30, 0.70, 3)},
        "silver_truth": {"dataset": "DIC-C2DH-HeLa", "profile": "quick",
                         "summary": summary(0.25, 0.80, 2)},
        "gpu_paper": {"dataset": "DIC-C2DH-HeLa", "profile": "paper", "dry_run": True,
                      "summary": summary(0.99, 0.99, 1)},  # a dry run is no result
        "02_train_em": {"dataset": "isbi2012", "profile": "quick", "summary": em},
        "ablations": {"dataset": "DIC-C2DH-HeLa", "summaries": {}},  # arms: not a run set
    }
    text = results_conclusion(results)
    assert text.count("\n- ") == 3  # 02_train, silver_truth, 02_train_em, then the closest
    assert "**02_train** (DIC-C2DH-HeLa, profile `quick`, 3 seeds)" in text
    assert "**02_train_em** (isbi2012, profile `quick`, 1 seed): Test Rand error 0.0500" in text
    assert "gpu_paper" not in text and "ablations" not in text
    closest = text.splitlines()[-1]
    assert closest == ("- Closest to the paper's SEG 0.7756 on DIC-C2DH-HeLa: the paper's way, "
                       "**02_train** (0.300, -0.476); beyond the paper, **silver_truth** "
                       "(0.800, +0.024).")
    assert results_conclusion({}) == "_no result to conclude from_"


def test_data_conclusion_is_written_from_the_statistics():
    import numpy as np

    from unetlib.data import Sample
    from unetlib.data.stats import dataset_stats
    from unetlib.report import data_conclusion

    def frame(pairs):  # `pairs` pairs of touching 4 x 4 squares on a 32 x 32 frame
        labels = np.zeros((32, 32), dtype=np.int32)
        for k in range(pairs):
            labels[8 * k:8 * k + 4, 0:4] = 2 * k + 1
            labels[8 * k:8 * k + 4, 4:8] = 2 * k + 2
        return labels

    train = dataset_stats([Sample(np.zeros((32, 32), np.float32), frame(1), "a")])
    test = dataset_stats([Sample(np.zeros((32, 32), np.float32), frame(3), "b")])
    text = data_conclusion("toy", {"train": train, "test": test})
    assert "**toy, train** (1 frames): 2.0 cells a frame (2–2), median area 16 px" in text
    assert "1.0 touching pairs" in text and "3.0 touching pairs" in text
    assert "cells cover 3 % of the pixels, 31.0 background pixels to each cell pixel" in text
    assert text.splitlines()[-1].startswith("- The test frames hold 3.0 times as many touching")
    assert data_conclusion("toy", {}) == "_no labelled frames to conclude from_"


def test_threshold_conclusion_states_the_trade_from_the_scores():
    from unetlib.report import threshold_conclusion

    def row(t, seg, merges, splits):
        return {"threshold": t, "iou": 0.8, "seg": seg, "merges": merges, "splits": splits}

    rows = [row(0.1, 0.3, 3, 0), row(0.5, 0.6, 1, 1), row(0.9, 0.4, 0, 4),
            row(0.1, 0.5, 1, 1), row(0.5, 0.6, 1, 1), row(0.9, 0.6, 0, 2)]
    text = threshold_conclusion(rows)
    assert text.splitlines()[0] == (
        "- From threshold 0.1 to 0.9, over the 2 images shown, merged cells went from 4 to 0 and "
        "split cells from 1 to 6: a low threshold joins touching cells, a high one breaks cells "
        "apart.")
    assert "pixel IoU stayed within 0.800–0.800 and the mean SEG within 0.400–0.600: SEG" in text
    # no trade claimed where the counts do not show it
    flat = threshold_conclusion([row(0.1, 0.5, 1, 1), row(0.9, 0.5, 1, 1)])
    assert "joins" not in flat and "depends far more" not in flat
    assert threshold_conclusion([row(0.5, 0.5, 1, 1)]).startswith("_fewer than two")


def test_validation_choice_applies_the_rule_to_validation_seg_only():
    from unetlib.report import describe_validation_choice, passing_arms, validation_gains

    def inst(val, test):
        return {"components": {"val_seg": 0.2, "metrics": {"seg": 0.1}},
                "distance": {"val_seg": val, "metrics": {"seg": test}}}

    summary = {"components": {}, "distance": {}}
    data = {"questions": {"q": ["base", "new", "worse"]}, "seeds": [0, 1],
            "summaries": {"base": summary, "new": summary, "worse": summary},
            "instances": {"base, seed 0": inst(0.70, 0.60), "base, seed 1": inst(0.80, 0.60),
                          # a large test gain must not count: only validation decides
                          "new, seed 0": inst(0.72, 0.90), "new, seed 1": inst(0.81, 0.90),
                          "worse, seed 0": inst(0.69, 0.95)}}
    gains = validation_gains(data, "q")
    assert passing_arms(data, "q") == ["new"] and passing_arms(data, "q", min_gain=0.02) == []
    assert gains["new"] == pytest.approx([0.02, 0.01]) and gains["worse"] == pytest.approx([-0.01])
    text = describe_validation_choice(data, "q")
    assert "- new: " in text and "+0.020, +0.010" in text
    assert "mean +0.015: **passes the rule**" in text
    assert "- worse: " in text and "**does not pass the rule**" in text
    assert "does not pass" in describe_validation_choice(data, "q", min_gain=0.02).split("\n")[0]
    del data["instances"]["worse, seed 0"]["distance"]["val_seg"]  # fixed parameters
    assert "- worse: no validation SEG" in describe_validation_choice(data, "q")
    data["questions"]["q"] = ["base"]
    assert "not run" in describe_validation_choice(data, "q")
    # the committed TTA study: its line carries every seed's gain and the rule's verdict
    tta = json.loads((PROJECT_ROOT / "book" / "results" / "tta_hela.json").read_text())
    gains = validation_gains(tta, "tta")["8-fold TTA"]
    line = describe_validation_choice(tta, "tta")
    assert ", ".join(f"{g:+.3f}" for g in gains) in line
    assert ("**passes the rule**" in line) == (sum(gains) / len(gains) >= 0.01)


def _breakdown_arm(pred: np.ndarray, gt: np.ndarray, lookup: float) -> dict:
    """A ``studies/seg_breakdown.py`` arm whose every split and method has ``pred`` against
    ``gt``."""
    from unetlib.metrics import seg_breakdown

    b = seg_breakdown(pred, gt)
    both = {"components": b, "distance": b}
    return {"run": "r", "params": {}, "test": both, "validation": both,
            "test_lookup": {"method": "distance", "seg": lookup, "note": "not a result"}}


def test_breakdown_table_and_conclusion_split_the_shortfall_as_the_arms_do():
    from unetlib.report import breakdown_conclusion, breakdown_table

    gt = np.zeros((10, 30), np.int32)
    gt[0:10, 0:10], gt[0:10, 10:20], gt[0:10, 22:30] = 1, 2, 3
    tight = gt.copy()
    tight[0:2, 22:30] = 0  # cell 3 found alone, a fifth of it left out
    merged = np.where(gt > 0, 1, 0).astype(np.int32)  # every cell in one blob
    data = {"arms": {"seed 0": _breakdown_arm(tight, gt, 0.9),
                     "seed 1": _breakdown_arm(merged, gt, 0.5),
                     "all runs averaged": _breakdown_arm(gt, gt, 1.0)}}
    table = breakdown_table(data).splitlines()
    assert len(table) == 2 + 3 * 2  # header, rule, two methods an arm
    assert ("| seed 0 | distance ws | 0.933 | 0.000 | 0.000 | 0.000 | 0.067 | "
            "0.000 | 0.067 / 0.000 | 0.900 |") in table
    assert table[2].endswith("| – |")  # the look-up belongs to the method beyond the paper
    text = breakdown_conclusion(data)  # the single runs only, not their average
    seg = (2.8 / 3 + 1 / 3) / 2  # one blob matches each cell with |R| / 280: 280 / 280 / 3
    assert f"Over 2 seed(s), distance-transform watershed: test SEG {seg:.3f}" in text
    assert f"would give 0.700 ({0.7 - seg:+.3f})" in text
    assert f"{0.2 / 3 / 2:.3f} for pixels of the cell they leave out" in text
    assert "training frames' contrast" not in text  # no probe in this result
    data["contrast_matched"] = {"seed 0": _breakdown_arm(gt, gt, 1.0),
                                "seed 1": _breakdown_arm(tight, gt, 1.0)}
    text = breakdown_conclusion(data)
    assert f"the same runs give {(1 + 2.8 / 3) / 2:.3f} ({(1 + 2.8 / 3) / 2 - seg:+.3f})" in text
