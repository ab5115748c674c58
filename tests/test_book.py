"""The pipeline runner (unetlib.book), the smoke-profile run of every notebook, the book build,
and a browser check that the built pages show typeset math and a rendered widget offline."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from unetlib import book
from unetlib.paths import PROJECT_ROOT
from unetlib.profiles import (
    NOTEBOOKS,
    PROFILES,
    SOURCES,
    TRAINING_PAGES,
    parameters,
    source_notebook,
)

SCREENSHOTS = PROJECT_ROOT / "_build" / "screenshots"


def _notebook(path: Path, *sources: str, params: str = "profile = 'smoke'\nx = 1") -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell] + [new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


# ----------------------------------------------------------------------------------------------
# profiles and options


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_covers_every_notebook(profile):
    for name in NOTEBOOKS:
        params = parameters(profile, name)
        assert params["profile"] == profile
        # training pages take data_root through their overrides (a TrainConfig field)
        assert "data_root" in params or "overrides" in params


def test_source_notebooks_declare_what_profiles_set():
    for name in NOTEBOOKS:
        source = PROJECT_ROOT / "notebooks" / f"{source_notebook(name)}.ipynb"
        declared = book.declared_parameters(source)
        for profile in PROFILES:
            missing = set(parameters(profile, name)) - declared
            assert not missing, f"{name} lacks parameters {missing} set by profile {profile}"


def test_source_notebooks_are_clean():
    for path in sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs, f"{path.name} has outputs"
                assert cell.execution_count is None, f"{path.name} has execution counts"


def test_unknown_profile_and_notebook_are_named():
    with pytest.raises(ValueError, match="profile"):
        parameters("huge", "02_train")
    with pytest.raises(ValueError, match="notebook"):
        parameters("smoke", "99_nothing")


@pytest.mark.parametrize(
    "text, expected",
    [("steps=100", ("steps", 100)), ("lr=1e-3", ("lr", 1e-3)), ("dataset=isbi2012",
     ("dataset", "isbi2012")), ("tta=True", ("tta", True)), ("data_root=None", ("data_root",
     None)), ("name='a=b'", ("name", "a=b"))],
)
def test_parse_override(text, expected):
    assert book.parse_override(text) == expected


@pytest.mark.parametrize("text", ["steps", "1x=3", "=4"])
def test_parse_override_rejects(text):
    with pytest.raises(Exception, match="-p"):
        book.parse_override(text)


def test_toc_lists_every_notebook_and_chapter():
    files = book.toc_files()
    assert files[0] == "index"
    for name in NOTEBOOKS:
        assert name in files
    for name in files:
        # a page is prose in book/ or the executed copy of a notebook in notebooks/ (the
        # executed copy exists only after `make book`, so a fresh clone checks the source)
        assert ((PROJECT_ROOT / "book" / f"{name}.md").exists() or
                (PROJECT_ROOT / "notebooks" / f"{source_notebook(name)}.ipynb").exists()), name


# ----------------------------------------------------------------------------------------------
# the runner on small notebooks


def test_run_records_parameters_and_hides_the_default_cell(tmp_path):
    src, out = tmp_path / "nb", tmp_path / "out"
    src.mkdir()
    _notebook(src / "01_data.ipynb", "print('x is', x)",
              params="profile = 'smoke'\ndata_root = None\ndataset = 'a'\nmax_frames = 1\nx = 1")
    manifest = book.run("smoke", only=["01_data"], overrides={"x": 7}, notebooks_dir=src,
                        output_dir=out)
    nb = nbformat.read(out / "01_data.ipynb", as_version=4)
    assert nb.metadata.papermill.parameters["x"] == 7
    assert "x is 7" in "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    default = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert default and "remove-cell" in default[0].metadata.tags
    assert manifest["notebooks"]["01_data"]["parameters"]["x"] == 7
    saved = json.loads((out / "results" / "pipeline_smoke.json").read_text())
    assert saved["hardware"]["cpu_count"] >= 1 and saved["profile"] == "smoke"


def test_run_with_only_keeps_the_full_runs_record(tmp_path):
    src, out = tmp_path / "nb", tmp_path / "out"
    src.mkdir()
    (out / "results").mkdir(parents=True)
    _notebook(src / "01_data.ipynb", "print(x)",
              params="profile = 'smoke'\ndata_root = None\ndataset = 'a'\nmax_frames = 1\nx = 1")
    full = {"profile": "smoke", "command": "python -m unetlib.book run --profile smoke",
            "hardware": {"cpu": "earlier"}, "wall_seconds": 1234.5,
            "notebooks": {"02_train": {"parameters": {}, "wall_seconds": 300.0},
                          "01_data": {"parameters": {}, "wall_seconds": 99.0}}}
    (out / "results" / "pipeline_smoke.json").write_text(json.dumps(full))
    book.run("smoke", only=["01_data"], overrides={"x": 2}, notebooks_dir=src, output_dir=out)
    saved = json.loads((out / "results" / "pipeline_smoke.json").read_text())
    assert saved["command"] == full["command"] and saved["wall_seconds"] == 1234.5
    assert saved["hardware"] == {"cpu": "earlier"}
    assert saved["notebooks"]["02_train"] == full["notebooks"]["02_train"]
    entry = saved["notebooks"]["01_data"]
    assert entry["wall_seconds"] != 99.0 and entry["parameters"]["x"] == 2
    assert entry["command"] == "python -m unetlib.book run --profile smoke --only 01_data -p x=2"
    assert entry["finished"].endswith("+00:00")
    assert saved["total_notebook_seconds"] == pytest.approx(300.0 + entry["wall_seconds"])


def test_failing_notebook_names_cell_and_leaves_nothing_half_written(tmp_path):
    src, out = tmp_path / "nb", tmp_path / "out"
    src.mkdir()
    _notebook(src / "01_data.ipynb", "y = 2", "raise RuntimeError('boom in cell')",
              params="profile = 'smoke'\ndata_root = None\ndataset = 'a'\nmax_frames = 1")
    with pytest.raises(book.PipelineError) as err:
        book.run("smoke", only=["01_data"], notebooks_dir=src, output_dir=out)
    message = str(err.value)
    assert "01_data" in message and "boom in cell" in message and "RuntimeError" in message
    assert "raise RuntimeError" in message  # the failing cell's source is shown
    assert not (out / "01_data.ipynb").exists()
    assert not list(out.glob(".01_data*")), "temporary files left behind"


def test_default_output_never_overwrites_the_committed_book():
    assert book.default_output_dir("quick") == PROJECT_ROOT / "book"
    assert book.default_output_dir("quick", {"steps": 5}) == PROJECT_ROOT / "_build/runs/quick"
    assert book.default_output_dir("smoke") == PROJECT_ROOT / "_build/runs/smoke"
    assert book.default_output_dir("paper") == PROJECT_ROOT / "_build/runs/paper"


def test_run_elsewhere_copies_the_prose_and_removes_a_killed_runs_partials(tmp_path):
    src, out = tmp_path / "nb", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    _notebook(src / "01_data.ipynb", "y = 2",
              params="profile = 'smoke'\ndata_root = None\ndataset = 'a'\nmax_frames = 1")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".02_train.{dead.pid}.abc123.ipynb"  # what kill -9 leaves behind
    stale.write_text("{}")
    alive = out / f".02_train.{os.getpid()}.def456.ipynb"  # a concurrent run's: kept
    alive.write_text("{}")
    book.run("smoke", only=["01_data"], notebooks_dir=src, output_dir=out)
    assert not stale.exists() and alive.exists()
    assert (out / "index.md").is_file() and (out / "method.md").is_file()


@pytest.mark.parametrize("overrides, named", [({"steps": "abc"}, "steps"),
                                              ({"steps": 2.7}, "steps"),
                                              ({"input_tile": 388, "depth": 5,
                                                "padding": "valid"}, "input_tile")])
def test_bad_training_option_fails_before_any_notebook_runs(tmp_path, overrides, named):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=f"02_train: {named}"):
        book.run("smoke", only=["01_data", "02_train"], overrides=overrides, output_dir=out)
    assert not list(out.glob("*.ipynb"))


def test_override_that_no_notebook_declares_is_an_error(tmp_path):
    src = tmp_path / "nb"
    src.mkdir()
    _notebook(src / "01_data.ipynb",
              params="profile = 'smoke'\ndata_root = None\ndataset = 'a'\nmax_frames = 1")
    with pytest.raises(ValueError, match="stepz"):
        book.run("smoke", only=["01_data"], overrides={"stepz": 1}, notebooks_dir=src,
                 output_dir=tmp_path / "out")


def test_build_refuses_a_book_without_its_notebooks(tmp_path):
    (tmp_path / "index.md").write_text("# x\n")
    with pytest.raises(book.PipelineError, match="run the notebooks first"):
        book.build(book_dir=tmp_path, output=tmp_path)


# ----------------------------------------------------------------------------------------------
# the whole pipeline, smoke profile, and the book build (slow: one run shared by the tests below)


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    book_dir = root / "book"
    book_dir.mkdir()
    for md in (PROJECT_ROOT / "book").glob("*.md"):
        shutil.copy(md, book_dir)
    manifest = book.run("smoke", output_dir=book_dir)
    index = book.build(book_dir=book_dir, output=root)
    return {"manifest": manifest, "book": book_dir, "html": index.parent}


@pytest.mark.slow
def test_smoke_pipeline_runs_every_notebook(built_book):
    manifest = built_book["manifest"]
    assert set(manifest["notebooks"]) == set(NOTEBOOKS)
    for name in NOTEBOOKS:
        nb = nbformat.read(built_book["book"] / f"{name}.ipynb", as_version=4)
        assert nb.metadata.papermill.parameters["profile"] == "smoke"
        errors = [o for c in nb.cells for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{name}: {errors}"


@pytest.mark.slow
def test_book_has_a_page_per_chapter(built_book):
    html = built_book["html"]
    for name in book.toc_files():
        page = html / f"{name}.html"
        assert page.is_file(), f"missing {page}"
    assert (html / "_static" / "vendor" / "mathjax" / "tex-chtml.js").is_file()
    for page in html.glob("*.html"):
        text = page.read_text()
        for cdn in ("cdn.jsdelivr.net", "cdnjs.cloudflare.com"):
            assert cdn not in text, f"{page.name} loads from {cdn}"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _offline_prefix() -> list[str]:
    """``unshare -n`` runs Chromium with no network at all (root only); else flags only."""
    if shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "-n"]
    return []


def _render(page: Path, tmp_path: Path, screenshot: Path) -> str:
    chromium = _chromium()
    base = [*_offline_prefix(), chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--no-first-run", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=15000", "--window-size=1200,1600"]
    url = page.resolve().as_uri()
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=120)
    return dom.stdout


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="Debian chromium not installed (make setup)")
def test_pages_render_math_and_widgets_offline(built_book, tmp_path):
    html = built_book["html"]
    dom = _render(html / "method.html", tmp_path, SCREENSHOTS / "method.png")
    # MathJax replaced the TeX with typeset containers; no raw TeX is left on the page
    assert dom.count("<mjx-container") >= 5, "math was not typeset"
    assert "\\frac" not in dom and "\\[" not in dom, "raw TeX left on the page"
    dom = _render(html / "05_explore.html", tmp_path, SCREENSHOTS / "05_explore.png")
    # the embedded widget state was rendered by the vendored html-manager into live DOM
    assert "jupyter-widgets" in dom and "widget-" in dom, "no widget was rendered"
    assert (SCREENSHOTS / "05_explore.png").stat().st_size > 10_000


def _playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _browser_page():
    """A Playwright page in Debian's Chromium (its own browser download is not reachable), at a
    1280 x 1600 window, every request but ``file:`` refused: the book as an offline reader
    sees it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=_chromium(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith("file:") else route.abort())
            yield page
        finally:
            browser.close()


