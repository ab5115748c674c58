"""The book's results table: what the experiments wrote to ``book/results/`` beside the paper."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unetlib.instances import METHOD_NAMES, beyond_method
from unetlib.plots import KERAS_REPRODUCTION, PAPER, format_metric, metrics_table, paper_metrics
from unetlib.provenance import write_json_atomic

# the book's experiments, then the GPU session's (benchmarks/gpu_session.py)
EXPERIMENTS = ("02_train", "02_train_gold_validation", "02_train_em",
               "03_augmentation_ablation", "04_weight_maps", "ablations", "silver_truth",
               "silver_truth_long", "silver_truth_10k", "silver_truth_gap", "silver_truth_wide",
               "silver_truth_20k", "silver_truth_deep", "silver_truth_deep_10k",
               "silver_truth_deep_20k", "zoom_silver",
               "few_images", "recipes", "schedule", "border_weight", "depth", "tta_em", "tta_hela",
               "tta_silver", "tta_silver_long",
               "ensemble_silver_10k", "ensemble_silver_10k_tta", "ensemble_silver_20k",
               "ensemble_silver_20k_tta", "ensemble_silver_deep_10k", "gpu_quick_long",
               "gpu_paper")
# the chapters' own experiments (the studies summarise their many runs as arms instead)
CHAPTERS = ("02_train", "02_train_gold_validation", "02_train_em", "03_augmentation_ablation",
            "04_weight_maps")
# the measures of each kind of data set, in the order the tables show them
CELL_COLUMNS = ("seg", "iou", "f1", "merges", "splits", "threshold")
ISBI_COLUMNS = ("isbi_rand_error", "isbi_info_error", "isbi_warping_error", "isbi_pixel_error",
                "threshold")


def load_results(results_dir: str | os.PathLike = "results") -> dict[str, dict[str, Any]]:
    """The experiment JSON files (``<experiment>.json``) found in ``results_dir``, by name."""
    out = {}
    for name in EXPERIMENTS:
        path = Path(results_dir) / f"{name}.json"
        if path.is_file():
            try:
                out[name] = json.loads(path.read_text())
            except ValueError as err:
                raise ValueError(f"{path}: not valid JSON ({err})") from None
    return out


def study_result(name: str, dataset: str, profile: str | None = None,
                 results_dir: str | os.PathLike = "results") -> dict[str, Any] | None:
    """The result file ``results_dir/<name>.json`` of a study a chapter shows when it is there
    (a budget curve, an ablation, a GPU session), or None when it is absent or was made for
    another data set (or, with ``profile``, another profile). Invalid JSON is an error naming
    the file, not an absent study."""
    path = Path(results_dir) / f"{name}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if data.get("dataset") != dataset or (profile is not None and data.get("profile") != profile):
        return None
    return data


def instance_metrics(result: Mapping[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    """A run's test metrics by instance method, as rows of :func:`unetlib.plots.metrics_table`:
    ``"<prefix>, paper's way"`` then each method beyond the paper the run was scored with."""
    rows = {f"{prefix}, paper's way": result["instances"]["components"]["metrics"]}
    rows.update({f"{prefix}, {name}": result["instances"][m]["metrics"]
                 for m, name in METHOD_NAMES.items()
                 if m != "components" and m in result["instances"]})
    return rows


def _published_rows(dataset: str) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    if dataset in PAPER:
        # published numbers as published (strings keep their digits)
        rows["Ronneberger et al. 2015 (paper)"] = {k: str(v) for k, v in
                                                   paper_metrics(dataset).items()}
    if dataset == "DIC-C2DH-HeLa":
        for name, values in KERAS_REPRODUCTION.items():
            rows[f"Keras reproduction, {name}"] = {k: str(v) for k, v in values.items()}
    return rows


def result_datasets(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The data sets of ``results``, in the order of their first experiment."""
    return list(dict.fromkeys(data["dataset"] for data in results.values()))


def _columns(dataset: str) -> tuple[str, ...]:
    return ISBI_COLUMNS if dataset == "isbi2012" else CELL_COLUMNS


def comparison_rows(results: Mapping[str, Mapping[str, Any]], dataset: str) -> str:
    """One Markdown table for ``dataset``: each run of the chapters' experiments once (a run two
    chapters share is listed under the first; ``experiment: run (profile)``), then the published
    numbers, in that data set's measures (SEG, pixel IoU and F1, merges and splits for cells;
    the challenge's errors for ISBI 2012), columns without any value dropped. ``threshold`` is
    the one the paper's way scored at (the paper's argmax is 0.5)."""
    rows: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for experiment, data in results.items():
        if data["dataset"] != dataset or experiment not in CHAPTERS:
            continue
        thresholds = data.get("thresholds") or {}
        for run, metrics in data["metrics"].items():
            run_id = (data.get("runs", {}).get(run) or {}).get("run") or f"{experiment}/{run}"
            if run_id in seen:
                continue
            seen.add(run_id)
            row = dict(metrics)
            if thresholds.get(run):
                row["threshold"] = thresholds[run]["value"]
            rows[f"{experiment}: {run} ({data['profile']})"] = row
    rows.update(_published_rows(dataset))
    columns = [c for c in _columns(dataset) if any(c in r for r in rows.values())]
    return metrics_table(rows, columns)


def provenance_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Where each of our numbers was measured: hardware, wall time, steps and command."""
    lines = ["| experiment | profile | hardware | wall time | steps | command |",
             "|---|---|---|---|---|---|"]
    for experiment, data in results.items():
        hw = data.get("hardware", {})
        where = f"{hw.get('cpu', '?')}, {hw.get('cpu_count', '?')} cores"
        if hw.get("gpu"):
            where += f", {hw['gpu']}"
        steps = ", ".join(f"{r['steps_done']}" for r in data.get("runs", {}).values())
        lines.append(f"| {experiment} | {data['profile']} | {where} | "
                     f"{data.get('wall_seconds', 0):.0f} s | {steps} | "
                     f"`{data.get('command', '?')}` |")
    return "\n".join(lines) + "\n"


def load_benchmarks(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every benchmark JSON in ``folder`` (``benchmarks/results``), by file stem."""
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    return out


