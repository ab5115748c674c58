# unetlib: two commands for a newcomer.
#   make book   set up, run every notebook with papermill (PROFILE=quick by default), build the HTML
#   make test   set up, run the whole test suite
# Other targets: setup, notebooks, html, bench (its own .venv-bench with the peers), clean.

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PROFILE ?= quick
# extra options for the pipeline runner, e.g. RUN_ARGS="--only 02_train -p steps=2000"
RUN_ARGS ?=
# the committed book/ is the quick profile's, run as it is; any other run gets its own folder
BOOK_DIR := $(if $(and $(filter quick,$(PROFILE)),$(if $(strip $(RUN_ARGS)),,yes)),book,_build/runs/$(PROFILE))
PYTEST_ARGS ?=

.PHONY: setup book notebooks html test bench bench-setup clean

setup: $(VENV)/.setup-done node_modules/.setup-done

# The virtualenv is rebuilt only when the pins change (fast when already there).
$(VENV)/.setup-done: requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@# elasticdeform 0.5.1's wheel breaks with NumPy 2: build it from source (seconds).
	$(PY) -m pip install --quiet --no-binary elasticdeform elasticdeform==0.5.1
	@# the Cell Tracking Challenge's own metrics, for the SEG cross-check in tests/test_metrics.py;
	@# --no-deps: its pandas/imagecodecs requirements are not needed for SEG.
	$(PY) -m pip install --quiet --no-deps py-ctcmetrics==1.3.3
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# The book's JavaScript (MathJax, require.js, @jupyter-widgets/html-manager) comes from the npm
# registry at build time, so that pages render with no network. Headless Chromium runs the
# browser tests; it comes from Debian.
node_modules/.setup-done: package.json
	npm install --no-audit --no-fund --ignore-scripts --loglevel=error
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "Installing Debian chromium for the browser tests"; \
	    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	    echo "WARNING: could not install chromium; the browser test will be skipped"; }
	@touch $@

notebooks: setup
	$(PY) -m unetlib.book run --profile $(PROFILE) --output-dir $(BOOK_DIR) $(RUN_ARGS)

html: setup
	$(PY) -m unetlib.book build --book-dir $(BOOK_DIR)

book: notebooks
	$(PY) -m unetlib.book build --book-dir $(BOOK_DIR)
	@echo "Open $(if $(filter book,$(BOOK_DIR)),,$(BOOK_DIR)/)_build/html/index.html"

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# The benchmarks' peers (kornia, MONAI, TorchIO, albumentations, batchgeneratorsv2) go into
# .venv-bench only, so that the book's set-up stays lean: a virtualenv layered on .venv (a .pth
# file adds .venv's packages, whose versions are its constraints), so torch is not installed twice.
BENCH_VENV := .venv-bench
bench-setup: $(BENCH_VENV)/.setup-done

$(BENCH_VENV)/.setup-done: $(VENV)/.setup-done benchmarks/requirements-peers.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -c "import site, sys; open(site.getsitepackages()[0] + \
	  '/_unetlib_venv.pth', 'w').write(sys.argv[1] + '\n')" \
	  "$$($(PY) -c 'import site; print(site.getsitepackages()[0])')"
	$(PY) -m pip freeze --exclude-editable > $(BENCH_VENV)/constraints.txt
	$(BENCH_VENV)/bin/python -m pip install --quiet -c $(BENCH_VENV)/constraints.txt \
	  -r benchmarks/requirements-peers.txt
	@touch $@

bench: setup bench-setup
	$(BENCH_VENV)/bin/python benchmarks/run_all.py

clean:
	rm -rf _build book/_vendor .pytest_cache $(BENCH_VENV)
