"""The book's pipeline: run the notebooks with papermill, then build the HTML with Jupyter Book.

    python -m unetlib.book run --profile quick            # every notebook -> book/
    python -m unetlib.book run --profile smoke --only 02_train -p steps=50
    python -m unetlib.book build                          # _build/html/index.html

``run`` executes ``notebooks/NAME.ipynb`` into ``book/NAME.ipynb`` with the parameters of the
profile (see :mod:`unetlib.profiles`; a page may run another page's notebook with other
parameters, e.g. ``02_train_em`` is ``02_train`` on the ISBI 2012 EM stack), in ``book/`` as the
working directory, so that results land in ``book/results/``. Each executed notebook is written
to a temporary file and renamed into place, so a failing run never leaves a half-executed
notebook in the book; the failure prints the notebook, the failing cell and the error, and the
partial notebook is kept under ``_build/failed/`` for inspection. A manifest
``book/results/pipeline_<profile>.json`` records the parameters, wall times, hardware and the
command.

``build`` copies the vendored JavaScript from ``node_modules/`` (installed from the npm registry
by ``make setup``) to ``book/_vendor/vendor/`` and runs ``jupyter-book build`` with ``-W -n
--keep-going``, so any warning fails the build.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from unetlib.interrupt import run_command, sigterm_as_interrupt
from unetlib.paths import PROJECT_ROOT
from unetlib.profiles import (
    NOTEBOOKS,
    PROFILES,
    TRAINING_PAGES,
    parameters,
    source_notebook,
    train_fields,
)
from unetlib.provenance import hardware, pid_alive, replacing, write_json_atomic

# (source in node_modules, destination under book/_vendor/vendor/)
VENDORED_ASSETS: tuple[tuple[str, str], ...] = (
    ("requirejs/require.js", "require.min.js"),
    ("@jupyter-widgets/html-manager/dist", "html-manager"),
    ("mathjax/es5", "mathjax"),
)


class PipelineError(RuntimeError):
    """A notebook failed to execute or the book failed to build."""


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with ``value`` a Python literal (``steps=100``, ``dataset='isbi2012'``);
    anything that is not a literal is taken as a string (``dataset=isbi2012``)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"-p expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key.isidentifier():
        raise argparse.ArgumentTypeError(f"-p: {key!r} is not a valid parameter name")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def add_study_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """The options the study scripts (``studies/``) share: ``--profile``, ``--out-dir`` (where
    runs are kept), ``--out`` (the result JSON, default ``out``) and ``-p FIELD=VALUE``, a
    TrainConfig override as in ``python -m unetlib.book run -p``."""
    parser.add_argument("--profile", default="quick", help="run profile (default quick)")
    parser.add_argument("--out-dir", default="runs", help="where runs are kept (default runs)")
    parser.add_argument("--out", default=out, help=f"result JSON (default {out})")
    parser.add_argument("-p", dest="overrides", action="append", type=parse_override,
                        default=[], metavar="FIELD=VALUE",
                        help="a further TrainConfig override, as in `python -m unetlib.book "
                             "run -p` (the tests train a tiny network)")


def add_rescoring_arguments(parser: argparse.ArgumentParser, out: str, page: str) -> None:
    """The options of the studies that score a training page's runs again from their kept
    weights (``studies/tta.py``, ``studies/instance_grid.py``): ``--page`` (default ``page``),
    ``--seeds`` and those of :func:`add_study_arguments`."""
    from unetlib.profiles import TRAINING_PAGES

    parser.add_argument("--page", default=page, choices=TRAINING_PAGES,
                        help=f"the training page whose runs are scored (default {page})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default 0)")
    add_study_arguments(parser, out)


def study_splits(args: argparse.Namespace) -> tuple[list, list, list]:
    """The (train, validation, test) frames of the runs :func:`kept_models` yields for ``args``,
    loaded once: runs that differ only in their seed see the same frames."""
    from unetlib.profiles import train_config
    from unetlib.train import load_splits

    return load_splits(train_config(args.profile, args.page, **dict(args.overrides)))


def kept_models(args: argparse.Namespace, *, train_missing: bool = True,
                **fields: Any) -> Iterator[tuple[Any, dict, Any]]:
    """For each of ``args.seeds``: the configuration of ``args.page`` under ``args.profile``
    (with ``-p`` overrides and ``fields``), its run's result (reused from ``args.out_dir``,
    trained first where it is missing, or with ``train_missing=False`` an error naming the
    missing run's folder, checked for every seed before any is loaded) and the run's kept
    weights in eval mode on the CPU, in the memory format the run trained and scored them in
    (channels-last where ``channels_last``: the arrays its own evaluation predicted, bit for
    bit, where contiguous weights would differ in the last bits)."""
    import dataclasses

    import torch

    from unetlib.model import load_checkpoint
    from unetlib.profiles import train_config
    from unetlib.train import train

    base = train_config(args.profile, args.page, check_data=True, out_dir=args.out_dir,
                        progress=False, **dict(args.overrides))
    configs = [dataclasses.replace(base, seed=seed, **fields) for seed in args.seeds]
    if not train_missing:
        for config in configs:
            folder = Path(config.out_dir) / config.run_name()
            if not (folder / "result.json").is_file():
                raise FileNotFoundError(
                    f"{folder}: no finished run of seed {config.seed} with these options (this "
                    "study scores kept runs and trains none; check --page, --seeds and -p)")
    for config in configs:
        result = train(config)
        model, _ = load_checkpoint(result["checkpoint"], map_location="cpu")
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        yield config, result, model.eval()


def run_arm_study(description: str, experiment: str, arms: dict[str, dict[str, Any]],
                  questions: dict[str, tuple[str, ...]], out: str,
                  argv: list[str] | None = None, page: str = "03_augmentation_ablation") -> int:
    """The loop of the arm studies (``studies/ablations.py``, ``studies/recipes.py``): each arm
    is the training page ``page``'s configuration under ``--profile`` with the arm's options
    replaced, trained with every seed (reused from ``--out-dir`` when trained before) and scored
    the same way; the result JSON (``record_experiment`` layout, one summary per arm in
    ``summaries``, ``questions`` naming which arms answer what) is rewritten after each arm, so an
    interrupted study keeps what it finished."""
    import dataclasses

    from unetlib.profiles import train_config
    from unetlib.provenance import command_line
    from unetlib.report import record_experiment, seed_summary
    from unetlib.train import train

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (0 1 2)")
    p.add_argument("--arms", nargs="+", default=list(arms), choices=list(arms), metavar="ARM",
                   help=f"arms to run (default all: {'; '.join(arms)})")
    add_study_arguments(p, out=out)
    args = p.parse_args(argv)
    base = train_config(args.profile, page, check_data=True, out_dir=args.out_dir,
                        progress=False, **dict(args.overrides))
    configs = {arm: dataclasses.replace(base, **arms[arm]) for arm in args.arms}  # checked first
    runs: dict[str, dict] = {}
    summaries: dict[str, dict] = {}
    with sigterm_as_interrupt():
        for arm in args.arms:
            arm_runs = {}
            for seed in args.seeds:
                result = arm_runs[f"{arm}, seed {seed}"] = train(
                    dataclasses.replace(configs[arm], seed=seed))
                segs = ", ".join(f"{m} {r['metrics']['seg']:.3f}"
                                 for m, r in result["instances"].items() if "metrics" in r)
                print(f"{arm}, seed {seed}: SEG {segs}", flush=True)
            runs.update(arm_runs)
            summaries[arm] = seed_summary(arm_runs)
            record_experiment(args.out, experiment, args.profile, runs, command=command_line(),
                              summaries=summaries, seeds=args.seeds,
                              arms={a: arms[a] for a in summaries},
                              questions={k: list(v) for k, v in questions.items()})
    print(f"wrote {args.out}")
    return 0


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    import papermill as pm

    return set(pm.inspect_notebook(str(notebook)).keys())


def run_notebook(
    source: Path, target: Path, params: dict[str, Any], *, cwd: Path, failed_dir: Path
) -> float:
    """Execute ``source`` into ``target`` (atomically) with papermill; returns the wall time."""
    import papermill as pm

    start = time.perf_counter()
    # .STEM.PID.XXXX.ipynb: a later run removes what a killed run left (_remove_dead_partials)
    with replacing(target, keep_suffix=True) as tmp:
        try:
            pm.execute_notebook(
                str(source),
                str(tmp),
                parameters=params,
                cwd=str(cwd),
                kernel_name="python3",
                progress_bar=True,
                log_output=False,
                report_mode=False,
            )
        except pm.PapermillExecutionError as err:
            failed_dir.mkdir(parents=True, exist_ok=True)
            kept = failed_dir / target.name
            shutil.move(tmp, kept)
            cell = _cell_source(kept, err.cell_index)
            raise PipelineError(
                f"{source.name} failed in cell {err.exec_count} (index {err.cell_index}):\n"
                f"{_indent(cell)}\n{err.ename}: {err.evalue}\n"
                f"The partially executed notebook is kept at {kept}"
            ) from None
        _finish_page(tmp, source, target)
    return time.perf_counter() - start



def clear_pictures(nb: Any, words: tuple[str, ...] = ()) -> None:
    """Clear, in place, every picture of a notebook (outputs, and the explorers' pictures kept
    in its widget state) whose base64 reads like a machine path or holds one of ``words``
    (:func:`unetlib.paths.picture_without_path_lookalikes`: the same pixels)."""
    from unetlib.paths import picture_without_path_lookalikes

    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            for mime in [k for k in data if k.startswith("image/") and k != "image/svg+xml"]:
                data[mime] = picture_without_path_lookalikes(data[mime], mime, words)
    saved = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json",
                                                  {})
    for model in saved.get("state", {}).values():  # the explorers' pictures, kept for the page
        if model.get("model_name") == "ImageModel":
            for buffer in model.get("buffers", []):
                if buffer.get("encoding") == "base64":
                    buffer["data"] = picture_without_path_lookalikes(
                        buffer["data"], model.get("state", {}).get("format", "png"), words)


def _remove_dead_partials(folder: Path) -> list[Path]:
    """Remove the temporary notebooks (``.NAME.PID.XXXX.ipynb``) of runs that were killed
    (``kill -9`` leaves them; SIGTERM does not); those of live processes are left alone."""
    removed = []
    for path in Path(folder).glob(".*.*.*.ipynb"):
        parts = path.name.split(".")
        if len(parts) >= 5 and parts[2].isdigit() and not pid_alive(int(parts[2])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _finish_page(notebook: Path, source: Path, target: Path) -> None:
    """Hide the notebook's default ``parameters`` cell on the rendered page (the cell papermill
    injected after it holds the values the run used, and stays visible), and replace the
    absolute input and output paths papermill records with relative ones, and split the image
    data of pictures whose base64 text reads like such a path, in outputs and in the saved
    state of the explorers' widgets (:func:`unetlib.paths.png_without_path_lookalikes`,
    :func:`unetlib.paths.jpeg_without_path_lookalikes`): the committed book names no path of
    the machine that made it, nor anything a scan would take for one."""
    import nbformat

    from unetlib.paths import own_folder_words, shown

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        elif (cell.cell_type == "code" and _imports_only(cell.source)
              and "hide-input" not in tags):
            tags.append("hide-input")  # a reader can unfold it; the page starts with prose
    title = toc_titles().get(target.stem)
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if title and first is not None and first.source.startswith("# "):
        # one notebook, two pages (02_train on HeLa and on the EM stack): each page's heading is
        # its own table-of-contents title, so that links and Previous/Next tell them apart
        _, _, rest = first.source.partition("\n")
        first.source = f"# {title}\n{rest}" if rest else f"# {title}"
    own_figure_labels(nb.cells, target.stem)
    clear_pictures(nb, own_folder_words())  # reading like a path, or naming this clone
    meta = nb.metadata.get("papermill")
    if meta is not None:
        meta["input_path"], meta["output_path"] = shown(source), shown(target)
    nbformat.write(nb, notebook)


def own_figure_labels(cells: list, page: str) -> None:
    """Give a page's figure labels the page's name as a prefix, in the figures (``mystnb``
    metadata ``figure.name``) and in the prose that cites them (``{numref}``), in place.
    Sphinx labels are global to the book, and one notebook executed as two pages (02_train on
    HeLa and on the EM stack) would otherwise define every label twice. Labels that already
    carry the prefix are left as they are."""
    renamed: dict[str, str] = {}
    for cell in cells:
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        name = figure.get("name")
        if name and not name.startswith(f"{page}-"):
            renamed[name] = figure["name"] = f"{page}-{name}"
    if not renamed:
        return
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            cell["source"] = re.sub(r"\{numref\}`([^`<]+)`",
                                    lambda m: f"{{numref}}`{renamed.get(m[1], m[1])}`",
                                    "".join(cell["source"]))


def toc_titles(toc: Path = PROJECT_ROOT / "_toc.yml") -> dict[str, str]:
    """The pages of ``_toc.yml`` that set a ``title`` of their own, by file name."""
    import yaml

    titles: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node and "title" in node:
                titles[Path(str(node["file"])).stem] = str(node["title"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(Path(toc).read_text()))
    return titles


def _imports_only(source: str) -> bool:
    """Whether a code cell does nothing but import (hidden behind a toggle on the page)."""
    import ast

    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


def _cell_source(notebook: Path, index: int) -> str:
    """Source of the cell that raised: the code cell with an error output (papermill inserts
    cells into the output notebook, so its ``cell_index`` is only a fallback)."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
        failed = [c for c in cells if any(o.get("output_type") == "error"
                                          for o in c.get("outputs", []))]
        cell = failed[0] if failed else cells[index]
        src = cell["source"]
        return "".join(src) if isinstance(src, list) else src
    except (OSError, ValueError, KeyError, IndexError):
        return "<cell source unavailable>"