def benchmark_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-case rows of a benchmark JSON (its ``rows`` or ``results``: a list of rows, or a
    mapping from case name to row, which becomes the row's ``case``)."""
    rows = data.get("rows", data.get("results", []))
    if isinstance(rows, Mapping):
        return [{"case": name, **row} for name, row in rows.items() if isinstance(row, Mapping)]
    return [dict(r) for r in rows] if isinstance(rows, list) else []


def elastic_speedups(benchmarks: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: each GPU row of the elastic benchmarks (``bench_elastic_cuda*``) against the
    ``elasticdeform`` rows of the CPU files, in images per second of the same workload. The
    reference runs on CPUs only, so the two sides come from different machines, each named."""
    refs = [(name, r) for name, data in benchmarks.items() if name.startswith("bench_elastic")
            and data.get("hardware", {}).get("device") == "cpu"
            for r in benchmark_rows(data) if str(r.get("method", "")).startswith("elasticdeform")]
    gpus = [(name, r) for name, data in benchmarks.items() if name.startswith("bench_elastic")
            and data.get("hardware", {}).get("device") == "cuda"
            for r in benchmark_rows(data) if str(r.get("method", "")).startswith("unetlib")]
    if not refs or not gpus:
        return "_no GPU result and CPU reference to compare_\n"

    def where(name: str) -> str:
        hw = benchmarks[name].get("hardware", {})
        return hw.get("device_name") or f"{hw.get('cpu', '?')} ({hw.get('cpu_count', '?')} cores)"

    lines = ["| unetlib on the GPU | images/s | elasticdeform on a CPU | images/s | ratio |",
             "|---|---|---|---|---|"]
    for gname, g in gpus:
        for rname, r in refs:
            lines.append(f"| {g['method']}, {where(gname)} | {g['images_per_s']:,.0f} | "
                         f"{r['method']}, {where(rname)} | {r['images_per_s']:,.1f} | "
                         f"{g['images_per_s'] / r['images_per_s']:,.0f}x |")
    return "\n".join(lines) + "\n"


def benchmark_table(data: Mapping[str, Any], columns: list[str] | None = None) -> str:
    """A Markdown table of a benchmark's rows (scalar fields only, or ``columns``), preceded by
    the hardware and the command that measured it."""
    rows = benchmark_rows(data)
    if not rows:
        return "_no rows_\n"
    if columns is None:
        columns = [k for k in rows[0] if all(isinstance(r.get(k), (int, float, str, type(None)))
                                               for r in rows)]
    table = {str(i): {c: r.get(c) for c in columns} for i, r in enumerate(rows)}
    body = metrics_table(table, columns).replace("| | ", "| # | ", 1)
    speedups = data.get("speedups") or {}
    if speedups:
        body += "\nSpeed-ups (ratio of images per second): " + "; ".join(
            f"{name}: {ratio:.2f}x" for name, ratio in speedups.items()) + ".\n"
    return _measured_on(data) + body


def _measured_on(data: Mapping[str, Any]) -> str:
    """The line above a benchmark's table: hardware, threads, cores and the command."""
    hw = data.get("hardware", {})
    where = ", ".join(str(hw[k]) for k in ("cpu", "cpu_isa", "gpu", "device_name", "device",
                                           "torch") if hw.get(k))
    if hw.get("cpu_bf16") is not None and not hw.get("gpu"):
        where += f" ({'with' if hw['cpu_bf16'] else 'without'} native bf16)"
    where += _isa_limits(hw)
    threads = hw.get("torch_threads") or hw.get("threads")
    return (f"Measured on {where or hw.get('processor', '?')}"
            f"{f', {threads} threads' if threads else ''}, {hw.get('cpu_count', '?')} cores; "
            f"command: `{data.get('command', '?')}`\n\n")


def peers_table(data: Mapping[str, Any]) -> str:
    """Markdown: ``benchmarks/bench_elastic_peers.py``, every library's elastic deformation of
    the same batch: what it computes (field, interpolation, whether it equals the paper's
    B-spline deformation), images per second, unetlib's speed against it; then the ratio to the
    fastest peer whose output is not the paper's."""
    w = data["workload"]
    lines = ["| library | equals the paper's deformation | field | interpolation (image / "
             "labels) | calls | images/s | unetlib's images/s over its |",
             "|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        ratio = data["ratios"].get(r["method"])
        lines.append(f"| {r['method']} | {'yes' if r['exact'] else 'no'} | {r['field']} | "
                     f"{r['interpolation']} | {r['calls']} | {r['images_per_s']:.1f} | "
                     f"{f'{ratio:.1f}x' if ratio else '-'} |")
    fastest = data.get("fastest_inexact")
    tail = (f"\n{w['batch']} images of {w['size'][0]} x {w['size'][1]} pixels with their label "
            f"maps, one field per image.")
    if fastest:
        tail += (f" The fastest library whose output is not the paper's deformation, "
                 f"{fastest['method']}, deforms {fastest['images_per_s']:.1f} images/s; unetlib, "
                 f"exact, {data['unetlib_over_fastest_inexact']:.1f}x as many.")
    return _measured_on(data) + "\n".join(lines) + "\n" + tail + "\n"


def performance_conclusion(benchmarks: Mapping[str, Mapping[str, Any]],
                           fast_step: Mapping[str, Any] | None = None) -> str:
    """Markdown bullets ending the performance chapter, written from the benchmark files it
    shows (each bullet only where its file is there): elastic deformation against the exact
    reference and the fastest other library, on the GPU, the weight map at 100 cells,
    overlap-tile prediction (the paper's network, and the book's by tile), and the training
    step with :func:`verdict` of ``fast_step``."""
    lines = []
    peers = benchmarks.get("bench_elastic_peers_cpu")
    if peers:
        rows = {r["peer"]: r for r in peers["results"]}
        ours, ref = rows["unetlib"], rows.get("elasticdeform")
        line = (f"- Elastic deformation, the paper's field, 8 images of 512 x 512 on "
                f"{_cores(peers)}: unetlib {ours['images_per_s']:.0f} images/s")
        if ref:
            line += (f", {ours['images_per_s'] / ref['images_per_s']:.1f}x `elasticdeform` "
                     f"({ref['images_per_s']:.1f}) at equal output")
        fastest = peers.get("fastest_inexact")
        if fastest:
            line += (f"; {peers['unetlib_over_fastest_inexact']:.1f}x the fastest library "
                     f"whose deformation is not the paper's ({fastest['method']}, "
                     f"{fastest['images_per_s']:.1f})")
        lines.append(line + ".")
    for name, data in benchmarks.items():
        if name.startswith("bench_elastic_cuda"):
            best = max((r for r in benchmark_rows(data) if str(r["method"]).startswith("unetlib")),
                       key=lambda r: r["images_per_s"])
            batch = data.get("workload", {}).get("batch")
            lines.append(f"- On {data['hardware'].get('device_name')}: {best['method']} "
                         f"{best['images_per_s']:,.0f} images/s"
                         + (f" at batch {batch} (512 x 512)." if batch else "."))
    weights = benchmarks.get("bench_weights_cpu")
    if weights:
        hundred = [r for r in weights["rows"] if r.get("case") == "random" and r["cells"] == 100]
        if hundred:
            r = hundred[0]
            line = (f"- The weight map (eq. 2) of 100 cells on 512 x 512: "
                    f"{r['ours_median_s'] * 1000:.0f} ms, {r['speedup_vs_naive_min']:.0f}x "
                    f"the per-cell distance transform over the whole frame, within "
                    f"{r['max_abs_diff']:.0e} of it")
            if "windowed_scipy_median_s" in r:
                line += (f"; before the compiled kernel (one scipy transform per cell's window, "
                         f"the same bits: {r['windowed_scipy_equal']}) "
                         f"{r['windowed_scipy_median_s'] * 1000:.0f} ms")
            lines.append(line + ".")
    tiling = benchmarks.get("bench_model_tiling_cpu")
    if tiling:
        t = {r["task"]: r["median_s"] for r in benchmark_rows(tiling) if r.get("size") == 512}
        if {"tiled", "tiled572", "infer"} <= set(t):
            lines.append(f"- The paper's network on a 512 x 512 frame: {t['tiled']:.1f} s with "
                         f"the default tile against {t['tiled572']:.1f} s with 572-pixel tiles "
                         f"({t['tiled'] / t['infer']:.2f}x one pass over the padded frame).")
    tiles = benchmarks.get("bench_predict_tile_cpu")
    if tiles:
        rows = {r["tile"]: r for r in tiles["results"]}
        one = rows.get(tiles["workload"]["one_pass_tile"])
        slowest = max(tiles["results"], key=lambda r: r["median_s"])
        if one and slowest is not one:
            same = all(r["bitwise_equal_to_first"] for r in tiles["results"])
            lines.append(f"- The book's network on a {tiles['workload']['size']} x "
                         f"{tiles['workload']['size']} frame: {one['median_s']:.2f} s with one "
                         f"{one['tile']}-pixel tile against {slowest['median_s']:.2f} s with "
                         f"{slowest['tiles_a_frame']} of {slowest['tile']} pixels, "
                         + ("the same probabilities bit for bit." if same else
                            "probabilities that differ by up to "
                            f"{max(r['max_abs_diff_vs_first'] for r in tiles['results']):.1e}."))
    step = benchmarks.get("bench_train_step_cpu")
    if step:
        before, after = step["results"]["before"], step["results"]["channels_last + bf16"]
        line = (f"- The book's training step: {before['steps_per_s']:.2f} steps/s in fp32, "
                f"{after['steps_per_s']:.2f} with channels-last memory and bf16 autocast "
                f"({after['speedup_vs_before']:.2f}x)")
        if fast_step and len(fast_step.get("summaries", {})) >= 2:
            first, second = fast_step["questions"]["fast_step"]
            line += f"; {verdict(fast_step, 'fast_step', second, against=first)}"
        lines.append(line + ".")
    return "\n".join(lines) + "\n" if lines else "_no benchmark results to conclude from_\n"


def _cores(data: Mapping[str, Any]) -> str:
    """The CPU and its cores, with its instruction set where the file records it (two CPUs of
    one model name, one with native bf16 and one without, have served this book)."""
    hw = data.get("hardware", {})
    isa = f", {hw['cpu_isa']}" if hw.get("cpu_isa") else ""
    return f"{hw.get('cpu', '?')} ({hw.get('cpu_count', '?')} cores{isa}){_isa_limits(hw)}"


def _isa_limits(hw: Mapping[str, Any]) -> str:
    """Where the kernels were held below the CPU's instruction set (``cpu_isa_limits``): said,
    so that an emulated AVX2 run is never read as one on an AVX2-only CPU."""
    limits = hw.get("cpu_isa_limits") or {}
    if not limits:
        return ""
    return (", its kernels held to " + hw.get("cpu_isa", "?") + " by "
            + " and ".join(f"`{k}={v}`" for k, v in sorted(limits.items())))


def train_step_table(data: Mapping[str, Any]) -> str:
    """Markdown: where one training step's time goes (``benchmarks/bench_train_step.py``), one
    row per variant: the median milliseconds of each phase, of the whole step as the loop runs
    it, its steps per second and its speed-up over the step as it was."""
    results = data["results"]
    phases = list(next(iter(results.values()))["phase_median_s"])
    lines = ["| step | " + " | ".join(phases) + " | whole step | steps/s | speed-up |",
             "|---" * (len(phases) + 4) + "|"]
    for name, r in results.items():
        cells = [f"{r['phase_median_s'][p] * 1000:.1f}" for p in phases]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['median_s_per_step'] * 1000:.1f}"
                     f" | {r['steps_per_s']:.2f} | {r['speedup_vs_before']:.2f}x |")
    w = data["workload"]
    note = (f"\nMilliseconds (medians of {w['steps_timed']} steps per variant, alternated in "
            f"{w['rounds']} rounds) on {w['dataset']}: {w['batch_size']} crops of "
            f"{w['crop']} x {w['crop']} pixels, depth {w['depth']}, {w['base_channels']} "
            f"channels, the {w['profile']} profile's options when it ran.\n")
    return _measured_on(data) + "\n".join(lines) + "\n" + note


def record_experiment(path: str | os.PathLike, experiment: str, profile: str,
                      runs: dict[str, dict], command: str | None = None, **extra: Any) -> Path:
    """Write ``book/results/<experiment>.json``: data set, profile, metrics of each run,
    hardware, wall time and the command that reproduces it, as the book's results table reads
    them. Inside a notebook the command is the pipeline's (``python -m unetlib.book run
    --profile P --only EXPERIMENT``), not the kernel's."""
    first = next(iter(runs.values()))
    if command is None:  # what made this file: this process, or the pipeline that ran its kernel
        from unetlib.provenance import command_line

        command = command_line()
        if "ipykernel" in command or "kernel" in command:
            from unetlib.book import pipeline_command

            command = pipeline_command(profile, [experiment])
    data = {
        "experiment": experiment,
        "dataset": first["dataset"],
        "profile": profile,
        "metrics": {name: r["metrics"] for name, r in runs.items()},
        "runs": {name: {k: r.get(k) for k in ("run", "config", "best_step", "steps_done",
                                               "stopped_early", "stopped_by", "train_seconds",
                                               "wall_seconds", "history", "per_image",
                                               "frames")}
                 for name, r in runs.items()},
        "thresholds": {name: r.get("threshold") for name, r in runs.items()},
        # each instance method's parameters, how they were chosen (the validation scan) and its
        # test scores: the paper's connected components and the seeded watershed
        "instances": {name: r["instances"] for name, r in runs.items() if "instances" in r},
        "hardware": first["hardware"],
        "wall_seconds": round(sum(r["wall_seconds"] for r in runs.values()), 1),
        "command": command,
        **extra,
    }
    return write_json_atomic(path, data)


METHOD_LABELS = {m: ("paper's way" if m == "components" else "beyond the paper") + f": {name}"
                 for m, name in METHOD_NAMES.items()}

# how the results table names the beyond-the-paper method of a row
_BEYOND_SHORT = {"distance": "distance ws", "watershed": "seeded ws"}


# the ISBI 2012 challenge's scores of the probability map (unetlib.metrics.isbi_scores)
ISBI_ERRORS: dict[str, str] = {"isbi_rand_error": "Rand error", "isbi_info_error":
                               "information error", "isbi_warping_error": "warping error",
                               "isbi_pixel_error": "pixel error"}


def seed_summary(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Over the runs of several seeds: for each instance method the test SEG, pixel IoU, merges
    and splits of every seed, their mean and sample standard deviation (0 for one seed)."""
    out: dict[str, dict[str, Any]] = {}
    for method in METHOD_LABELS:
        recs = [r["instances"][method]["metrics"] for r in runs.values()
                if method in r.get("instances", {})]
        if not recs:
            continue
        entry: dict[str, Any] = {"seeds": len(recs)}
        challenge = [k for k in ISBI_ERRORS if all(k in m for m in recs)]  # the EM stack
        for key in ("seg", "iou", "merges", "splits", *challenge):
            entry[key] = _spread([m[key] for m in recs])
        out[method] = entry
    return out


def _spread(values: Sequence[float]) -> dict[str, Any]:
    """A summary entry: the values, their mean and sample standard deviation (0 for one)."""
    import numpy as np

    values = [float(v) for v in values]
    return {"values": values, "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def _arm_of(run: str) -> str:
    """The arm of a study's run name ``"<arm>, seed N"``."""
    return run.rsplit(", seed", 1)[0]


def _mean_sd(entry: Mapping[str, Any], digits: int | str = 3, spread: bool = True) -> str:
    """``mean ± sd (min–max)`` of a summary entry (the mean alone for one value); ``digits``:
    decimals, or a format spec such as ``".3g"``; ``spread=False`` leaves out the range."""
    f = digits if isinstance(digits, str) else f".{digits}f"
    if len(entry["values"]) == 1:
        return format(entry["mean"], f)
    text = f"{entry['mean']:{f}} ± {entry['sd']:{f}}"
    return (text + f" ({min(entry['values']):{f}}–{max(entry['values']):{f}})") if spread else text


def describe_few_images(data: Mapping[str, Any], method: str | None = None) -> str:
    """Markdown bullets, one per frame count: test SEG (``method``; default the study's method
    beyond the paper) with and without augmentation over the seeds, their difference, and
    whether it exceeds the seeds' spread (the two standard deviations added)."""
    from unetlib.plots import few_images_points

    if method is None:
        method = beyond_method(next(iter(data["summaries"].values())))
    points = few_images_points(data)
    aug, plain = points.get("augmented"), points.get("not augmented")
    if not aug or not plain:
        return "_the study has not run both arms yet_"
    key = f"seg_{method}"
    by_frames = {f: v for f, v in zip(plain["frames"], plain[key], strict=True)}
    lines = []
    for frames, (m_a, s_a) in zip(aug["frames"], aug[key], strict=True):
        if frames in by_frames:
            m_p, s_p = by_frames[frames]
            lines.append(_effect(f"{frames} frame{'s' if frames != 1 else ''}: SEG",
                                 {"mean": m_a, "sd": s_a}, {"mean": m_p, "sd": s_p},
                                 ("augmented", "not")))
    seeds = len(data.get("seeds", [])) or "?"
    return (f"{METHOD_LABELS[method]}, {seeds} seeds, {data.get('steps', '?')} steps a run:\n\n"
            + "\n".join(lines))


def _compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, float, bool]:
    """Two summary entries: the difference of their means, the seeds' spread (the two standard
    deviations added) and whether the difference exceeds it."""
    diff, spread = a["mean"] - b["mean"], a["sd"] + b["sd"]
    return diff, spread, abs(diff) > spread


def _effect(label: str, a: Mapping[str, Any], b: Mapping[str, Any], names: tuple[str, str],
            digits: int = 3) -> str:
    """One bullet, ``label`` then a measure's mean ± sd in two arms (``names``), their difference
    and whether it exceeds the seeds' spread (the two standard deviations added)."""
    diff, spread, beyond = _compare(a, b)
    verdict = "larger than" if beyond else "within"
    return (f"- {label} {a['mean']:.{digits}f} ± {a['sd']:.{digits}f} {names[0]}, "
            f"{b['mean']:.{digits}f} ± {b['sd']:.{digits}f} {names[1]}; difference "
            f"{diff:+.{digits}f}, {verdict} the seeds' spread ({spread:.{digits}f})")


def describe_ablation(data: Mapping[str, Any], page: str) -> str:
    """Markdown: the answer of ``studies/ablations.py`` to the question of the chapter ``page``:
    for its two arms, test SEG of the paper's way and beyond the paper, pixel IoU and merges
    per frame over the seeds, each difference set against the seeds' spread."""
    first, second = data["questions"][page]
    a, b = data["summaries"].get(first), data["summaries"].get(second)
    if not a or not b:
        return "_the study has not run both arms yet_"
    names = (f"with {first}", f"with {second}")
    beyond = beyond_method(a)
    lines = [_study_header(data, a), ""]
    lines.append(_effect("SEG, paper's way:", a["components"]["seg"], b["components"]["seg"],
                         names))
    lines.append(_effect(f"SEG, {METHOD_LABELS[beyond]}:", a[beyond]["seg"], b[beyond]["seg"],
                         names))
    lines.append(_effect("pixel IoU (paper's way):", a["components"]["iou"],
                         b["components"]["iou"], names))
    lines.append(_effect("merged cells per frame (paper's way):", a["components"]["merges"],
                         b["components"]["merges"], names, digits=2))
    restored = {arm: restored_steps(data, arm) for arm in (first, second)}
    by = {(r.get("config") or {}).get("select_by", "val_loss")
          for r in data.get("runs", {}).values()}
    if all(restored.values()) and len(by) == 1:
        chosen = {"val_loss": "the lowest validation loss",
                  "val_seg": "the best validation SEG"}.get(by.pop(), "chosen on validation")
        lines.append(f"- restored checkpoint ({chosen}), seed by seed: "
                     + "; ".join(f"step {', '.join(f'{s:,}' for s in steps)} {name}"
                                 for name, steps in zip(names, restored.values(), strict=True)))
    return "\n".join(lines)


def restored_steps(data: Mapping[str, Any], arm: str) -> list[int]:
    """The step whose weights each run of a study's ``arm`` restored (``best_step``: the
    checkpoint chosen on validation), in the order of its seeds; empty where not recorded."""
    runs = [r for name, r in data.get("runs", {}).items() if _arm_of(name) == arm]
    steps = [(r or {}).get("best_step") for r in runs]
    return [int(s) for s in steps] if steps and None not in steps else []


def _study_header(data: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    return (f"{summary['components']['seeds']} seeds an arm, {_steps(data)} steps a run "
            f"({_step_arithmetic(data)}), on {_cores(data)}; `{data['command']}`:")


def _step_arithmetic(data: Mapping[str, Any]) -> str:
    """How a study's runs computed their training steps: fp32, or bf16 autocast on the CPU
    (``amp_cpu``; a run recorded before the option existed was fp32), or both."""
    kinds = {"bf16" if (r.get("config") or {}).get("amp_cpu") else "fp32"
             for r in data.get("runs", {}).values()}
    return " and ".join(sorted(kinds, reverse=True)) + " training steps"


def verdict(data: Mapping[str, Any], question: str, arm: str, method: str = "beyond",
            measure: str = "seg", against: str | None = None) -> str:
    """One clause for a chapter's conclusion, written from the numbers: how ``arm`` of a study's
    ``question`` (``ablations``' chapter pages or ``recipes``' questions) moved ``measure`` of
    ``method`` (``"beyond"``: the study's method beyond the paper; ``"components"``: the paper's
    way) against the question's first arm (or ``against``), and whether that exceeds the seeds'
    spread (the two standard deviations added), and the training steps its runs were set to
    when they share one (a study may predate the chapter's budget). E.g. "no augmentation
    lowered SEG (distance-transform watershed) by 0.109 (0.612 ± 0.018 against 0.721 ± 0.047),
    more than the seeds' spread (700 steps a run)"."""
    base = against or data["questions"][question][0]
    a, b = data["summaries"][arm], data["summaries"][base]
    if method == "beyond":
        method = beyond_method(b)
    x, y = a[method][measure], b[method][measure]
    diff, _, beyond = _compare(x, y)
    name = {"seg": "SEG", "iou": "pixel IoU", "merges": "merged cells per frame",
            "splits": "split cells per frame", **ISBI_ERRORS}.get(measure, measure)
    digits = 4 if measure in ISBI_ERRORS else 3
    how = "raised" if diff > 0 else "lowered"
    size = "more than" if beyond else "within"
    of = "" if measure in ISBI_ERRORS else f" ({METHOD_LABELS[method]})"
    steps = _study_steps(data)
    budget = f" ({steps.pop():,} steps a run)" if len(steps) == 1 else ""
    return (f"{arm} {how} {name}{of} by {abs(diff):.{digits}f} ({x['mean']:.{digits}f} ± "
            f"{x['sd']:.{digits}f} against {y['mean']:.{digits}f} ± {y['sd']:.{digits}f}), "
            f"{size} the seeds' spread{budget}")


PAPER_PARAMETERS = 31_030_658  # the 2015 network of Fig. 1 (UNet.paper())


def headline(dataset: str, summary: Mapping[str, Any]) -> str:
    """One sentence: a run set's test result beside the paper's, mean ± sd over the seeds. On
    the cell data sets SEG both ways (the paper's connected components, and the best method
    beyond the paper); on ISBI 2012 the challenge's Rand, warping and pixel errors."""
    first = summary["components"]
    if dataset == "isbi2012":
        parts = [f"{ISBI_ERRORS[k]} {_mean_sd(first[k], 4)} (the paper: "
                 f"{PAPER[dataset][k.removeprefix('isbi_')]})"
                 for k in ("isbi_rand_error", "isbi_warping_error", "isbi_pixel_error")
                 if k in first]
        return "Test " + ", ".join(parts) + "."
    beyond = beyond_method(summary)
    text = (f"Test SEG {_mean_sd(first['seg'])} the paper's way (connected components) and "
            f"{_mean_sd(summary[beyond]['seg'])} with the {METHOD_NAMES[beyond]} (beyond the "
            f"paper)")
    if "seg" in PAPER.get(dataset, {}):
        text += f"; the paper: {PAPER[dataset]['seg']}"
    return text + "."


def at_a_glance(config: Any, runs: Mapping[str, Mapping[str, Any]], n_parameters: int,
                answer: str) -> str:
    """Markdown for the top of an experiment chapter: what was run, in one sentence a reader
    who never saw the code follows (network size, data, frames, steps, hardware, minutes),
    then ``answer`` (the chapter's result, e.g. :func:`headline` or its conclusion's lines)."""
    first = next(iter(runs.values()))
    frames = first.get("frames") or {}
    minutes = float(np.median([r["train_seconds"] for r in runs.values()])) / 60
    step = " in bf16" if getattr(config, "amp_cpu", False) else ""
    where = first.get("hardware", {}).get("gpu") or _cores(first) + step
    steps = sorted({r.get("steps_done") for r in runs.values()})
    runs_text = f"{len(runs)} runs" if len(runs) > 1 else "One run"
    size = f"{n_parameters / 1e6:.1f} M" if n_parameters >= 1e5 else f"{n_parameters:,}"
    what = (f"**At a glance.** {runs_text} of a U-Net of {size} parameters "
            f"(the paper's: {PAPER_PARAMETERS / 1e6:.1f} M), trained for "
            f"{' to '.join(str(x) for x in steps)} steps on {len(frames.get('train', []))} "
            f"annotated frames of {config.dataset} (crops of {config.image_size} x "
            f"{config.image_size} pixels; {minutes:.1f} min of training a run, the median, on "
            f"{where}) and "
            f"scored on the {len(frames.get('test', []))} test frames.")
    return what + "\n\n" + answer.strip() + "\n"


def training_conclusion(dataset: str, summary: Mapping[str, Any],
                        recipes: Mapping[str, Any] | None = None,
                        tta: Mapping[str, Any] | None = None) -> str:
    """Markdown bullets ending the training chapter, written from its numbers: the chapter's
    SEG both ways beside the paper's (cell data sets), each recipe of ``studies/recipes.py``
    against the chapter's, and test-time augmentation (``studies/tta.py``: the challenge's Rand
    and warping errors on ISBI 2012, SEG elsewhere), each with :func:`verdict`."""
    lines = []
    if "seg" in PAPER.get(dataset, {}):
        beyond = beyond_method(summary)
        lines.append(f"- This chapter's runs ({summary['components']['seeds']} seeds): SEG "
                     f"{summary['components']['seg']['mean']:.3f} the paper's way and "
                     f"{summary[beyond]['seg']['mean']:.3f} with the {METHOD_NAMES[beyond]} "
                     f"(beyond the paper); the paper: {PAPER[dataset]['seg']}.")
    if recipes:
        lines += [f"- {verdict(recipes, 'recipes', arm)}."
                  for arm in recipes["questions"]["recipes"][1:] if arm in recipes["summaries"]]
    if tta and dataset == "isbi2012":  # the challenge's errors of the probability map
        lines += [f"- {verdict(tta, 'tta', '8-fold TTA', method='components', measure=m)}."
                  for m in ("isbi_rand_error", "isbi_warping_error")]
    elif tta:
        lines.append(f"- {verdict(tta, 'tta', '8-fold TTA')}.")
    return "\n".join(lines) or "_no result to conclude from for this data set_"


def data_conclusion(dataset: str, summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown bullets ending the data chapter, written from the statistics of each split
    (:func:`unetlib.data.stats.dataset_stats`): cells per frame, the touching and near pairs
    that the border term of eq. 2 weights, and the class imbalance that w_c counters."""
    lines = []
    for split, st in summaries.items():
        cells, fg = st["cells_per_frame"], st["foreground_fraction"]
        area = st["cell_area"]
        text = (f"- **{dataset}, {split}** ({st['frames']} frames): {cells['mean']:.1f} cells a "
                f"frame ({cells['min']}–{cells['max']}), median area {area['median']:.0f} px; "
                f"{st['touching_pairs_per_frame']:.1f} touching pairs and "
                f"{st['near_pairs_per_frame']:.1f} near pairs (at most {st['near_gap']} px apart) "
                f"a frame")
        if 0 < fg < 1:
            text += (f"; cells cover {100 * fg:.0f} % of the pixels, {(1 - fg) / fg:.1f} "
                     f"background pixels to each cell pixel")
        lines.append(text + ".")
    train, test = summaries.get("train"), summaries.get("test")
    if train and test and train["touching_pairs_per_frame"] > 0:
        ratio = test["touching_pairs_per_frame"] / train["touching_pairs_per_frame"]
        why = (": separating touching cells matters more in the test than in training"
               if ratio > 1 else "")
        lines.append(f"- The test frames hold {ratio:.1f} times as many touching pairs a frame "
                     f"as the training frames{why}.")
    return "\n".join(lines) or "_no labelled frames to conclude from_"


def threshold_conclusion(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown bullets ending the explorers' chapter, written from the prediction explorer's
    scores at several thresholds (``rows``: one dict per image and threshold with ``threshold``,
    ``iou``, ``seg``, ``merges`` and ``splits``): how merged and split cells move from the lowest
    threshold to the highest, summed over the images, and how far pixel IoU and SEG (means over
    the images) move."""
    by: dict[float, list[Mapping[str, Any]]] = {}
    for r in rows:
        by.setdefault(float(r["threshold"]), []).append(r)
    if len(by) < 2:
        return "_fewer than two thresholds to conclude from_"
    lo, hi = min(by), max(by)

    def total(t: float, key: str) -> int:
        return int(sum(r[key] for r in by[t]))

    def span(key: str) -> tuple[float, float]:
        means = [float(np.mean([r[key] for r in rs])) for rs in by.values()]
        return min(means), max(means)

    m_lo, m_hi = total(lo, "merges"), total(hi, "merges")
    s_lo, s_hi = total(lo, "splits"), total(hi, "splits")
    text = (f"- From threshold {lo:g} to {hi:g}, over the {len(by[lo])} images shown, merged "
            f"cells went from {m_lo} to {m_hi} and split cells from {s_lo} to {s_hi}")
    if m_lo > m_hi and s_hi > s_lo:
        text += ": a low threshold joins touching cells, a high one breaks cells apart"
    (iou_a, iou_b), (seg_a, seg_b) = span("iou"), span("seg")
    lines = [text + ".",
             f"- Across these thresholds the mean pixel IoU stayed within {iou_a:.3f}–{iou_b:.3f} "
             f"and the mean SEG within {seg_a:.3f}–{seg_b:.3f}"
             + (": SEG, which counts cells, depends far more on the threshold than the pixel "
                "measure does." if seg_b - seg_a > 2 * (iou_b - iou_a) else ".")]
    return "\n".join(lines)


def results_conclusion(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown bullets ending the results chapter, written from ``results``
    (:func:`load_results`): every run set with one summary (the training chapters, the silver
    truth, the GPU runs; a dry run is left out) as its :func:`headline` with its profile and
    seeds, then, per cell data set with a published SEG, the run set that came closest to it and
    by how much, the paper's way and beyond the paper."""
    lines: list[str] = []
    best: dict[str, dict[str, tuple[float, str]]] = {}
    for experiment, data in results.items():
        summary = data.get("summary")
        if not summary or data.get("dry_run"):
            continue
        dataset = data["dataset"]
        seeds = summary["components"]["seeds"]
        lines.append(f"- **{experiment}** ({dataset}, profile `{data.get('profile', '?')}`, "
                     f"{seeds} seed{'s' if seeds > 1 else ''}): {headline(dataset, summary)}")
        if "seg" not in PAPER.get(dataset, {}):
            continue
        for way, method in (("the paper's way", "components"),
                            ("beyond the paper", beyond_method(summary))):
            seg = summary.get(method, {}).get("seg")
            if seg and seg["mean"] > best.setdefault(dataset, {}).get(way, (-1.0, ""))[0]:
                best[dataset][way] = (seg["mean"], experiment)
    for dataset, ways in best.items():
        paper = PAPER[dataset]["seg"]
        parts = [f"{way}, **{name}** ({mean:.3f}, {mean - paper:+.3f})"
                 for way, (mean, name) in ways.items()]
        lines.append(f"- Closest to the paper's SEG {paper} on {dataset}: " + "; ".join(parts)
                     + ".")
    return "\n".join(lines) or "_no result to conclude from_"


def _steps(data: Mapping[str, Any], arm: str | None = None) -> str:
    steps = {r.get("steps_done") for name, r in data["runs"].items()
             if arm is None or _arm_of(name) == arm}
    return "/".join(str(s) for s in sorted(x for x in steps if x is not None)) or "?"


def describe_arms(data: Mapping[str, Any], question: str) -> str:
    """Markdown: the answer of an arm study (``studies/recipes.py``) to one of its ``questions``:
    a table of the question's arms (test SEG the paper's way and beyond it, pixel IoU, merges
    and splits per frame, mean ± sd (range) over the seeds, and the steps each ran), then for
    every arm after the first its SEG both ways against the first arm's, set against the seeds'
    spread."""
    arms = [a for a in data["questions"][question] if a in data["summaries"]]
    if len(arms) < 2:
        return "_the study has not run these arms yet_"
    summaries = data["summaries"]
    first = summaries[arms[0]]
    beyond = beyond_method(first)
    lines = [_study_header(data, first), "",
             f"| arm | steps | SEG, paper's way | SEG, {METHOD_LABELS[beyond]} | pixel IoU | "
             "merges / frame | splits / frame |", "|---|---|---|---|---|---|---|"]
    for arm in arms:
        a = summaries[arm]
        lines.append(f"| {arm} | {_steps(data, arm)} | {_mean_sd(a['components']['seg'])} | "
                     f"{_mean_sd(a[beyond]['seg'])} | {_mean_sd(a['components']['iou'])} | "
                     f"{a['components']['merges']['mean']:.2f} | "
                     f"{a['components']['splits']['mean']:.2f} |")
    challenge = [k for k in ISBI_ERRORS if all(k in summaries[a]["components"] for a in arms)]
    if challenge:  # the EM stack: the challenge's scores of the probability map
        lines += ["", "| arm | " + " | ".join(ISBI_ERRORS[k] for k in challenge) + " |",
                  "|---|" + "---|" * len(challenge)]
        lines += [f"| {arm} | " + " | ".join(_mean_sd(summaries[arm]["components"][k], 4)
                                             for k in challenge) + " |" for arm in arms]
    lines.append("")
    for arm in arms[1:]:
        a = summaries[arm]
        names = (f"with {arm}", f"with {arms[0]}")
        for method, label in (("components", "paper's way"), (beyond, METHOD_LABELS[beyond])):
            lines.append(_effect(f"SEG ({label}):", a[method]["seg"], first[method]["seg"],
                                 names))
        for k in challenge:
            lines.append(_effect(f"{ISBI_ERRORS[k]}:", a["components"][k],
                                 first["components"][k], names, digits=4))
    return "\n".join(lines)


ADOPT_GAIN = 0.01  # the studies' rule: a change qualifies if it gains this much validation SEG


def validation_gains(data: Mapping[str, Any], question: str) -> dict[str, list[float]]:
    """Per arm after the first of ``question``: each seed's gain in **validation** SEG of the
    beyond-the-paper method over the first arm's (``runs["<arm>, seed <s>"]``, the value the
    instance parameters were chosen by; the file's ``instances`` table, as
    :func:`record_experiment` writes it). Seeds missing from either arm, or scored with fixed
    parameters (no validation SEG), are left out."""
    arms = [a for a in data["questions"][question] if a in data["summaries"]]
    instances = data["instances"]
    out: dict[str, list[float]] = {}
    for arm in arms[1:]:
        gains = []
        for seed in data.get("seeds", []):
            a, b = instances.get(f"{arm}, seed {seed}"), instances.get(f"{arms[0]}, seed {seed}")
            method = beyond_method(b) if b else None
            if a and b and "val_seg" in a.get(method, {}) and "val_seg" in b[method]:
                gains.append(a[method]["val_seg"] - b[method]["val_seg"])
        out[arm] = gains
    return out


def passing_arms(data: Mapping[str, Any], question: str,
                 min_gain: float = ADOPT_GAIN) -> list[str]:
    """The arms after the first of ``question`` that pass the studies' rule: a mean validation
    SEG gain over the first arm (:func:`validation_gains`) of at least ``min_gain``."""
    return [arm for arm, gains in validation_gains(data, question).items()
            if gains and float(np.mean(gains)) >= min_gain]


def describe_validation_choice(data: Mapping[str, Any], question: str,
                               min_gain: float = ADOPT_GAIN) -> str:
    """Markdown: whether each arm after the first of ``question`` passes the studies' rule (a
    mean validation SEG gain of at least ``min_gain`` over the first arm, of the method the
    headline reports), with every seed's gain: the choice made without the test frames. What the
    book then did with an arm that passes is the chapter's to say."""
    arms = [a for a in data["questions"][question] if a in data["summaries"]]
    if len(arms) < 2:
        return "_the study has not run these arms yet_"
    method = beyond_method(data["summaries"][arms[0]])
    lines = []
    for arm, gains in validation_gains(data, question).items():
        if not gains:
            lines.append(f"- {arm}: no validation SEG to choose by (fixed instance parameters)")
            continue
        mean = float(np.mean(gains))
        verdict = ("passes the rule" if arm in passing_arms(data, question, min_gain)
                   else "does not pass the rule")
        lines.append(f"- {arm}: validation SEG ({METHOD_LABELS[method]}) "
                     f"{', '.join(f'{g:+.3f}' for g in gains)} against {arms[0]}, seed by seed; "
                     f"mean {mean:+.3f}: **{verdict}** (a mean gain of at least {min_gain:.2f})")
    return "\n".join(lines)


_NOT_OPTIONS = ("out_dir", "resume", "reuse", "progress", "keep_checkpoints", "extra")


def config_table(config: Any) -> str:
    """Markdown: the options of a training run (a :class:`unetlib.config.TrainConfig`), two
    columns side by side, without where it is stored or how it is shown."""
    import dataclasses

    items = [(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
             if f.name not in _NOT_OPTIONS]
    half = (len(items) + 1) // 2
    rows = ["| option | value | option | value |", "|---|---|---|---|"]
    for i in range(half):
        right = items[half + i] if half + i < len(items) else ("", "")
        rows.append(f"| `{items[i][0]}` | {items[i][1]!r} | "
                    + (f"`{right[0]}` | {right[1]!r} |" if right[0] else " | |"))
    return "\n".join(rows)


def budget_note(data: Mapping[str, Any], steps: int, depth: int | None = None,
                tile: int | None = None) -> str:
    """Markdown: empty when every run of a study file was set to ``steps`` training steps (the
    page's own budget) and, where the page's ``depth`` is given, had its number of resolution
    levels, and where the page's input ``tile`` is given, predicted with a tile that gives its
    probabilities (:func:`unetlib.tiling.tiles_agree`); else one sentence that says the study
    trained another network or budget, so that its arms are read against each other and not
    against the page's headline (a study made before the profile changed stays valid for its
    own question), with the overrides that rerun it as committed where one value each does."""
    theirs = sorted(_study_steps(data))
    levels = sorted(_study_depths(data)) if depth is not None else []
    tiles = sorted(_study_tiles(data, tile)) if tile is not None else []
    other_steps = bool(theirs) and theirs != [int(steps)]
    other_depth = bool(levels) and levels != [int(depth)]
    if not (other_steps or other_depth or tiles):
        return ""
    command = data.get("command", "")
    said, page, overrides = [], [], []
    if other_steps:
        said.append(" and ".join(f"{s:,}" for s in theirs) + " steps")
        page.append(f"{int(steps):,} steps")
        if len(theirs) == 1 and "steps=" not in command:
            overrides.append(f"-p steps={theirs[0]}")
    if other_depth:
        said.append(" and ".join(str(d) for d in levels) + " levels")
        page.append(f"{int(depth)} levels")
        if len(levels) == 1 and "depth=" not in command:
            overrides.append(f"-p depth={levels[0]}")
    if tiles:
        said.append(" and ".join(str(t) for t in tiles) + "-pixel tiles")
        page.append(f"{int(tile)}-pixel tiles")
        if len(tiles) == 1 and "input_tile=" not in command:
            overrides.append(f"-p input_tile={tiles[0]}")
    rerun = (f" Its command above reruns it as committed with `{' '.join(overrides)}`."
             if overrides else "")
    return (f"_This study's runs were set to {_listed(said)}, this page's to {_listed(page)}: "
            f"read its arms against each other, not against the results above.{rerun}_")


def _listed(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _study_tiles(data: Mapping[str, Any], tile: int) -> set[int]:
    """The input tiles of a study file's runs whose probabilities differ from ``tile``'s at
    the run's depth and padding (a tile that gives the same probabilities is no difference)."""
    from unetlib.tiling import tiles_agree

    out = set()
    for r in data.get("runs", {}).values():
        config = r.get("config", {}) if isinstance(r, Mapping) else {}
        theirs = config.get("input_tile")
        if theirs is None or int(theirs) == int(tile):
            continue
        if not tiles_agree(int(config.get("depth", 5)), config.get("padding", "same"),
                           int(theirs), int(tile)):
            out.add(int(theirs))
    return out


def _study_steps(data: Mapping[str, Any]) -> set[int]:
    """The training steps the runs of a study file were set to (their configurations)."""
    return {int(r["config"]["steps"]) for r in data.get("runs", {}).values()
            if isinstance(r, Mapping) and "config" in r}


def _study_depths(data: Mapping[str, Any]) -> set[int]:
    """The resolution levels of the runs of a study file (their configurations)."""
    return {int(r["config"]["depth"]) for r in data.get("runs", {}).values()
            if isinstance(r, Mapping) and "depth" in r.get("config", {})}


def describe_run_set(data: Mapping[str, Any]) -> str:
    """One sentence on an experiment file's runs: how many seeds, the steps each ran (and why it
    stopped), training seconds, the hardware, and the command that made it."""
    runs = list(data["runs"].values())
    if len(runs) <= 4:
        steps = ", ".join(str(r["steps_done"]) for r in runs)
        seconds = ", ".join(f"{r['train_seconds']:.0f}" for r in runs)
    else:  # a study's many runs: the range
        lo, hi = (f(r["steps_done"] for r in runs) for f in (min, max))
        steps = f"{lo}" if lo == hi else f"{lo} to {hi}"
        seconds = (f"{min(r['train_seconds'] for r in runs):.0f} to "
                   f"{max(r['train_seconds'] for r in runs):.0f}")
    hw = data.get("hardware", {})
    where = hw.get("gpu") or f"{hw.get('cpu', '?')} ({hw.get('cpu_count', '?')} cores, no GPU)"
    reasons = sorted({str(r.get("stopped_by") or "patience").replace("_", " ")
                      for r in runs if r.get("stopped_early")})
    n_stopped = sum(bool(r.get("stopped_early")) for r in runs)
    why = (f"; {n_stopped} of {len(runs)} stopped early ({', '.join(reasons)})"
           if n_stopped else "")
    return (f"{len(runs)} run(s) of profile `{data['profile']}` on {data['dataset']}: "
            f"{steps} steps{why}; {seconds} s of training each on {where}. Command: "
            f"`{data['command']}`.")


def headline_table(summary: Mapping[str, Any], dataset: str) -> str:
    """Markdown: SEG and pixel IoU of each instance method (mean ± sd over seeds, range), beside
    the paper's SEG for ``dataset`` and the Keras reproduction's pixel IoU on DIC-HeLa."""
    lines = ["| instances | SEG | pixel IoU | merges / frame | splits / frame |",
             "| --- | --- | --- | --- | --- |"]
    for method, label in METHOD_LABELS.items():
        if method in summary:
            s = summary[method]
            lines.append(f"| this book, {label} ({s['seeds']} seeds) | {_mean_sd(s['seg'])} | "
                         f"{_mean_sd(s['iou'])} | {s['merges']['mean']:.2f} | "
                         f"{s['splits']['mean']:.2f} |")
    if dataset in PAPER and "seg" in PAPER[dataset]:
        seg = PAPER[dataset]["seg"]
        lines.append(f"| Ronneberger et al. 2015 (paper) | {seg:.4f} | – | – | – |")
    if dataset == "DIC-C2DH-HeLa":
        iou = KERAS_REPRODUCTION["with augmentation"]["iou"]
        lines.append(f"| Keras reproduction (with augmentation) | – | {iou:.3f} | – | – |")
    return "\n".join(lines)


def variant_table(summaries: Mapping[str, Mapping[str, Any]], method: str = "components") -> str:
    """Markdown: for each variant (an ablation's arms, each summarised over seeds by
    :func:`seed_summary`) the test SEG, pixel IoU, merges and splits of ``method``, as mean ±
    sd (range) over the seeds."""
    lines = [f"| variant ({METHOD_LABELS[method]}) | seeds | SEG | pixel IoU | merges / frame | "
             "splits / frame |", "| --- | --- | --- | --- | --- | --- |"]
    for variant, summary in summaries.items():
        s = summary[method]
        lines.append(f"| {variant} | {s['seeds']} | {_mean_sd(s['seg'])} | {_mean_sd(s['iou'])} "
                     f"| {s['merges']['mean']:.2f} | {s['splits']['mean']:.2f} |")
    return "\n".join(lines)


def _cell(entry: Mapping[str, Any] | None, digits: int | str = 3) -> str:
    return "–" if entry is None else _mean_sd(entry, digits, spread=False)


def _single(value: float | None) -> dict[str, Any] | None:
    return None if value is None else _spread([value])


def _arm_summaries(experiment: str, data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """An experiment's arms, each summarised over its seeds (``summary`` for one arm,
    ``summaries`` for several, else one arm per run from its metrics)."""
    if data.get("summary"):
        return {experiment: data["summary"]}
    if data.get("summaries"):
        return {f"{experiment}: {v}": s for v, s in data["summaries"].items()}
    arms: dict[str, Mapping[str, Any]] = {}
    for run, metrics in data["metrics"].items():
        inst = (data.get("instances") or {}).get(run, {})
        arms[f"{experiment}: {run}"] = {
            "components": {"seeds": 1, **{k: _single(metrics.get(k)) for k in
                                          ("seg", "iou", "merges", *ISBI_ERRORS)}},
            **{m: {"seg": _single(inst[m]["metrics"]["seg"])}
               for m in ("distance", "watershed") if m in inst}}
    return arms


def _isbi_arms(experiment: str, data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The challenge's errors of an EM experiment's arms over their seeds, from the runs' own
    metrics (runs ``<arm>, seed N``; summaries written before they kept these errors lack
    them)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run, metrics in data["metrics"].items():
        arm = f"{experiment}: {_arm_of(run)}" if ", seed" in run else experiment
        groups.setdefault(arm, []).append(metrics)
    out: dict[str, dict[str, Any]] = {}
    for arm, recs in groups.items():
        entry: dict[str, Any] = {"seeds": len(recs)}
        for key in ISBI_ERRORS:
            values = [m[key] for m in recs if m.get(key) is not None]
            if values:
                entry[key] = _spread(values)
        out[arm] = entry
    return out


# the arm of an ensemble study (studies/ensemble.py) that averages all of its runs
ENSEMBLE_ARM = "all runs averaged"

# the rows of the front page's table (book/index.md): experiment -> what trained, in words
# without numbers (the steps, seeds, machine and scores come from the result file)
FRONT_PAGE_ROWS: dict[str, str] = {
    "02_train": "quick (1.94 M), `make book`",
    "silver_truth": "quick",
    "silver_truth_long": "quick",
    "silver_truth_10k": "quick",
    "silver_truth_20k": "quick",
    "silver_truth_gap": "quick",
    "silver_truth_wide": "quick",
    "silver_truth_deep": "quick",
    "silver_truth_deep_10k": "quick",
    "silver_truth_deep_20k": "quick",
    "ensemble_silver_10k": "quick, three runs averaged",
    "gpu_paper": "the paper's (31 M)",
    "gpu_quick_long": "quick, 45 s a seed",
}


def _machine(hw: Mapping[str, Any]) -> str:
    """The machine of a result in a few words: its GPU, or its CPU cores."""
    if hw.get("gpu"):
        return f"one {str(hw['gpu']).removeprefix('NVIDIA ')} GPU"
    return f"{hw.get('cpu_count', '?')} CPU cores"


def _steps_run(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """The steps the runs trained: one number, or the range where a time limit stopped them."""
    done = sorted({int(r.get("steps_done") or r["config"]["steps"]) for r in runs.values()})
    return f"{done[0]:,}" if len(done) == 1 else f"{done[0]:,}–{done[-1]:,}"


def front_page_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: the DIC-HeLa answer at a glance, one row per experiment of
    :data:`FRONT_PAGE_ROWS` found in ``results``: which U-Net, on which truth, how many steps on
    which machine, the seeds, and test SEG (mean ± sd over the seeds) the paper's way and with
    the two instance methods beyond it ("–" where a result predates one); the paper's number
    last. A run set of the quick network made wider or deeper than the profile's says its
    channels or levels, one
    trained in bf16 on a CPU says so beside its machine. The front page quotes it verbatim (a
    test rebuilds it from the committed results)."""
    from unetlib.profiles import train_config

    profile = train_config("quick")
    quick, levels = profile.base_channels, profile.depth
    lines = ["| U-Net | truth (sequence 01) | steps, machine | seeds | SEG, paper's way | "
             "SEG, distance watershed | SEG, seeded watershed |", "|---|---|---|---|---|---|---|"]
    for experiment, what in FRONT_PAGE_ROWS.items():
        data = results.get(experiment)
        if not data:
            continue
        runs, summary, seeds = data["runs"], data.get("summary"), str(len(data["runs"]))
        if "members" in data:  # an ensemble (studies/ensemble.py): the row of all runs averaged
            name = next(n for n in runs if n.startswith(ENSEMBLE_ARM + ","))
            runs, summary = {name: runs[name]}, data["summaries"][ENSEMBLE_ARM]
            seeds = str(len(data["members"][name]))  # the row's name says they are averaged
        (truth,) = {r["config"].get("truth", "gold") for r in runs.values()}
        (frames,) = {len(r["frames"]["train"]) for r in runs.values()}
        (gap,) = {r["config"].get("silver_gap", 0) for r in runs.values()}
        clear = f", none within {gap} of a validation frame" if gap else ""
        (width,) = {r["config"].get("base_channels", quick) for r in runs.values()}
        if width != quick and what.startswith("quick"):  # the quick network, made wider
            what = f"{what}, {width} channels"
        (depth,) = {r["config"].get("depth", levels) for r in runs.values()}
        if depth != levels and what.startswith("quick"):  # the quick network, made deeper
            what = f"{what}, {depth} levels"
        cells = [_cell(summary.get(m, {}).get("seg")) for m in ("components", "distance",
                                                                  "watershed")]
        machine = _machine(data["hardware"])
        if not data["hardware"].get("gpu") and any(r["config"].get("amp_cpu") is True
                                                   for r in runs.values()):
            machine += " (bf16 steps)"  # a CPU with native bf16 trained them in bf16
        lines.append(f"| {what} | {truth}, {frames} frames{clear} | {_steps_run(runs)}, "
                     f"{machine} | {seeds} | " + " | ".join(cells) + " |")
    lines.append("| the paper's, on the challenge's secret test sequences | gold, both sequences | "
                 f"– | – | {PAPER['DIC-C2DH-HeLa']['seg']} | – | – |")
    return "\n".join(lines)


def answer_table(results: Mapping[str, Mapping[str, Any]], dataset: str) -> str:
    """Markdown, one row per experiment arm on ``dataset``, as mean ± sd over the seeds that
    ran (the range where there are several): for cells, SEG the paper's way and beyond the paper
    (the distance-transform watershed, or the probability-seeded one in results scored before it
    existed; the cell names which), pixel IoU and merges per frame, beside the paper's SEG and
    the Keras reproduction's pixel IoU; for ISBI 2012 the challenge's Rand, information, warping
    and pixel errors beside the paper's."""
    if dataset == "isbi2012":
        names = [ISBI_ERRORS[k] for k in ISBI_ERRORS]
        lines = ["| experiment | seeds | " + " | ".join(names) + " |",
                 "|---|---|" + "---|" * len(names)]
        for experiment, data in results.items():
            if data["dataset"] != dataset:
                continue
            for name, entry in _isbi_arms(experiment, data).items():
                lines.append(f"| {name} | {entry['seeds']} | " + " | ".join(
                    _cell(entry.get(k), "#.3g") for k in ISBI_ERRORS) + " |")
        paper = paper_metrics(dataset)
        lines.append("| Ronneberger et al. 2015 (paper; the challenge's secret test slices) | – | "
                     + " | ".join(format_metric(paper.get(k), k) for k in ISBI_ERRORS) + " |")
        return "\n".join(lines)
    lines = ["| experiment | seeds | SEG, paper's way | SEG beyond the paper (method) | "
             "pixel IoU | merges / frame |", "|---|---|---|---|---|---|"]
    shown: dict[frozenset, str] = {}
    same: list[str] = []
    for experiment, data in results.items():
        if data["dataset"] != dataset:
            continue
        runs = _arm_runs(experiment, data)
        for name, summary in _arm_summaries(experiment, data).items():
            ids = runs.get(name)
            if ids and ids in shown:
                same.append(f"{name} = {shown[ids]}")
                continue
            if ids:
                shown[ids] = name
            paper_way = summary.get("components", {})
            beyond = beyond_method(summary)
            ws = summary.get(beyond, {})
            beyond_cell = (f"{_cell(ws['seg'])} ({_BEYOND_SHORT[beyond]})" if ws.get("seg")
                           else "–")
            merges = paper_way.get("merges")
            lines.append(
                f"| {name} | {paper_way.get('seeds', 1)} | {_cell(paper_way.get('seg'))} | "
                f"{beyond_cell} | {_cell(paper_way.get('iou'))} | "
                f"{'–' if merges is None else format(merges['mean'], '.2f')} |")
    if dataset in PAPER and "seg" in PAPER[dataset]:
        lines.append(f"| Ronneberger et al. 2015 (paper) | – | {PAPER[dataset]['seg']} | – | – | "
                     "– |")
    if dataset == "DIC-C2DH-HeLa":
        for arm, values in KERAS_REPRODUCTION.items():
            lines.append(f"| Keras reproduction, {arm} | 1 | – | – | {values['iou']:.3f} | – |")
    if same:
        lines += ["", "Not repeated, the same runs as a row above: " + "; ".join(same) + "."]
    return "\n".join(lines)


def _arm_runs(experiment: str, data: Mapping[str, Any]) -> dict[str, frozenset]:
    """The trained runs behind each arm of :func:`_arm_summaries`, as (``run`` name, whether
    they were scored with test-time augmentation): the same runs scored another way (a TTA
    study's arm) are another row."""
    runs = {name: ((r or {}).get("run") or f"{experiment}/{name}",
                   bool(((r or {}).get("config") or {}).get("tta")))
            for name, r in data.get("runs", {}).items()}
    if data.get("summary"):
        return {experiment: frozenset(runs.values())}
    if data.get("summaries"):
        return {f"{experiment}: {arm}": frozenset(run for name, run in runs.items()
                                                  if _arm_of(name) == arm)
                for arm in data["summaries"]}
    return {f"{experiment}: {name}": frozenset([run]) for name, run in runs.items()}


def steps_from_budget_curve(curve: Mapping[str, Any], gain: float = ADOPT_GAIN) -> int:
    """The training steps a budget curve (``studies/budget_curve.py``) recommends: walking its
    checkpoints in order, the last one after which the next checkpoint still raised the
    validation SEG (of the method beyond the paper) by at least ``gain``, the studies' adoption
    rule. Validation frames only; the test scores take no part."""
    rows = sorted(curve["rows"], key=lambda r: r["step"])
    method = beyond_method(rows[0])
    chosen = rows[0]
    for row in rows[1:]:
        if row[method]["val_seg"] - chosen[method]["val_seg"] < gain:
            break
        chosen = row
    return int(chosen["step"])


def describe_budget_curve(curve: Mapping[str, Any], config: Any) -> str:
    """Markdown under the budget figure: the command and hardware that made the curve, its
    checkpoint with the best validation SEG (watershed) and what that scored, and the options in
    which the curve's run differs from ``config`` (options the run did not have yet count at
    their defaults; ``tile`` is today's ``input_tile``, left out where both tiles give the same
    probabilities, :func:`unetlib.tiling.tiles_agree`)."""
    import dataclasses

    from unetlib.tiling import tiles_agree

    hw = curve["hardware"]
    method = beyond_method(curve["rows"][0])
    name = _BEYOND_SHORT[method].replace("ws", "watershed")
    best = max(curve["rows"], key=lambda r: r[method]["val_seg"])
    text = (f"Measured with `{curve['command']}` ({curve['train_seconds']:.0f} s of training on "
            f"{hw['cpu']}, {hw['cpu_count']} cores). The checkpoint with the best validation SEG "
            f"({name}) is step {best['step']}: test SEG {best[method]['seg']:.3f} "
            f"({name}) and {best['components']['seg']:.3f} (paper's way).")
    chosen = steps_from_budget_curve(curve)
    text += (f" Where each further checkpoint stops raising that validation SEG by "
             f"{ADOPT_GAIN} (the studies' rule), the curve recommends {chosen:,} steps; this "
             f"chapter trains {config.steps:,}.")
    then = {{"tile": "input_tile"}.get(k, k): v for k, v in curve["config"].items()}
    defaults = dataclasses.asdict(type(config)())
    ignored = {"steps", "eval_every", "seed", "progress", "keep_checkpoints"}
    differ = {k: then.get(k, defaults[k]) for k in defaults
              if k not in ignored and then.get(k, defaults[k]) != getattr(config, k)}
    if "input_tile" in differ and tiles_agree(config.depth, config.padding,
                                              differ["input_tile"], config.input_tile):
        del differ["input_tile"]  # another tile, the same probabilities: only the speed differs
    if differ:
        text += " That run's options differ from this chapter's in: " + ", ".join(
            f"`{k}={v!r}` (here `{getattr(config, k)!r}`)" for k, v in differ.items()) + "."
    return text


def breakdown_table(data: Mapping[str, Any]) -> str:
    """Markdown: where each arm of a ``studies/seg_breakdown.py`` result loses SEG on the test
    frames, one row per arm and instance method: the SEG, then ``1 - SEG`` split over the cells
    merged with a neighbour, split, missed, and found whole and alone with outlines too tight
    (pixels of the cell left out) or too loose (pixels added); the outlines' two shares on the
    validation frames beside them; and the best SEG the method's parameters reach when looked
    up on the test frames (a bound, not a result). Columns: the run, how its cells were made,
    test SEG, the shares merged / split / missed, the outlines' shares left out / added, the
    outlines' two shares on validation, the look-up."""
    lines = ["| run | cells | test SEG | merged | split | missed | left out | added | "
             "validation | look-up |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, arm in data["arms"].items():
        lookup = arm["test_lookup"]
        for method in ("components", lookup["method"]):
            test, val = arm["test"][method], arm["validation"][method]
            c = test["categories"]
            way = "paper's way" if method == "components" else _BEYOND_SHORT[method]
            best = f"{lookup['seg']:.3f}" if method == lookup["method"] else "–"
            lines.append(
                f"| {name} | {way} | {test['seg']:.3f} | {c['merged']['loss']:.3f} | "
                f"{c['split']['loss']:.3f} | {c['missed']['loss']:.3f} | "
                f"{test['one_to_one_loss']['left_out']:.3f} | "
                f"{test['one_to_one_loss']['added']:.3f} | "
                f"{val['one_to_one_loss']['left_out']:.3f} / {val['one_to_one_loss']['added']:.3f}"
                f" | {best} |")
    return "\n".join(lines)


def breakdown_summary(data: Mapping[str, Any], method: str | None = None) -> dict[str, Any]:
    """The single runs of a ``studies/seg_breakdown.py`` result (not their average), mean over
    the seeds, with ``method`` (default: the one beyond the paper): test ``seg``; the share of
    ``1 - SEG`` that cells ``merged``, ``split`` and ``missed`` take, and ``apart``, their sum;
    ``left_out`` and ``added``, the shares of the outlines of cells found whole and alone
    (``val_left_out``, ``val_added`` on the validation frames); for the method beyond the paper
    ``lookup``, the best SEG of its parameters looked up on the test frames, and
    ``contrast_matched``, the test SEG with every frame at the training frames' contrast (None
    where the result has no such probe)."""
    singles = [a for n, a in data["arms"].items() if n.startswith("seed ")]
    beyond = singles[0]["test_lookup"]["method"]
    method = method or beyond

    def mean(split: str, *path: str, arms: list[dict] = singles) -> float:
        values = []
        for arm in arms:
            v: Any = arm[split][method]
            for key in path:
                v = v[key]
            values.append(v)
        return float(np.mean(values))

    out = {"seeds": len(singles), "method": method, "seg": mean("test", "seg"),
           **{c: mean("test", "categories", c, "loss") for c in ("merged", "split", "missed")},
           "left_out": mean("test", "one_to_one_loss", "left_out"),
           "added": mean("test", "one_to_one_loss", "added"),
           "val_left_out": mean("validation", "one_to_one_loss", "left_out"),
           "val_added": mean("validation", "one_to_one_loss", "added")}
    out["apart"] = out["merged"] + out["split"] + out["missed"]
    if method == beyond:
        out["lookup"] = float(np.mean([a["test_lookup"]["seg"] for a in singles]))
        # the same runs with every frame at the training frames' contrast (a probe)
        matched = list(data.get("contrast_matched", {}).values())
        out["contrast_matched"] = mean("test", "seg", arms=matched) if matched else None
    return out


def breakdown_conclusion(data: Mapping[str, Any]) -> str:
    """One paragraph on a ``studies/seg_breakdown.py`` result (:func:`breakdown_summary`): how
    much of ``1 - SEG`` the cells' separation takes, how much the outlines of cells found whole
    and alone, whether those are too tight or too loose on the test frames and on validation,
    and how far a parameter choice made on the test frames themselves would have moved SEG."""
    b = breakdown_summary(data)
    seg, left, added = b["seg"], b["left_out"], b["added"]
    return (f"Over {b['seeds']} seed(s), {METHOD_NAMES[b['method']]}: test SEG {seg:.3f}, so "
            f"{1 - seg:.3f} short of 1. Cells merged, split or missed take {b['apart']:.3f} of "
            f"it; the outlines of the cells found whole and alone take {left + added:.3f}: "
            f"{left:.3f} for pixels of the cell they leave out, {added:.3f} for pixels they add "
            f"(on the validation frames {b['val_left_out']:.3f} and {b['val_added']:.3f}). The "
            f"best parameters looked up on the test frames themselves would give "
            f"{b['lookup']:.3f} ({b['lookup'] - seg:+.3f}): not a result, but a bound on what a "
            "better choice of parameters could buy from these probabilities."
            + ("" if b["contrast_matched"] is None else
               f" With every frame brought to the training frames' mean gray value and contrast "
               f"before prediction (a probe, parameters again chosen on validation) the same "
               f"runs give {b['contrast_matched']:.3f} ({b['contrast_matched'] - seg:+.3f})."))
