"""The book's results table: what the experiments wrote to ``book/results/`` beside the paper."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unetlib.plots import KERAS_REPRODUCTION, PAPER, metrics_table

EXPERIMENTS = ("02_train", "03_augmentation_ablation", "04_weight_maps")
COLUMNS = ("seg", "iou", "f1", "pixel_error", "merges", "splits", "isbi_rand_error",
           "isbi_warping_error", "isbi_pixel_error")


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


def _published_rows(datasets: set[str]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for dataset, values in PAPER.items():
        mapped = {("isbi_" + k if dataset == "isbi2012" else k): v for k, v in values.items()}
        rows[f"paper (2015), {dataset}"] = mapped
    if "DIC-C2DH-HeLa" in datasets or not datasets:
        for name, values in KERAS_REPRODUCTION.items():
            rows[f"Keras reproduction, DIC-C2DH-HeLa, {name}"] = dict(values)
    return rows


def comparison_rows(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One Markdown table: each of our runs (experiment / run, data set, profile), then the
    published numbers. Columns without any value are dropped."""
    rows: dict[str, dict[str, Any]] = {}
    datasets = set()
    for experiment, data in results.items():
        datasets.add(data["dataset"])
        for run, metrics in data["metrics"].items():
            rows[f"ours: {experiment} / {run} ({data['dataset']}, {data['profile']})"] = metrics
    rows.update(_published_rows(datasets))
    columns = [c for c in COLUMNS if any(c in r for r in rows.values())]
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