# what runs off the text column: an element whose right edge passes the article's, or a code or
# output block that scrolls sideways
_OVERFLOW_JS = """() => {
  const art = document.querySelector('article.bd-article') || document.querySelector('main');
  const right = art.getBoundingClientRect().right + 1;
  const out = [];
  for (const el of art.querySelectorAll('table, pre, img, p, li, mjx-container, .widget-box')) {
    const r = el.getBoundingClientRect();
    if (r.right > right || (el.tagName === 'PRE' && el.scrollWidth > el.clientWidth + 1))
      out.push(el.tagName + ': ' + (el.textContent || '').trim().slice(0, 60));
  }
  return out;
}"""

# a picture of a cell's output outside a captioned figure (the explorers' pictures are widgets,
# explained by the prose around them)
_UNCAPTIONED_JS = """() => [...document.querySelectorAll('.cell_output img')]
  .filter(i => !i.closest('.jupyter-widgets'))
  .filter(i => !(i.closest('figure') && i.closest('figure').querySelector('figcaption')))
  .length"""


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None or not _playwright(),
                    reason="Debian chromium and Playwright (make setup) needed")
def test_a_reader_sees_every_page_whole_and_clean(built_book):
    """Every page of the built book in headless Chromium with no network, at a 1280-pixel
    window: nothing wider than the text column, no Traceback, stderr output (the step log stays
    in Jupyter) or warning in an output, no path of the machine that built it, and every picture
    of a notebook's output in a figure with a caption."""
    import re

    machine_path = re.compile(r"(?<![\w.])/(?:work|home|root|tmp|Users|mnt|opt|var)/")
    problems = []
    with _browser_page() as page:
        for html in sorted(built_book["html"].glob("*.html")):
            if html.stem in ("genindex", "search"):
                continue
            page.goto(html.resolve().as_uri())
            page.wait_for_timeout(1500)
            problems += [f"{html.name}: wider than the column: {x}"
                         for x in page.evaluate(_OVERFLOW_JS)]
            text = page.inner_text("article")
            if "Traceback" in text:
                problems.append(f"{html.name}: a Traceback")
            if page.locator(".output.stderr").count():
                problems.append(f"{html.name}: stderr output")
            outputs = " ".join(page.locator(".cell_output").all_inner_texts())
            if warning := re.search(r"\b\w*Warning\b", outputs):
                problems.append(f"{html.name}: a {warning[0]} in an output")
            if machine_path.search(text):
                problems.append(f"{html.name}: a machine path {machine_path.search(text)[0]}")
            if n := page.evaluate(_UNCAPTIONED_JS):
                problems.append(f"{html.name}: {n} picture(s) without a caption")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None or not _playwright(),
                    reason="Debian chromium and Playwright (make setup) needed")
def test_explorers_switch_pictures_in_the_browser_without_a_kernel(built_book):
    """The explorer page's sliders work from the saved page alone: moving one (the keyboard on
    its handle) changes its readout and the picture shown."""
    picture_js = """slider => {
      const img = slider.parentElement.children[1].querySelector('img');
      const c = document.createElement('canvas');
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      c.getContext('2d').drawImage(img, 0, 0);
      return c.toDataURL();
    }"""
    with _browser_page() as page:
        page.goto((built_book["html"] / "05_explore.html").resolve().as_uri())
        page.wait_for_selector(".widget-slider .noUi-handle")
        page.wait_for_timeout(1500)
        sliders = page.locator(".widget-slider")
        labels = [sliders.nth(i).inner_text() for i in range(sliders.count())]
        assert sum(any(k in t for k in ("sigma", "w0", "threshold")) for t in labels) == 3, labels
        for i in range(sliders.count()):
            slider = sliders.nth(i)
            before = (slider.inner_text(), slider.evaluate(picture_js))
            slider.locator(".noUi-handle").focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_timeout(500)
            after = (slider.inner_text(), slider.evaluate(picture_js))
            assert after[0] != before[0], f"slider {labels[i]!r} did not move"
            assert after[1] != before[1], f"slider {labels[i]!r} did not change the picture"


def test_sigterm_leaves_no_partial_notebook(tmp_path):
    """`kill` during a notebook: the runner exits with 130 and leaves neither the temporary
    executed notebook nor a half-written page in the output folder. The notebook is a copy of
    01_data that ends in a long sleep (``--notebooks-dir``), so the signal always lands while a
    cell runs, however fast or loaded the machine."""
    import nbformat

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.read(PROJECT_ROOT / "notebooks" / "01_data.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(600)"))
    nbformat.write(nb, notebooks / "01_data.ipynb")
    out = tmp_path / "book"
    proc = subprocess.Popen(
        [sys.executable, "-m", "unetlib.book", "run", "--profile", "smoke", "--only", "01_data",
         "--notebooks-dir", str(notebooks), "--output-dir", str(out)],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob(".01_data.*.ipynb")):  # .01_data.PID.XXXX.ipynb
        assert proc.poll() is None, "the runner finished before it could be interrupted"
        assert time.monotonic() < deadline, "no temporary notebook appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert not list(out.glob("*.ipynb")) and not list(out.glob(".*.ipynb")), output


# ----------------------------------------------------------------------------------------------
# the paper profile, before any GPU sees it


def _hela_available() -> bool:
    from unetlib.paths import data_root

    return (data_root() / "DIC-C2DH-HeLa" / "01_GT" / "SEG").is_dir()