def _indent(text: str, prefix: str = "    | ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def pipeline_command(profile: str, only: list[str] | None = None,
                     overrides: dict[str, Any] | None = None) -> str:
    """The command line that reruns ``only`` (or every notebook) of ``profile``."""
    return (f"python -m unetlib.book run --profile {profile}"
            + (f" --only {' '.join(only)}" if only else "")
            + "".join(f" -p {k}={v}" for k, v in (overrides or {}).items()))


BOOK_DIR = PROJECT_ROOT / "book"
BOOK_PROFILE = "quick"  # the profile that built the committed book/


def default_output_dir(profile: str, overrides: dict[str, Any] | None = None) -> Path:
    """``book/`` for the book's own profile without overrides, else ``_build/runs/<profile>/``."""
    if profile == BOOK_PROFILE and not overrides:
        return BOOK_DIR
    return PROJECT_ROOT / "_build" / "runs" / profile


def run(
    profile: str = "quick",
    only: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    notebooks_dir: Path = PROJECT_ROOT / "notebooks",
    output_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the notebooks of ``profile`` (all, or those in ``only``) into ``output_dir``.

    By default (``output_dir=None``, see :func:`default_output_dir`) only a run of the book's own
    profile without overrides writes into ``book/``; any other run writes to
    ``_build/runs/<profile>/`` with the book's prose pages copied beside it, so that it can be
    built on its own and never overwrites the committed book by accident."""
    if profile not in PROFILES:
        raise ValueError(f"--profile must be one of {sorted(PROFILES)}, got {profile!r}")
    names = list(only) if only else list(NOTEBOOKS)
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"--only: unknown notebook(s) {unknown}; choose from {list(NOTEBOOKS)}")
    overrides = dict(overrides or {})
    sources = {n: Path(notebooks_dir) / f"{source_notebook(n)}.ipynb" for n in names}
    for src in sources.values():
        if not src.is_file():
            raise FileNotFoundError(f"notebook {src} not found")
    declared = {n: declared_parameters(src) for n, src in sources.items()}
    # a training page takes any TrainConfig field through its ``overrides`` parameter
    fields = train_fields() if any(n in TRAINING_PAGES for n in names) else set()
    unused = [k for k in overrides
              if k not in fields and not any(k in d for d in declared.values())]
    if unused:
        raise ValueError(
            f"-p: no selected notebook has a parameter named {unused}; "
            f"their parameters are: {sorted(set().union(*declared.values()) | fields)}"
        )
    # every notebook's parameters first, so that a bad value fails before any kernel starts
    all_params = {}
    for name in names:
        mine = {k: v for k, v in overrides.items()
                if k in declared[name] or (name in TRAINING_PAGES and k in fields)}
        try:
            all_params[name] = parameters(profile, name, mine)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        missing = sorted(set(all_params[name]) - declared[name])
        if missing:
            raise ValueError(f"profile {profile!r} sets {missing}, not parameters of {name}")
    if output_dir is None:
        output_dir = default_output_dir(profile, overrides)
    output_dir = Path(output_dir)
    (output_dir / "results").mkdir(parents=True, exist_ok=True)
    if output_dir.resolve() != BOOK_DIR.resolve():
        # the prose, its bibliography and styles, so that the folder builds as a book
        for page in [*BOOK_DIR.glob("*.md"), *BOOK_DIR.glob("*.bib")]:
            if not (output_dir / page.name).exists():
                shutil.copy(page, output_dir / page.name)
        if not (output_dir / "_css").exists():
            shutil.copytree(BOOK_DIR / "_css", output_dir / "_css")
    for path in _remove_dead_partials(output_dir):
        print(f"removed {path.name}, left by a killed run", flush=True)
    print(f"writing the executed notebooks to {output_dir}", flush=True)
    failed_dir = PROJECT_ROOT / "_build" / "failed"
    manifest_path = output_dir / "results" / f"pipeline_{profile}.json"
    try:
        previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    except ValueError as err:
        raise PipelineError(f"{manifest_path}: not valid JSON ({err}); delete it to start a "
                            "new manifest") from None
    full_run = only is None or not previous
    # a full run sets the top-level record (command, hardware, total wall time); a run with
    # --only replaces its notebooks' entries and keeps the rest of the full run's record
    manifest: dict[str, Any] = {
        "profile": profile,
        "command": pipeline_command(profile, names if only else None, overrides),
        "hardware": hardware(),
        **({} if full_run else {k: previous[k] for k in ("command", "hardware", "wall_seconds")
                                if k in previous}),
        "notebooks": previous.get("notebooks", {}),
    }
    total = time.perf_counter()
    for i, name in enumerate(names, 1):
        params = all_params[name]
        print(f"[{i}/{len(names)}] {name} ({profile}): {params}", flush=True)
        seconds = run_notebook(
            sources[name], output_dir / f"{name}.ipynb", params, cwd=output_dir,
            failed_dir=failed_dir,
        )
        print(f"[{i}/{len(names)}] {name} done in {seconds:.0f} s", flush=True)
        manifest["notebooks"][name] = {
            "parameters": params, "wall_seconds": round(seconds, 1),
            "command": pipeline_command(profile, [name], overrides),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    if full_run:
        manifest["wall_seconds"] = round(time.perf_counter() - total, 1)
    manifest["total_notebook_seconds"] = round(
        sum(v["wall_seconds"] for v in manifest["notebooks"].values()), 1)
    write_json_atomic(manifest_path, manifest)
    return manifest


def vendor_assets(book_dir: Path = PROJECT_ROOT / "book",
                  node_modules: Path = PROJECT_ROOT / "node_modules") -> Path:
    """Copy the pages' JavaScript into ``book/_vendor/vendor`` (served as ``_static/vendor``)."""
    dest_root = Path(book_dir) / "_vendor" / "vendor"
    for src_rel, dst_rel in VENDORED_ASSETS:
        src = Path(node_modules) / src_rel
        if not src.exists():
            raise PipelineError(
                f"{src} is missing: the book's JavaScript comes from the npm registry; "
                "run `make setup` (or `npm install`) first"
            )
        dst = dest_root / dst_rel
        if dst.exists():
            continue
        with replacing(dst, directory=src.is_dir()) as tmp:
            if src.is_dir():
                shutil.copytree(src, tmp, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("*.map", "*.LICENSE.txt"))
            else:
                shutil.copy2(src, tmp)
    return dest_root


def toc_files(toc: Path = PROJECT_ROOT / "_toc.yml") -> list[str]:
    """The file entries of ``_toc.yml`` (root first), without suffix."""
    import yaml

    spec = yaml.safe_load(Path(toc).read_text())
    files = [spec["root"]]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec.get("parts", spec.get("chapters", [])))
    return files


