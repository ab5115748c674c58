"""Run profiles for the book's notebooks: one dict of papermill parameters per notebook.

- ``smoke``: tiny synthetic data and tiny networks; minutes on a CPU. What the tests run.
- ``quick``: the default of ``make book``: real data when it is found (else synthetic, said
  loudly in the notebook), networks and step counts sized for 2 CPU cores.
- ``paper``: the paper's scale (the 2015 network, 572x572 tiles, momentum 0.99, long training);
  meant for a GPU.

Every notebook gets the ``common`` parameters plus its own; ``python -m unetlib.book run -p k=v``
overrides any of them. Names mirror the fields of :class:`unetlib.train.TrainConfig` where they
are training options.
"""

from __future__ import annotations

from copy import deepcopy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unetlib.config import TrainConfig

NOTEBOOKS: tuple[str, ...] = (
    "01_data",
    "02_train",
    "02_train_em",
    "03_augmentation_ablation",
    "04_weight_maps",
    "05_explore",
    "06_performance",
    "07_results",
)

# pages executed from another page's notebook with other parameters: the training chapter on the
# ISBI 2012 EM stack is ``notebooks/02_train.ipynb`` run on that data set
SOURCES: dict[str, str] = {"02_train_em": "02_train"}


def source_notebook(name: str) -> str:
    """The notebook (in ``notebooks/``, without suffix) that the book page ``name`` executes."""
    return SOURCES.get(name, name)


_SMOKE_TRAIN = {
    "dataset": "synthetic",
    "image_size": 96,
    "n_train": 8,
    "n_test": 4,
    "depth": 3,
    "base_channels": 8,
    "padding": "same",
    "batch_norm": False,
    "optimizer": "adam",
    "lr": 3e-3,
    "steps": 30,
    "batch_size": 2,
    "input_tile": 96,
    "eval_every": 10,
}

_QUICK_TRAIN = {
    # sized so that `make book` (six training runs: three seeds here, one each for the EM
    # chapter, the augmentation ablation and the weight-map experiment) stays within 30 minutes
    # on 2 CPU cores (AMD EPYC) with native bf16 (book/rerun.md has the times end to end). An
    # AVX2-only EPYC trains in fp32 (amp_cpu below), about 0.31 s a step with four levels:
    # 40 min 20 s end to end at 1,000 steps.
    # BatchNorm (the LIVECell reproduction's variant) learns the low-contrast DIC frames far
    # faster than the paper's BN-free network.
    "dataset": "DIC-C2DH-HeLa",
    "image_size": 256,
    "n_train": 0,  # 0 = every frame of the split
    "n_test": 0,
    # the paper's five levels. The profile had four, for speed, until studies/depth.py
    # (book/results/depth.json, 1,000 steps, 3 seeds) found five better on validation (SEG 0.865
    # against 0.828, past the studies' rule) for about 10% more time a step
    "depth": 5,
    "base_channels": 16,
    "padding": "same",
    "batch_norm": True,
    "optimizer": "adam",
    "lr": 2e-3,
    # from the budget curve of the five-level network (book/results/budget_curve.json,
    # validation SEG of the distance watershed): each further 200 steps must buy the studies'
    # 0.01 (report.ADOPT_GAIN, applied by report.steps_from_budget_curve; tested); 600 -> 800
    # bought 0.012, 800 -> 1,000 only 0.0097. The test frames take no part. (The four-level
    # network's curve, book/results/quick_four_levels/budget_curve.json, had chosen 1,000.)
    "steps": 800,
    "batch_size": 2,
    "eval_every": 100,
    # an average of the weights (beyond the paper): with a constant rate a short run's
    # checkpoints swing widely (book/results/quick_four_levels/budget_curve.json: test SEG
    # 0.39-0.72 between neighbouring checkpoints); the averaged weights' validation loss falls
    # smoothly
    "ema": 0.99,
    # the fast training step: channels-last memory and bf16 autocast on the CPU, 2.3x the
    # steps per second of the fp32 step on 2 AMD EPYC cores with native bf16, five levels
    # (benchmarks/bench_train_step.py); test SEG within the seeds' spread of the fp32 step's
    # (book/results/fast_step.json). bf16 only where the CPU computes it natively ("auto"): on an
    # AVX2-only EPYC it is emulated and a step takes ten times longer than in fp32
    "channels_last": True,
    "amp_cpu": "auto",
    # one 704 x 704 tile covers a 512 x 512 frame with the five-level network's 96-pixel
    # margins (unetlib.tiling.one_pass_tile; tested). With five levels every tile that keeps
    # those margins gives the same probabilities (tested), so the tile sets only the speed: the
    # 608-pixel tile of the four-level profile took four tiles a frame at five levels, 0.83 s a
    # frame against 0.17 s (benchmarks/results/bench_predict_tile_cpu.json, 2 cores; same arrays)
    "input_tile": 704,
    # threshold, seed level or h and smallest object of every instance method chosen by validation
    # SEG; the test frames never take part
    "tune_threshold": True,
    # beyond the paper: 8 silver-truth frames of sequence 01 (time points without gold truth)
    # join its 2 held-out gold frames in validation; two frames (about 20 cells) were too few to
    # choose a checkpoint and three instance parameters by (the choices swung from seed to seed)
    "silver_val": 8,
}