@pytest.mark.slow
@pytest.mark.skipif(not _hela_available(), reason="DIC-C2DH-HeLa not found (../shared/data)")
def test_paper_profile_runs_the_training_notebook_on_real_frames(tmp_path):
    """Every code path a GPU run of the paper profile takes, for two steps on CPU: the 31 M
    network with valid convolutions, 572 x 572 input tiles, SGD with momentum 0.99, the weight
    map, validation, the instance methods, the test scores and the result JSON, through the
    notebook with papermill on real DIC-HeLa frames (two test frames to keep it short)."""
    out = tmp_path / "book"
    manifest = book.run("paper", only=["02_train"], overrides={"steps": 2, "n_test": 2},
                        output_dir=out)
    assert manifest["notebooks"]["02_train"]["parameters"]["overrides"] == {"steps": 2,
                                                                            "n_test": 2}
    saved = json.loads((out / "results" / "02_train.json").read_text())
    assert saved["profile"] == "paper" and saved["dataset"] == "DIC-C2DH-HeLa"
    run = saved["runs"]["seed 0"]
    config = run["config"]
    assert (config["depth"], config["base_channels"], config["padding"]) == (5, 64, "valid")
    assert (config["optimizer"], config["momentum"], config["input_tile"]) == ("sgd", 0.99, 572)
    assert config["loss"] == "weighted_ce" and config["w0"] == 10.0
    assert run["steps_done"] == 2 and len(run["frames"]["test"]) == 2
    assert run["history"] and np.isfinite(run["history"][-1]["val_loss"])
    for method in ("components", "watershed"):
        assert 0.0 <= saved["instances"]["seed 0"][method]["metrics"]["seg"] <= 1.0
    nb = nbformat.read(out / "02_train.ipynb", as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


# ----------------------------------------------------------------------------------------------
# numbers typed into the prose come from the committed results


def test_index_shows_the_front_page_table_of_the_committed_results():
    """The front page's table is :func:`unetlib.report.front_page_table` of book/results/, row
    for row: a result file redone (or a new study of its rows) without the page is caught."""
    from unetlib.report import front_page_table, load_results

    results = load_results(PROJECT_ROOT / "book" / "results")
    if "02_train" not in results:
        pytest.skip("no committed results yet")
    index = (PROJECT_ROOT / "book" / "index.md").read_text()
    table = front_page_table(results)
    assert table in index, f"index.md should show, verbatim:\n{table}"


def _val_seg(data: dict, arm: str | None = None, method: str = "distance") -> float:
    """Mean validation SEG of a result's runs (of one arm of a study, ``<arm>, seed N``)."""
    names = [n for n in data["instances"] if arm is None or n.startswith(f"{arm}, seed")]
    return float(np.mean([data["instances"][n][method]["val_seg"] for n in names]))


def test_index_quotes_the_zoom_study():
    """The front page's zoom paragraph quotes studies/zoom_silver.py's result and its two
    breakdowns: each arm's test SEG, its mean validation SEG, and the outlines left out."""
    results = PROJECT_ROOT / "book" / "results"
    if not (results / "zoom_silver.json").is_file():
        pytest.skip("no zoom study yet")
    from unetlib.report import breakdown_summary

    data = json.loads((results / "zoom_silver.json").read_text())
    plain, zoom = data["questions"]["zoom_silver"]
    index = " ".join((PROJECT_ROOT / "book" / "index.md").read_text().split())

    def val(arm: str) -> float:
        return _val_seg(data, arm)

    def left_out(name: str) -> float:
        b = json.loads((results / f"{name}.json").read_text())
        return breakdown_summary(b, "distance")["left_out"]

    p, z = (data["summaries"][a]["distance"]["seg"] for a in (plain, zoom))
    for text in (f"silver truth + zoom, distance-transform watershed: SEG **{z['mean']:.3f} ± "
                 f"{z['sd']:.3f}**",
                 f"silver truth without it: SEG **{p['mean']:.3f} ± {p['sd']:.3f}**",
                 f"({val(zoom):.3f} against {val(plain):.3f})",
                 f"({left_out('seg_breakdown_zoom_silver'):.3f} against "
                 f"{left_out('seg_breakdown_zoom_silver_without'):.3f};"):
        assert text in index, f"index.md should say {text!r}"
    assert val(zoom) < val(plain) + 0.01  # "not adopted", by the studies' rule
    if (results / "seg_breakdown_silver_20k.json").is_file():  # what 20,000 steps bought
        longer = breakdown_summary(json.loads(
            (results / "seg_breakdown_silver_20k.json").read_text()), "distance")
        shorter = breakdown_summary(json.loads(
            (results / "seg_breakdown_zoom_silver_without.json").read_text()), "distance")
        text = (f"cells merged, split or missed cost {longer['apart']:.3f} at 20,000 steps "
                f"against {shorter['apart']:.3f} at 5,000, while the outlines still leave out "
                f"{longer['left_out']:.3f} of the cells against {shorter['left_out']:.3f}")
        assert text in index, f"index.md should say {text!r}"


def test_index_quotes_the_deep_network_and_the_20k_ensemble():
    """The front page's paragraphs on the paper's depth (silver truth, five levels against four)
    and on the 20,000-step runs averaged quote their result files: test SEG of both arms by
    each method, the validation means, the breakdowns, and the field of view."""
    results = PROJECT_ROOT / "book" / "results"
    if not (results / "silver_truth_deep.json").is_file():
        pytest.skip("no deep-network study yet")
    from unetlib.model import receptive_field
    from unetlib.report import breakdown_summary

    index = " ".join((PROJECT_ROOT / "book" / "index.md").read_text().split())
    deep = json.loads((results / "silver_truth_deep.json").read_text())
    zoom = json.loads((results / "zoom_silver.json").read_text())
    plain = zoom["questions"]["zoom_silver"][0]  # the arm without the zoom: four levels, 5,000
    assert {r["config"]["steps"] for r in deep["runs"].values()} == {5000}
    assert {r["config"]["depth"] for r in deep["runs"].values()} == {5}
    four = zoom["summaries"][plain]
    texts = [f"silver truth, five levels, distance-transform watershed: SEG "
             f"**{deep['summary']['distance']['seg']['mean']:.3f} ± "
             f"{deep['summary']['distance']['seg']['sd']:.3f}**",
             "against " + ", ".join(f"{four[m]['seg']['mean']:.3f} ± {four[m]['seg']['sd']:.3f}"
                                    for m in ("distance", "watershed")) +
             f" and {four['components']['seg']['mean']:.3f} ± "
             f"{four['components']['seg']['sd']:.3f} with four levels"]
    for method, label in (("watershed", "seeded watershed"), ("components", "paper's way")):
        seg = deep["summary"][method]["seg"]
        texts.append(f"{label}: SEG **{seg['mean']:.3f} ± {seg['sd']:.3f}**")
    val_deep, val_four = _val_seg(deep), _val_seg(zoom, plain)
    texts.append(f"({val_deep:.3f} against {val_four:.3f}, under the rule)")
    assert val_deep < val_four + 0.01
    lo4, hi4 = receptive_field(4, "same")
    lo5, hi5 = receptive_field(5, "same")
    texts.append(f"sees {lo4} to {hi4} input pixels across, one of the five-level network "
                 f"{lo5} to {hi5}")
    b_deep = json.loads((results / "seg_breakdown_silver_deep.json").read_text())
    b_four = json.loads((results / "seg_breakdown_zoom_silver_without.json").read_text())
    cc = [breakdown_summary(b, "components")["merged"] for b in (b_deep, b_four)]
    out = [breakdown_summary(b, "distance")["left_out"] for b in (b_deep, b_four)]
    texts += [f"merged with a neighbour cost it {cc[0]:.3f} of SEG against {cc[1]:.3f}",
              f"(left out {out[0]:.3f} against {out[1]:.3f})"]
    ens = json.loads((results / "ensemble_silver_20k.json").read_text())
    tta = json.loads((results / "ensemble_silver_20k_tta.json").read_text())
    (gain,) = [g for n, g in ens["val_gains"].items() if n.startswith("all runs")]
    alone = tta["summaries"]["one run"]["distance"]["seg"]
    texts += [f"averaged, distance-transform watershed: SEG "
              f"**{ens['summaries']['all runs averaged']['distance']['seg']['mean']:.3f}** "
              f"(validation {gain:+.3f} over its runs alone, under the rule)",
              f"lowers the single runs to {alone['mean']:.3f} ± {alone['sd']:.3f}"]
    assert not ens["adopted"] and not tta["adopted"]
    deep_ens = results / "ensemble_silver_deep_10k.json"
    if deep_ens.is_file():  # the five-level 10,000-step runs averaged
        data = json.loads(deep_ens.read_text())
        assert {r["config"]["depth"] for r in data["runs"].values()} == {5}
        assert not data["adopted"]
        (gain,) = [g for n, g in data["val_gains"].items() if n.startswith("all runs")]
        seg = {m: data["summaries"]["all runs averaged"][m]["seg"]["mean"]
               for m in ("distance", "watershed", "components")}
        texts.append(f"silver truth, five levels, three runs averaged, distance-transform "
                     f"watershed: SEG **{seg['distance']:.3f}**; seeded watershed: SEG "
                     f"**{seg['watershed']:.3f}**; paper's way: SEG **{seg['components']:.3f}** "
                     f"(validation {gain:+.3f} over its runs alone, under the rule, so not "
                     "adopted)")
    longer = results / "silver_truth_deep_10k.json"
    if longer.is_file():  # the five levels at 10,000 steps, against four on the same CPU
        d10 = json.loads(longer.read_text())
        f10 = json.loads((results / "rerun_bf16_silver" / "silver_truth_10k.json").read_text())
        assert {r["config"]["steps"] for r in d10["runs"].values()} == {10000}
        assert all(r["hardware"].get("cpu_bf16") for r in (d10, f10))  # one kind of CPU
        seg = {m: d10["summary"][m]["seg"] for m in ("distance", "watershed", "components")}
        texts += [f"10,000 steps, five levels, distance-transform watershed: SEG "
                  f"**{seg['distance']['mean']:.3f} ± {seg['distance']['sd']:.3f}**",
                  f"watershed: SEG **{seg['watershed']['mean']:.3f} ± "
                  f"{seg['watershed']['sd']:.3f}**; paper's way: SEG "
                  f"**{seg['components']['mean']:.3f} ± {seg['components']['sd']:.3f}**, against "
                  + ", ".join(f"{f10['summary'][m]['seg']['mean']:.3f} ± "
                              f"{f10['summary'][m]['seg']['sd']:.3f}"
                              for m in ("distance", "watershed"))
                  + f" and {f10['summary']['components']['seg']['mean']:.3f} ± "
                    f"{f10['summary']['components']['seg']['sd']:.3f} with four levels",
                  f"One seed reaches {max(seg['distance']['values']):.3f}"]

        def val(data: dict, method: str) -> float:
            return _val_seg(data, method=method)

        cc, dt = (val(d10, m) - val(f10, m) for m in ("components", "distance"))
        assert cc >= 0.01 > dt  # "past the rule's 0.01" for the paper's way only
        texts += [f"(validation SEG {val(d10, 'components'):.3f} against "
                  f"{val(f10, 'components'):.3f}, past the rule's 0.01)",
                  f"watershed ({val(d10, 'distance'):.3f} against {val(f10, 'distance'):.3f})"]
    longest = results / "silver_truth_deep_20k.json"
    if longest.is_file():  # ... and at 20,000 steps, against four levels at 20,000
        d20 = json.loads(longest.read_text())
        f20 = json.loads((results / "silver_truth_20k.json").read_text())
        assert {r["config"]["steps"] for r in d20["runs"].values()} == {20000}
        seg = {m: d20["summary"][m]["seg"] for m in ("distance", "watershed", "components")}
        restored = [f"{r['best_step']:,}" for r in d20["runs"].values()]
        texts += [f"20,000 steps, five levels, distance-transform watershed: SEG "
                  f"**{seg['distance']['mean']:.3f} ± {seg['distance']['sd']:.3f}**; seeded "
                  f"watershed: SEG **{seg['watershed']['mean']:.3f} ± "
                  f"{seg['watershed']['sd']:.3f}**; paper's way: SEG "
                  f"**{seg['components']['mean']:.3f} ± {seg['components']['sd']:.3f}**, against "
                  + ", ".join(f"{f20['summary'][m]['seg']['mean']:.3f} ± "
                              f"{f20['summary'][m]['seg']['sd']:.3f}"
                              for m in ("distance", "watershed"))
                  + f" and {f20['summary']['components']['seg']['mean']:.3f} ± "
                    f"{f20['summary']['components']['seg']['sd']:.3f} with four levels",
                  f"restored steps {', '.join(restored[:-1])} and {restored[-1]}"]
    for text in texts:
        assert text in index, f"index.md should say {text!r}"


def test_index_quotes_the_depth_study():
    """The front page's paragraph on the quick profile's depth quotes studies/depth.py's result:
    both arms' test SEG by each method, the validation means that decide, the merges, and the
    four-level arm reproducing the bf16 rerun of the training chapter."""
    results = PROJECT_ROOT / "book" / "results"
    if not (results / "depth.json").is_file():
        pytest.skip("no depth study yet")
    data = json.loads((results / "depth.json").read_text())
    four, five = data["questions"]["depth"]
    s4, s5 = data["summaries"][four], data["summaries"][five]
    index = " ".join((PROJECT_ROOT / "book" / "index.md").read_text().split())

    def val(arm: str) -> float:
        return _val_seg(data, arm)

    def seg(summary: dict, method: str) -> str:
        return f"{summary[method]['seg']['mean']:.3f} ± {summary[method]['seg']['sd']:.3f}"

    assert val(five) >= val(four) + 0.01  # "past the studies' rule"
    texts = [f"validation SEG {val(five):.3f} against {val(four):.3f}",
             f"paper's way: SEG **{seg(s5, 'components')}** against {seg(s4, 'components')}",
             f"distance-transform watershed: SEG **{seg(s5, 'distance')}** against "
             f"{seg(s4, 'distance')}",
             f"seeded watershed: SEG **{seg(s5, 'watershed')}** against {seg(s4, 'watershed')}",
             f"fewer cells merged ({s5['components']['merges']['mean']:.2f} per test frame "
             f"against {s4['components']['merges']['mean']:.2f})"]
    for text in texts:
        assert text in index, f"index.md should say {text!r}"
    rerun = json.loads((results / "rerun_bf16_1000" / "02_train.json").read_text())["summary"]
    for method in ("distance", "components", "watershed"):  # "reproduces ... to the digit"
        assert s4[method]["seg"]["values"] == rerun[method]["seg"]["values"]
    # the chapter's five-level runs, where they trained on the same kind of CPU and at least to
    # the steps the study's five-level runs restored, are those runs: the same scores
    book = json.loads((results / "02_train.json").read_text())
    restored = [r["best_step"] for k, r in data["runs"].items() if k.startswith(five + ",")]
    (steps,) = {r["config"]["steps"] for r in book["runs"].values()}
    same_cpu = book["hardware"].get("cpu_bf16") == data["hardware"].get("cpu_bf16")
    if same_cpu and max(restored) <= steps and "the depth study's five-level runs" in index:
        for method in ("distance", "components", "watershed"):
            assert s5[method]["seg"]["values"] == book["summary"][method]["seg"]["values"]


def test_index_states_the_committed_headline():
    """The front page's answer quotes the training chapter's result file, to the digit."""
    results = PROJECT_ROOT / "book" / "results" / "02_train.json"
    if not results.is_file():
        pytest.skip("no committed results yet")
    summary = json.loads(results.read_text())["summary"]
    index = " ".join((PROJECT_ROOT / "book" / "index.md").read_text().split())
    for method, label in (("distance", "distance-transform watershed"),
                          ("watershed", "seeded watershed"), ("components", "paper's way")):
        seg = summary[method]["seg"]
        text = f"{label}: SEG **{seg['mean']:.3f} ± {seg['sd']:.3f}**"
        assert text in index, f"index.md should say {text!r}"
    merges = (f"({summary['distance']['merges']['mean']:.2f} merged cells per test frame against "
              f"{summary['components']['merges']['mean']:.2f} the paper's way)")
    assert merges in index, f"index.md should say {merges!r}"
    before = PROJECT_ROOT / "book" / "results" / "quick_700_steps" / "02_train.json"
    if before.is_file():  # the headline at the profile's former budget, from its kept file
        old = json.loads(before.read_text())["summary"]
        d, c = (old[m]["seg"] for m in ("distance", "components"))
        text = (f"At the 700 steps the profile had before, the same recipe scored "
                f"{d['mean']:.3f} ± {d['sd']:.3f} and {c['mean']:.3f} ± {c['sd']:.3f} the "
                "paper's way")
        assert text in " ".join(index.split()), f"index.md should say {text!r}"
    four = PROJECT_ROOT / "book" / "results" / "quick_four_levels" / "02_train.json"
    if four.is_file():  # the book before the paper's depth, from its kept file
        old = json.loads(four.read_text())
        (steps,) = {r["config"]["steps"] for r in old["runs"].values()}
        (depth,) = {r["config"]["depth"] for r in old["runs"].values()}
        d, c = (old["summary"][m]["seg"] for m in ("distance", "components"))
        text = (f"at {steps:,} steps with {['', 'one', 'two', 'three', 'four'][depth]} levels, "
                f"the book before this one, {d['mean']:.3f} ± {d['sd']:.3f} and "
                f"{c['mean']:.3f} ± {c['sd']:.3f}")
        assert text in " ".join(index.split()), f"index.md should say {text!r}"
    curve_path = PROJECT_ROOT / "book" / "results" / "budget_curve.json"
    if curve_path.is_file():  # the step choice, as the curve's validation SEG makes it
        from unetlib.report import steps_from_budget_curve

        curve = json.loads(curve_path.read_text())
        chosen = steps_from_budget_curve(curve)
        val = {r["step"]: r["distance"]["val_seg"] for r in curve["rows"]}
        after = min(s for s in val if s > chosen)
        text = (f"by at least 0.01 up to step {chosen:,} and by {val[after] - val[chosen]:.4f} "
                "after it")
        assert text in " ".join(index.split()), f"index.md should say {text!r}"
    silver = PROJECT_ROOT / "book" / "results" / "silver_truth.json"
    if silver.is_file():
        summary = json.loads(silver.read_text())["summary"]
        for method, label in (("distance", "distance-transform watershed"),
                              ("watershed", "seeded watershed"), ("components", "paper's way")):
            seg = summary[method]["seg"]
            text = f"silver truth, {label}: SEG **{seg['mean']:.3f} ± {seg['sd']:.3f}**"
            assert text in index, f"index.md should say {text!r}"
    for name in ("silver_truth_long", "silver_truth_10k", "silver_truth_20k"):
        longer = PROJECT_ROOT / "book" / "results" / f"{name}.json"
        if not longer.is_file():
            continue
        # the silver truth trained longer: every method, and its restored steps
        data = json.loads(longer.read_text())
        (steps,) = {r["config"]["steps"] for r in data["runs"].values()}
        for method, label in (("distance", "distance-transform watershed"),
                              ("watershed", "seeded watershed"), ("components", "paper's way")):
            seg = data["summary"][method]["seg"]
            text = (f"silver truth at {steps:,} steps, {label}: SEG **{seg['mean']:.3f} ± "
                    f"{seg['sd']:.3f}**")
            assert text in index, f"index.md should say {text!r}"
        restored = [f"{r['best_step']:,}" for r in data["runs"].values()]
        text = f"restored steps {', '.join(restored[:-1])} and {restored[-1]}"
        assert text in index, f"index.md should say {text!r}"
    bf16 = PROJECT_ROOT / "book" / "results" / "rerun_bf16_silver" / "silver_truth_10k.json"
    if bf16.is_file():  # the 20,000-step runs' 10,000-step stage, on the CPU with native bf16
        seg = json.loads(bf16.read_text())["summary"]["distance"]["seg"]
        text = (f"{seg['mean']:.3f} ± {seg['sd']:.3f} with the distance-transform watershed, "
                "against")
        assert text in index, f"index.md should say {text!r}"
    ensemble = PROJECT_ROOT / "book" / "results" / "ensemble_silver_10k.json"
    if ensemble.is_file():  # the ensemble of the 10,000-step runs: its scores and the rule
        data = json.loads(ensemble.read_text())
        seg = {m: data["summaries"]["all runs averaged"][m]["seg"]["mean"]
               for m in ("distance", "watershed", "components")}
        text = (f"silver truth, three runs averaged, distance-transform watershed: SEG "
                f"**{seg['distance']:.3f}**; seeded watershed: SEG **{seg['watershed']:.3f}**; "
                f"paper's way: SEG **{seg['components']:.3f}**")
        flat = " ".join(index.split())
        assert text in flat, f"index.md should say {text!r}"
        (gain,) = [g for n, g in data["val_gains"].items() if n.startswith("all runs")]
        pairs = data["summaries"]["two runs averaged"]["distance"]["seg"]
        text = f"(each pair of runs: {pairs['mean']:.3f} ± {pairs['sd']:.3f}"
        assert text in flat, f"index.md should say {text!r}"
        tta = json.loads((ensemble.parent / "ensemble_silver_10k_tta.json").read_text())
        alone = tta["summaries"]["one run"]["distance"]["seg"]
        both = tta["summaries"]["all runs averaged"]["distance"]["seg"]["mean"]
        for text in (f"Test-time augmentation on top of it gives {both:.3f}",
                     f"on the single runs {alone['mean']:.3f} ± {alone['sd']:.3f}"):
            assert text in flat, f"index.md should say {text!r}"
        said = "is not adopted" if not data["adopted"] else "is adopted"
        text = f"it gains {gain:+.3f} over its runs alone, under the studies' rule"
        assert text in flat and said in flat, f"index.md should say {text!r} and {said!r}"
    gap = PROJECT_ROOT / "book" / "results" / "silver_truth_gap.json"
    if gap.is_file():  # the silver truth with a gap around the validation frames
        data = json.loads(gap.read_text())
        flat = " ".join(index.split())
        for method, label in (("distance", "distance-transform watershed"),
                              ("watershed", "seeded watershed"), ("components", "paper's way")):
            seg = data["summary"][method]["seg"]
            text = f"{label}: SEG **{seg['mean']:.3f} ± {seg['sd']:.3f}**"
            assert text in flat, f"index.md should say {text!r}"
        val = [np.mean([i["distance"]["val_seg"] for i in d["instances"].values()])
               for d in (json.loads((gap.parent / "silver_truth_long.json").read_text()), data)]
        text = f"Validation SEG fell from {val[0]:.3f} to {val[1]:.3f} on average"
        assert text in flat, f"index.md should say {text!r}"
        (g,) = {r["config"]["silver_gap"] for r in data["runs"].values()}
        near = data["neighbour_seg"]
        for text in (f"-p silver_gap={g}", f"score SEG {near['-1']:.3f} and {near['+1']:.3f}",
                     f"(their own silver masks {near['+0']:.3f})",
                     f"score {near[f'-{g + 1}']:.3f} and {near[f'+{g + 1}']:.3f}"):
            assert text in flat, f"index.md should say {text!r}"
    flat = " ".join(index.split())
    for name in ("seg_breakdown_silver_10k", "seg_breakdown_quick", "seg_breakdown_silver_wide"):
        path = PROJECT_ROOT / "book" / "results" / f"{name}.json"  # where SEG falls short
        if not path.is_file():
            continue
        from unetlib.report import breakdown_summary

        data = json.loads(path.read_text())
        b = breakdown_summary(data)
        if name == "seg_breakdown_silver_wide":
            texts = [f"on the test frames leave out {b['left_out']:.3f} and add {b['added']:.3f}"]
        elif name == "seg_breakdown_quick":
            paper = breakdown_summary(data, "components")
            texts = [f"cells merged, split or missed still cost {b['apart']:.3f} and the outlines "
                     f"of the cells found whole and alone {b['left_out'] + b['added']:.3f} "
                     f"({b['left_out']:.3f} for pixels left out, {b['added']:.3f} added",
                     f"the paper's way loses {paper['merged']:.3f} of SEG to merged cells, "
                     f"{paper['split']:.3f} to cells split in pieces and {paper['missed']:.3f} to "
                     f"cells missed, and {paper['left_out'] + paper['added']:.3f} to the outlines"]
        else:
            std = {k: (min(v), max(v)) for k, v in data["image_std"].items()}
            seeds = [a["test"][b["method"]]["seg"] for n, a in data["arms"].items()
                     if n.startswith("seed ")]
            texts = [f"cells merged, split or missed cost {b['apart']:.3f} of it; the outlines of "
                     f"the cells found whole and alone cost {b['left_out'] + b['added']:.3f}: "
                     f"{b['left_out']:.3f} for pixels of the cell that the outline leaves out, "
                     f"{b['added']:.3f} for pixels it adds",
                     f"the same outlines leave out {b['val_left_out']:.3f} and add "
                     f"{b['val_added']:.3f}",
                     f"would give {b['lookup']:.3f} on average ({b['lookup'] - b['seg']:+.3f}",
                     f"deviation {std['test'][0]:.3f} to {std['test'][1]:.3f} against "
                     f"{std['validation'][0]:.3f} and {std['validation'][1]:.3f}",
                     f"the same runs give {b['contrast_matched']:.3f} "
                     f"({b['contrast_matched'] - b['seg']:+.3f}, within the seeds' spread of "
                     f"{np.std(seeds, ddof=1):.3f})"]
        for text in texts:
            assert text in flat, f"index.md should say {text!r}"
    wide = PROJECT_ROOT / "book" / "results" / "silver_truth_wide.json"
    if wide.is_file():  # a wider network on the silver truth, against the 2,500-step runs
        data = json.loads(wide.read_text())
        narrow = json.loads((wide.parent / "silver_truth.json").read_text())
        (width,) = {r["config"]["base_channels"] for r in data["runs"].values()}
        for method, label in (("distance", "distance-transform watershed"),
                              ("watershed", "seeded watershed"), ("components", "paper's way")):
            seg = data["summary"][method]["seg"]
            text = f"{label}: SEG **{seg['mean']:.3f} ± {seg['sd']:.3f}**"
            assert text in flat, f"index.md should say {text!r}"
        a, b, c = (f"{narrow['summary'][m]['seg']['mean']:.3f} ± "
                   f"{narrow['summary'][m]['seg']['sd']:.3f}"
                   for m in ("distance", "watershed", "components"))
        val = [np.mean([i["distance"]["val_seg"] for i in d["instances"].values()])
               for d in (data, narrow)]
        for text in (f"-p base_channels={width}", f"{a}, {b} and {c} with 16 channels",
                     f"validation SEG ({val[0]:.3f} against {val[1]:.3f})"):
            assert text in flat, f"index.md should say {text!r}"
    tta_long = PROJECT_ROOT / "book" / "results" / "tta_silver_long.json"
    if tta_long.is_file():  # TTA decided again on the 5,000-step runs: the gains and the verdict
        from unetlib.report import passing_arms, validation_gains

        tta = json.loads(tta_long.read_text())
        gains = validation_gains(tta, "tta")["8-fold TTA"]
        said = "does not pass" if not passing_arms(tta, "tta") else "passes"
        text = (f"Test-time augmentation {said} the rule on these runs (validation SEG "
                f"{gains[0]:+.3f}, {gains[1]:+.3f} and {gains[2]:+.3f}")
        assert text in index, f"index.md should say {text!r}"
    data_page = PROJECT_ROOT / "book" / "01_data.ipynb"
    if data_page.is_file():  # the silver truth against the gold, as the data chapter printed it
        printed = re.findall(r"silver truth scored against the gold truth, sequence (\d+) "
                             r"\(\w+\): SEG ([0-9.]+)", _outputs_text(data_page))
        assert len(printed) == 2, "01_data should print the silver truth's SEG for both sequences"
        (s1, v1), (s2, v2) = printed
        text = f"SEG {v1} (sequence {s1}) and {v2} (sequence {s2}) against the gold truth"
        assert text in index, f"index.md should say {text!r}"
    ablations = PROJECT_ROOT / "book" / "results" / "ablations.json"
    if ablations.is_file():
        arms = json.loads(ablations.read_text())["summaries"]
        full, no_aug, no_w = (arms[a] for a in ("augmentation, w0 = 10 (the paper)",
                                                "no augmentation", "w0 = 0 (class balance only)"))

        def seg(arm: dict) -> str:
            return f"{arm['distance']['seg']['mean']:.3f} ± {arm['distance']['seg']['sd']:.3f}"

        few_path = PROJECT_ROOT / "book" / "results" / "few_images.json"
        if few_path.is_file():
            few = json.loads(few_path.read_text())["summaries"]

            def few_seg(k: int, kind: str) -> float:
                arm = few[f"{k} frame{'s' if k > 1 else ''}, {kind}"]
                return arm["distance"]["seg"]["mean"]

            gain = {k: few_seg(k, "augmented") - few_seg(k, "not augmented") for k in (1, 2, 4, 8)}
            for text in (f"with 1 training frame it adds {gain[1]:+.3f}",
                         f"with 2, {gain[2]:+.3f}", f"{gain[4]:+.3f} and {gain[8]:+.3f}"):
                assert text in index, f"index.md should say {text!r}"
        for text in (f"from {seg(no_aug)} to {seg(full)}", f"from {seg(no_w)} (w0 = 0) to "
                     f"{seg(full)}", f"from {no_w['components']['merges']['mean']:.2f} to "
                     f"{full['components']['merges']['mean']:.2f} per test frame"):
            assert text in index, f"index.md should say {text!r}"
        from unetlib.report import restored_steps

        data = json.loads(ablations.read_text())
        for arm in ("no augmentation", "augmentation, w0 = 10 (the paper)"):
            a, b, c = (f"{s:,}" for s in restored_steps(data, arm))
            text = f"at steps {a}, {b} and {c}"
            assert text in index, f"index.md should say {text!r} ({arm})"
        before = PROJECT_ROOT / "book" / "results" / "quick_700_steps" / "ablations.json"
        if before.is_file() and "scored exactly as then" in index:  # the unaugmented runs
            old = json.loads(before.read_text())
            for k in data["seeds"]:
                name = f"no augmentation, seed {k}"
                assert data["runs"][name]["best_step"] <= old["runs"][name]["config"]["steps"]
                assert data["instances"][name] == old["instances"][name], name
    recipes_path = PROJECT_ROOT / "book" / "results" / "recipes.json"
    if recipes_path.is_file():  # every arm's SEG (distance watershed) as the index quotes it
        for arm, summary in json.loads(recipes_path.read_text())["summaries"].items():
            seg = summary["distance"]["seg"]
            text = f"{seg['mean']:.3f} ± {seg['sd']:.3f}"
            assert text in index, f"index.md should say {text!r} ({arm})"
    tta_path = PROJECT_ROOT / "book" / "results" / "tta_em.json"
    if tta_path.is_file():  # the EM stack's Rand and warping errors with and without TTA
        arms = json.loads(tta_path.read_text())["summaries"]
        for key in ("isbi_rand_error", "isbi_warping_error"):
            a, b = (arms[arm]["components"][key] for arm in ("no TTA", "8-fold TTA"))
            text = (f"{a['mean']:.4f} ± {a['sd']:.4f} without it and "
                    f"{b['mean']:.4f} ± {b['sd']:.4f} with it" if key == "isbi_rand_error" else
                    f"{a['mean']:.4f} ± {a['sd']:.4f} and {b['mean']:.4f} ± {b['sd']:.4f}")
            assert text in index, f"index.md should say {text!r}"
    tta_hela = PROJECT_ROOT / "book" / "results" / "tta_hela.json"
    if tta_hela.is_file():  # DIC-HeLa: test SEG both arms, and the validation SEG that decided
        data = json.loads(tta_hela.read_text())
        for method in ("distance", "components"):
            a, b = (data["summaries"][arm][method]["seg"] for arm in ("no TTA", "8-fold TTA"))
            text = f"from {a['mean']:.3f} ± {a['sd']:.3f} to {b['mean']:.3f} ± {b['sd']:.3f}"
            assert text in " ".join(index.split()), f"index.md should say {text!r}"
        runs = data["instances"]
        gains = [runs[f"8-fold TTA, seed {k}"]["distance"]["val_seg"]
                 - runs[f"no TTA, seed {k}"]["distance"]["val_seg"] for k in data["seeds"]]
        text = f"by {gains[0]:+.3f}, {gains[1]:+.3f} and {gains[2]:+.3f} over the three seeds"
        assert text in " ".join(index.split()), f"index.md should say {text!r}"
    tta_silver = PROJECT_ROOT / "book" / "results" / "tta_silver.json"
    if tta_silver.is_file():  # the silver-truth runs: TTA chosen by validation, its test SEG
        from unetlib.report import validation_gains

        data = json.loads(tta_silver.read_text())
        gains = validation_gains(data, "tta")["8-fold TTA"]
        seg = data["summaries"]["8-fold TTA"]["distance"]["seg"]
        assert sum(gains) / len(gains) >= 0.01, "index.md says TTA passed the rule"
        text = (f"(validation SEG {gains[0]:+.3f} and {gains[1]:+.3f}), so by that rule the "
                f"extension's number is the one with it: **{seg['mean']:.3f} ± {seg['sd']:.3f}**")
        assert text in " ".join(index.split()), f"index.md should say {text!r}"
    schedule = PROJECT_ROOT / "book" / "results" / "schedule.json"
    if schedule.is_file():  # the schedules' test SEG and the validation change that decided
        from unetlib.report import validation_gains

        data = json.loads(schedule.read_text())

        def arm_seg(arm: str) -> str:
            seg = data["summaries"][arm]["distance"]["seg"]
            return f"{seg['mean']:.3f} ± {seg['sd']:.3f}"

        gains = {arm: sum(g) / len(g) for arm, g in validation_gains(data, "schedule").items()}
        assert all(g < 0.01 for g in gains.values()), "index.md says the constant rate stays"
        text = (f"scored {arm_seg('poly decay')} and {arm_seg('poly decay from 4e-3')} against "
                f"the constant rate's {arm_seg('constant rate (the book)')}, and changed the "
                f"validation SEG by {gains['poly decay']:+.3f} and "
                f"{gains['poly decay from 4e-3']:+.3f}")
        assert text in " ".join(index.split()), f"index.md should say {text!r}"
    border = PROJECT_ROOT / "book" / "results" / "border_weight.json"
    if border.is_file():  # w0 = 20: the rule's verdict on validation, and its test SEG
        from unetlib.report import validation_gains

        data = json.loads(border.read_text())
        gains = validation_gains(data, "border_weight")["w0 = 20"]
        arms = data["summaries"]
        strong, book = (arms[a]["distance"]["seg"] for a in ("w0 = 20",
                                                              "w0 = 10 (the paper, the book)"))
        mean = sum(gains) / len(gains)
        said = "passed" if mean >= 0.01 else "did not pass"
        text = (f"{said} the same rule on validation ({mean:+.3f} on average) and scored "
                f"{strong['mean']:.3f} ± {strong['sd']:.3f} on the test frames, within the seeds' "
                f"spread of {book['mean']:.3f} ± {book['sd']:.3f}")
        assert text in " ".join(index.split()), f"index.md should say {text!r}"
    bench = PROJECT_ROOT / "benchmarks" / "results" / "bench_weights_cpu.json"
    if bench.is_file():  # the weight map's speed, as the performance chapter measured it
        row = next(r for r in json.loads(bench.read_text())["rows"]
                   if r["case"] == "random" and r["cells"] == 100)
        text = (f"{row['ours_median_s'] * 1000:.0f} ms for 100 cells on 512 x 512, "
                f"{row['speedup_vs_naive_min']:.0f}x the per-cell transform")
        assert text in " ".join(index.split()), f"index.md should say {text!r}"
    grid = PROJECT_ROOT / "book" / "results" / "instance_grid.json"
    if grid.is_file():  # the wider grid's verdict, from its own file
        data = json.loads(grid.read_text())
        means = {f"{v:.3f}" for v in data["mean_val_seg"].values()}
        kept = all(r["today's grid"]["params"] == r["wider grid"]["params"]
                   for r in data["runs"].values())
        assert len(means) == 1 and kept and not data["adopted"], "index.md's sentence is stale"
        text = f"kept the setting it had (mean validation SEG {means.pop()} either way)"
        assert text in " ".join(index.split()), f"index.md should say {text!r}"
        vals = [r["today's grid"]["val_seg"] for r in data["runs"].values()]
        tests = [r["today's grid"]["test"]["seg"] for r in data["runs"].values()]
        text = (f"(best SEG {min(vals):.2f} to {max(vals):.2f}) from the test frames of sequence "
                f"02 ({min(tests):.2f} to {max(tests):.2f})")
        assert text in " ".join(index.split()), f"index.md should say {text!r}"
    # the GPU session's rows and the gold-only validation that silver_val replaced
    expected = {
        "gpu_paper": [("components", "paper's way, GPU: SEG **{mean:.3f}**"),
                      ("watershed", "seeded watershed, GPU: SEG **{mean:.3f}**")],
        "gpu_quick_long": [("watershed", "quick recipe on a GPU, seeded watershed: SEG "
                                         "**{mean:.3f} ± {sd:.3f}**")],
        "02_train_gold_validation": [("watershed", "{mean:.3f} ± {sd:.3f} with the seeded "
                                                   "watershed"),
                                     ("components", "{mean:.3f} ± {sd:.3f} the paper's way")],
    }
    for name, checks in expected.items():
        path = PROJECT_ROOT / "book" / "results" / f"{name}.json"
        if not path.is_file():
            continue
        summary = json.loads(path.read_text())["summary"]
        for method, template in checks:
            text = template.format(**summary[method]["seg"])
            assert text in " ".join(index.split()), f"index.md should say {text!r} ({name})"


def test_committed_book_names_no_path_of_the_machine_that_made_it():
    import re

    pattern = re.compile(r"(?<![\w.])/(?:work|home|root|tmp|Users|mnt|opt|var)/")
    files = [*(PROJECT_ROOT / "book").glob("*.ipynb"), *(PROJECT_ROOT / "book").glob("*.md"),
             *(PROJECT_ROOT / "book" / "results").glob("**/*.json"),
             *(PROJECT_ROOT / "benchmarks" / "results").glob("*.json")]
    def text(path):  # a notebook without its embedded pictures, whose base64 bytes mean nothing
        if path.suffix != ".ipynb":
            return path.read_text()
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                out["data"] = {k: v for k, v in out.get("data", {}).items()
                               if not k.startswith("image/")}
        return json.dumps(nb)

    offenders = [f"{f.relative_to(PROJECT_ROOT)}: {m.group(0)}..." for f in files
                 for m in [pattern.search(text(f))] if m]
    assert not offenders, offenders
    # nor does a picture's base64 read like one to a scan (the runner clears those that do), in
    # outputs or in the explorers' saved widget state
    from unetlib.paths import MACHINE_PATH_LOOKALIKE

    def pictures_of(nb: dict) -> list[str]:
        outputs = [v for cell in nb["cells"] for out in cell.get("outputs", [])
                   for k, v in out.get("data", {}).items() if k.startswith("image/")]
        state = nb["metadata"].get("widgets", {}).get(
            "application/vnd.jupyter.widget-state+json", {}).get("state", {})
        return outputs + [b["data"] for model in state.values()
                          for b in model.get("buffers", []) if b.get("encoding") == "base64"]

    pictures = [f"{f.name}: {m.group(0)}" for f in files if f.suffix == ".ipynb"
                for data in pictures_of(json.loads(f.read_text()))
                for m in [MACHINE_PATH_LOOKALIKE.search(data)] if m]
    assert not pictures, pictures
    # and an executed page does not name where this machine keeps its data beside the clone
    beside = [f.name for f in files if f.suffix == ".ipynb" and "../shared" in f.read_text()]
    assert not beside, beside


def _outputs_text(path: Path) -> str:
    """The text a committed page printed (its streams), in order."""
    nb = json.loads(path.read_text())
    return "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))


def _pictures(cell: dict) -> list[dict]:
    return [o for o in cell.get("outputs", [])
            if any(k.startswith("image/") for k in o.get("data", {}))]


@pytest.mark.parametrize("page", sorted(p.stem for p in (PROJECT_ROOT / "book").glob("*.ipynb")))
def test_every_picture_in_the_committed_book_has_a_caption_of_its_own(page):
    """MyST-NB wraps each display output of a cell with ``mystnb.figure`` metadata in a figure
    with the caption: a cell with a picture has a caption, and shows nothing else that would
    be captioned with it (text goes in the next cell)."""
    nb = json.loads((PROJECT_ROOT / "book" / f"{page}.ipynb").read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code" or not _pictures(cell):
            continue
        caption = cell["metadata"].get("mystnb", {}).get("figure", {}).get("caption", "")
        assert len(caption.split()) >= 8, f"{page} cell {i}: a picture without a caption"
        shown = [o for o in cell["outputs"] if o["output_type"] in ("display_data",
                                                                   "execute_result")]
        assert shown == _pictures(cell), f"{page} cell {i}: text captioned as a figure"


def _significant_digits(number: str) -> int:
    return len(number.replace(".", "").lstrip("0"))


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n not in SOURCES])
def test_the_prose_of_a_notebook_types_no_measured_number(name):
    """Measured numbers reach a page through its code (from ``book/results/``), never typed into
    its prose, where they would go stale when the experiments are rerun: a number of three or
    more significant digits in a notebook's Markdown must be a published one (the paper's, the
    Keras reproduction's). Parameters (0.5, 0.99, 0.001) and section numbers (3.1) have fewer."""
    from unetlib.plots import KERAS_REPRODUCTION, PAPER

    published = {v for d in (*PAPER.values(), *KERAS_REPRODUCTION.values()) for v in d.values()}
    nb = json.loads((PROJECT_ROOT / "notebooks" / f"{name}.ipynb").read_text())
    prose = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    typed = [n for n in re.findall(r"(?<![\w.])\d*\.\d+(?![\w.])", prose)
             if _significant_digits(n) >= 3 and float(n) not in published]
    assert not typed, f"{name}: numbers typed into the prose: {typed}"


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n not in SOURCES])
def test_every_chapter_ends_with_a_conclusion_and_names_the_figures_it_cites(name):
    """A chapter closes with a "## Conclusion" section, and every ``{numref}`` in its prose
    points at a figure of the same notebook (an unknown label fails the book's build, but only
    when the book is built; this says which notebook and label at once)."""
    nb = json.loads((PROJECT_ROOT / "notebooks" / f"{name}.ipynb").read_text())
    headings = [line for c in nb["cells"] if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    assert headings and headings[-1] == "## Conclusion", f"{name}: last section {headings[-1:]}"
    figures = {c["metadata"].get("mystnb", {}).get("figure", {}).get("name")
               for c in nb["cells"] if c["cell_type"] == "code"}
    cited = set(re.findall(r"\{numref\}`([^`<]+)`", json.dumps(nb)))
    assert cited <= figures, f"{name}: cites {sorted(cited - figures)}, not a figure of it"


@pytest.mark.parametrize("page", sorted(p.stem for p in (PROJECT_ROOT / "book").glob("*.ipynb")))
def test_every_committed_page_stays_under_two_megabytes(page):
    """The executed notebooks are committed: pictures and the explorers' precomputed slider
    positions are budgeted so that no page passes 2 MB (JPEG, a few positions per slider)."""
    size = (PROJECT_ROOT / "book" / f"{page}.ipynb").stat().st_size
    assert size < 2_000_000, f"book/{page}.ipynb is {size / 1e6:.2f} MB"


def test_a_corrupt_manifest_is_named_before_any_kernel_starts(tmp_path):
    from unetlib.book import PipelineError, run

    (tmp_path / "results").mkdir()
    manifest = tmp_path / "results" / "pipeline_smoke.json"
    manifest.write_text('{"profile": "smoke", "notebooks": {')
    with pytest.raises(PipelineError, match="pipeline_smoke.json: not valid JSON"):
        run("smoke", only=["01_data"], output_dir=tmp_path)
    assert manifest.read_text() == '{"profile": "smoke", "notebooks": {'
    assert not list(tmp_path.glob("*.ipynb"))


def test_finished_page_hides_import_only_cells_behind_a_toggle(tmp_path):
    path = _notebook(tmp_path / "page.ipynb", "import json\nfrom pathlib import Path",
                     "import json\nprint(json.dumps(1))", "x = (")
    book._finish_page(path, tmp_path / "src.ipynb", tmp_path / "out.ipynb")
    cells = nbformat.read(path, as_version=4).cells
    tags = [c.metadata.get("tags", []) for c in cells]
    assert "remove-cell" in tags[0]  # the default parameters
    assert tags[1] == ["hide-input"]  # imports only
    assert tags[2] == [] and tags[3] == []  # does work; not Python


def test_finished_page_clears_path_lookalikes_from_the_explorers_saved_pictures(tmp_path):
    """The explorers' pictures live in the page's saved widget state as base64 JPEG; the
    finished page's copy reads like no machine path and decodes to the same pixels."""
    import base64
    import io

    from PIL import Image

    from unetlib.paths import MACHINE_PATH_LOOKALIKE
    from unetlib.widgets import encode_image

    rng = np.random.default_rng(0)
    while True:
        jpeg = base64.b64encode(encode_image(rng.integers(0, 256, (96, 128, 3), np.uint8),
                                             "jpeg", 70, 2)).decode()
        if MACHINE_PATH_LOOKALIKE.search(jpeg):
            break
    path = _notebook(tmp_path / "page.ipynb", "x = 2")
    nb = nbformat.read(path, as_version=4)
    picture = {"model_name": "ImageModel", "model_module": "@jupyter-widgets/controls",
               "state": {"format": "jpeg"},
               "buffers": [{"path": ["value"], "encoding": "base64", "data": jpeg}]}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {"a1": picture}, "version_major": 2, "version_minor": 0}}
    nbformat.write(nb, path)
    book._finish_page(path, tmp_path / "src.ipynb", tmp_path / "out.ipynb")
    saved = nbformat.read(path, as_version=4).metadata["widgets"]
    data = saved["application/vnd.jupyter.widget-state+json"]["state"]["a1"]["buffers"][0]["data"]
    assert not MACHINE_PATH_LOOKALIKE.search(data)

    def pixels(text: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))

    assert np.array_equal(pixels(data), pixels(jpeg))