def build(book_dir: Path = PROJECT_ROOT / "book", output: Path = PROJECT_ROOT) -> Path:
    """Build the HTML book with every warning an error; returns the path of index.html."""
    book_dir = Path(book_dir)
    missing = [
        f for f in toc_files()
        if not any((book_dir / f"{f}{ext}").is_file() for ext in (".md", ".ipynb"))
    ]
    if missing:
        raise PipelineError(
            f"the book is missing {missing} in {book_dir}: run the notebooks first "
            "(python -m unetlib.book run --profile smoke|quick|paper)"
        )
    vendor_assets(book_dir)
    cmd = [
        str(Path(sys.executable).with_name("jupyter-book")), "build", str(book_dir),
        "--config", str(PROJECT_ROOT / "_config.yml"), "--toc", str(PROJECT_ROOT / "_toc.yml"),
        "--path-output", str(output), "--builder", "html", "-W", "-n", "--keep-going",
    ]
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT)
    if proc.returncode != 0:
        raise PipelineError(f"jupyter-book build failed (exit {proc.returncode}); see above")
    index = Path(output) / "_build" / "html" / "index.html"
    if not index.is_file():
        raise PipelineError(f"jupyter-book reported success but {index} is missing")
    return index


def main(argv: list[str] | None = None) -> int:
    """``python -m unetlib.book run|build``: execute the notebooks or build the HTML book.

    Returns the exit status: 0 on success, 1 on an error (printed, not raised), 130 when
    interrupted."""
    parser = argparse.ArgumentParser(prog="python -m unetlib.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute the notebooks with papermill into book/")
    p_run.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    p_run.add_argument("--only", nargs="+", metavar="NOTEBOOK", choices=NOTEBOOKS,
                       help="run only these notebooks")
    p_run.add_argument("-p", "--parameter", action="append", type=parse_override, default=[],
                       metavar="KEY=VALUE", help="override a notebook parameter")
    p_run.add_argument("--output-dir", type=Path, default=None,
                       help="where the executed notebooks go (default: book/ for the quick "
                            "profile without -p, else _build/runs/PROFILE/)")
    p_run.add_argument("--notebooks-dir", type=Path, default=PROJECT_ROOT / "notebooks",
                       help="the notebooks to execute, e.g. your edited copies (default: the "
                            "project's notebooks/)")
    p_build = sub.add_parser("build", help="build the HTML with Jupyter Book")
    p_build.add_argument("--book-dir", type=Path, default=BOOK_DIR,
                         help="the executed notebooks and prose to build (default book/)")
    p_build.add_argument("--output", type=Path, default=None,
                         help="the HTML goes to OUTPUT/_build/html (default: the project for "
                              "book/, else the book folder itself)")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.command == "run":
            start = time.perf_counter()
            run(args.profile, args.only, dict(args.parameter),
                notebooks_dir=args.notebooks_dir, output_dir=args.output_dir)
            print(f"{'the notebooks' if args.only else 'all notebooks'} ran in "
                  f"{time.perf_counter() - start:.0f} s")
        else:
            output = args.output
            if output is None:
                same = args.book_dir.resolve() == BOOK_DIR.resolve()
                output = PROJECT_ROOT if same else args.book_dir
            print(f"built {build(book_dir=args.book_dir, output=output)}")
        return 0

    return run_command(body, "no partly executed notebook was left in the book",
                       (PipelineError, ValueError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