_PAPER_TRAIN = {
    "dataset": "DIC-C2DH-HeLa",
    "image_size": 572,
    "n_train": 0,
    "n_test": 0,
    "depth": 5,
    "base_channels": 64,
    "padding": "valid",
    "batch_norm": False,
    "optimizer": "sgd",
    # the paper gives no learning rate. On one H200 (book/results/gpu_paper_lr_probe.json) 0.01
    # with momentum 0.99 went non-finite at step 523 under bf16 and stuck at all-cell in fp32;
    # 0.001 trained (validation IoU 0.86 by step 4,000)
    "lr": 0.001,
    "momentum": 0.99,
    "steps": 20000,
    "batch_size": 1,
    "input_tile": 572,  # the input tile; its output is 388 x 388 (paper Fig. 2)
    "eval_every": 1000,
}

# the book pages that train: their papermill parameters are the profile, the page (which names its
# results file) and a dict of TrainConfig overrides; the profile builds the config
TRAINING_PAGES: tuple[str, ...] = ("02_train", "02_train_em", "03_augmentation_ablation",
                                   "04_weight_maps")


def _profile(name: str, dataset: str, train: dict[str, Any], explore: dict[str, Any],
             run_benchmarks: bool, max_frames: int, em_dataset: str,
             allow_synthetic: bool, headline_seeds: int) -> dict[str, Any]:
    """One profile: the three training chapters share ``train`` (so that a run one chapter
    trained is reused by the next, see :func:`unetlib.train.train`); the EM training chapter is
    the same configuration on ``em_dataset``. ``allow_synthetic``: whether a missing data set
    (absent folder, not a typo or a corrupt file) may be replaced by the synthetic one.
    ``headline_seeds``: how many seeds the training chapter runs (its headline is their mean and
    spread); the other training pages run one."""
    return {
        "common": {"profile": name, "data_root": None},
        "allow_synthetic": allow_synthetic,
        "n_seeds": {"02_train": headline_seeds},
        "train": {
            "02_train": dict(train),
            "02_train_em": {**train, "dataset": em_dataset,
                            "silver_val": 0},  # the EM stack has no silver truth
            "03_augmentation_ablation": dict(train),
            "04_weight_maps": dict(train),
        },
        "01_data": {"dataset": dataset, "max_frames": max_frames},
        "05_explore": {"dataset": dataset, **explore},
        "06_performance": {"run_benchmarks": run_benchmarks},
        "07_results": {},
    }