def test_a_page_takes_its_heading_from_the_table_of_contents(tmp_path):
    """02_train and 02_train_em are one notebook: each page's heading is its own TOC title."""
    import nbformat

    from unetlib.book import _finish_page, toc_titles

    titles = toc_titles()
    assert titles["02_train"] != titles["02_train_em"]
    for name in ("02_train", "02_train_em", "01_data"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Training\n\nText."),
                                             nbformat.v4.new_code_cell("x = 1")])
        path = tmp_path / f"{name}.ipynb"
        nbformat.write(nb, path)
        _finish_page(path, PROJECT_ROOT / "notebooks" / "02_train.ipynb", path)
        first = nbformat.read(path, as_version=4).cells[0].source
        assert first == (f"# {titles[name]}\n\nText." if name in titles else "# Training\n\nText.")
    for name, title in titles.items():  # and so do the committed pages
        page = PROJECT_ROOT / "book" / f"{name}.ipynb"
        if page.is_file():
            md = next(c for c in nbformat.read(page, as_version=4).cells
                      if c.cell_type == "markdown")
            assert md.source.startswith(f"# {title}\n")


def test_one_notebook_on_two_pages_labels_its_figures_once_per_page(tmp_path):
    """Sphinx labels are global to the book: the two pages executed from 02_train get their own
    figure labels, cited by their own prose, so the build (warnings are errors) passes; and so do
    the committed pages."""
    import nbformat

    from unetlib.book import _finish_page

    figure = nbformat.v4.new_code_cell("plot()", metadata={"mystnb": {"figure": {
        "caption": "a caption", "name": "fig-curves"}}})
    labels = []
    for name in ("02_train", "02_train_em"):
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell("# T\n\n{numref}`fig-curves` and {numref}`fig-other`"),
            figure])
        path = tmp_path / f"{name}.ipynb"
        nbformat.write(nb, path)
        for _ in range(2):  # finishing twice changes nothing more
            _finish_page(path, PROJECT_ROOT / "notebooks" / "02_train.ipynb", path)
        cells = nbformat.read(path, as_version=4).cells
        labels.append(cells[1].metadata["mystnb"]["figure"]["name"])
        assert labels[-1] == f"{name}-fig-curves"
        assert f"{{numref}}`{name}-fig-curves` and {{numref}}`fig-other`" in cells[0].source
    cited = {}
    for page in sorted((PROJECT_ROOT / "book").glob("*.ipynb")):
        for cell in nbformat.read(page, as_version=4).cells:
            label = cell.metadata.get("mystnb", {}).get("figure", {}).get("name")
            if label:
                assert label not in cited, f"{page.name}: {label} also on {cited[label]}"
                cited[label] = page.name
                assert label.startswith(page.stem + "-"), f"{page.name}: {label}"


def _floats(node) -> set[str]:
    """Every float of a result file's JSON, written with 3 and with 4 decimals."""
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        return set().union(*map(_floats, node)) if node else set()
    return {f"{node:.3f}", f"{node:.4f}"} if isinstance(node, float) else set()


@pytest.mark.parametrize("header, folders", [
    ("| 1,000 steps a run, four levels |", ("quick_four_levels", "rerun_bf16_1000")),
    ("| 700 steps a run |", ("quick_700_steps", "rerun_bf16")),
])
def test_rerun_pages_machine_tables_quote_their_result_files(header, folders):
    """Each table of book/rerun.md that sets the book beside its rerun on another CPU quotes
    numbers from the two sets of result files of its budget: the AVX2 machine's (the four-level
    network's: book/results/quick_four_levels/ at 1,000 steps, book/results/quick_700_steps/ at
    700) and the bf16 machine's."""
    lines = (PROJECT_ROOT / "book" / "rerun.md").read_text().splitlines()
    first = lines.index(next(line for line in lines if line.startswith(header)))
    rows = []
    for line in lines[first + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    assert len(rows) == 5 and all(r.startswith(("| DIC-HeLa", "| ISBI 2012")) for r in rows)
    results = PROJECT_ROOT / "book" / "results"
    for column, folder in enumerate(folders, start=2):  # the table's 2nd and 3rd columns
        values = set().union(*(_floats(json.loads((results / folder / f"{name}.json").read_text()))
                               for name in ("02_train", "02_train_em",
                                            "03_augmentation_ablation", "04_weight_maps")))
        quoted = [n for row in rows for n in re.findall(r"\d+\.\d{3,4}", row.split("|")[column])]
        assert len(quoted) == 9 and not [n for n in quoted if n not in values], (folder, quoted)


@pytest.mark.parametrize("page", TRAINING_PAGES)
def test_committed_training_results_match_the_quick_profile_as_it_is(page):
    """Every run in a committed training page's result file trained under the quick profile's
    options as ``unetlib/profiles.py`` states them today (its arms' own option aside): a profile
    edited without re-executing the book fails here. ``amp_cpu`` is the machine's to decide."""
    path = PROJECT_ROOT / "book" / "results" / f"{page}.json"
    if not path.is_file():
        pytest.skip("no committed results yet")
    stated = PROFILES["quick"]["train"][page]
    arm_options = {"augment", "w0"}  # what 03 and 04 vary between their two runs
    for name, run in json.loads(path.read_text())["runs"].items():
        differ = {k: (run["config"][k], v) for k, v in stated.items()
                  if k != "amp_cpu" and k not in arm_options and run["config"][k] != v}
        assert not differ, f"{path.name} {name!r} trained with {differ} (committed, profile)"


@pytest.mark.parametrize("channels_last", [False, True])
def test_kept_models_come_in_the_memory_format_their_run_scored_them_in(tmp_path, channels_last):
    import argparse

    import torch

    args = argparse.Namespace(profile="smoke", page="02_train", out_dir=str(tmp_path / "runs"),
                              overrides=[("steps", 2), ("channels_last", channels_last)],
                              seeds=[0])
    ((config, result, model),) = list(book.kept_models(args))
    weight = next(m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)
                  and m.kernel_size == (3, 3) and m.in_channels > 1)
    assert config.channels_last is channels_last and not model.training
    assert weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert weight.is_contiguous() is not channels_last