PROFILES: dict[str, dict[str, Any]] = {
    "smoke": _profile("smoke", "synthetic", _SMOKE_TRAIN, {"n_images": 2, "image_size": 96},
                      run_benchmarks=False, max_frames=4, em_dataset="synthetic",
                      allow_synthetic=True, headline_seeds=2),
    "quick": _profile("quick", "DIC-C2DH-HeLa", _QUICK_TRAIN, {"n_images": 4, "image_size": 384},
                      run_benchmarks=False, max_frames=0, em_dataset="isbi2012",
                      allow_synthetic=True, headline_seeds=3),
    "paper": _profile("paper", "DIC-C2DH-HeLa", _PAPER_TRAIN, {"n_images": 9, "image_size": 512},
                      run_benchmarks=True, max_frames=0, em_dataset="isbi2012",
                      allow_synthetic=False, headline_seeds=1),
}


def _check(profile: str, notebook: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    if notebook not in NOTEBOOKS:
        raise ValueError(f"notebook must be one of {list(NOTEBOOKS)}, got {notebook!r}")


def train_fields() -> set[str]:
    """The names of :class:`unetlib.config.TrainConfig`'s fields (what ``overrides`` may set)."""
    import dataclasses

    from unetlib.config import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def train_config(profile: str, page: str = "02_train", *, check_data: bool = False,
                 **overrides: Any) -> TrainConfig:
    """The :class:`unetlib.config.TrainConfig` that the book page ``page`` trains under
    ``profile``, with ``overrides`` (TrainConfig fields; an unknown name or a wrong type is an
    error naming it). This is the one place a training page's options come from.

    With ``check_data`` the data set is looked up (:func:`unetlib.config.with_available_data`):
    a missing data set becomes the synthetic one, loudly, only where the profile allows it."""
    from unetlib.config import TrainConfig, with_available_data

    _check(profile, page)
    if page not in TRAINING_PAGES:
        raise ValueError(f"{page} does not train; training pages: {list(TRAINING_PAGES)}")
    unknown = sorted(set(overrides) - train_fields())
    if unknown:
        raise ValueError(f"unknown training option(s) {unknown}; the options are the fields of "
                         f"unetlib.config.TrainConfig: {sorted(train_fields())}")
    spec = PROFILES[profile]
    values = {"data_root": spec["common"]["data_root"], **deepcopy(spec["train"][page]),
              **overrides}
    if values.get("amp_cpu") == "auto":  # bf16 on the CPU exactly where it is native
        from unetlib.provenance import cpu_bf16

        values["amp_cpu"] = cpu_bf16()
    config = TrainConfig(**values)
    if check_data:
        config = with_available_data(config, allow_synthetic=spec["allow_synthetic"])
    return config


def parameters(profile: str, notebook: str, overrides: dict[str, Any] | None = None) -> dict:
    """The papermill parameters for ``notebook`` under ``profile``, with ``overrides`` applied.

    A training page gets ``profile``, ``experiment`` (the page), ``n_seeds`` (runs with seeds
    ``seed``, ``seed + 1``, ...) and ``overrides``: the entries of
    ``overrides`` that are TrainConfig fields (checked by building the config, so that a wrong
    name or type fails here, before a kernel starts). Other pages get the profile's values for
    them, with ``overrides`` of the same names applied."""
    _check(profile, notebook)
    overrides = dict(overrides or {})
    spec = PROFILES[profile]
    if notebook in TRAINING_PAGES:
        fields = train_fields()
        train = {k: v for k, v in overrides.items() if k in fields}
        train_config(profile, notebook, **train)  # validates every override
        params = {"profile": profile, "experiment": notebook, "overrides": deepcopy(train),
                  "n_seeds": spec["n_seeds"].get(notebook, 1)}
        params.update({k: v for k, v in overrides.items() if k not in fields})
        # both name files and runs: checked here, before a kernel starts
        if params["experiment"] not in TRAINING_PAGES:
            raise ValueError(f"experiment must be one of {list(TRAINING_PAGES)} (it names the "
                             f"results file), got {params['experiment']!r}")
        n_seeds = params["n_seeds"]
        if not isinstance(n_seeds, int) or isinstance(n_seeds, bool) or n_seeds < 1:
            raise ValueError(f"n_seeds must be an integer >= 1, got {n_seeds!r}")
        return params
    params = deepcopy(spec["common"])
    params.update(deepcopy(spec.get(notebook, {})))
    params.update(overrides)
    return params
