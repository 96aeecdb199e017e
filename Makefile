# Two commands do all set-up on a fresh machine:
#   make demo   -- bootstrap .venv, then run the whole workflow on the embedded demo
#   make test   -- bootstrap .venv, then run the test suite
# Python 3.11 is required (python3.11 or python3 on PATH).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= all
# Debian packages: the General MIDI soundfont renders the audio demo; headless
# Chromium renders the report to PNG in a test; slurm-wlm and munge give the SLURM test a real
# single-node cluster (.ci/local-slurm.sh).
DEB_PKGS := chromium fluid-soundfont-gm slurm-wlm munge
# Packages installed without their declared dependencies: BeatNet declares pyaudio
# (a stub suffices offline), basic-pitch would pull TensorFlow and downgrade numpy
# (its ONNX model runs on onnxruntime), tinysoundfont declares pyaudio, aisfx
# declares unpinned torch/torchaudio. Their real runtime needs are in pyproject.
NODEPS := beatnet==1.1.1 basic-pitch==0.4.0 tinysoundfont==0.3.7 aisfx==0.1.2

# Two recipes at a time: the Debian packages (deb) install while the venv builds ($(STAMP)), about 30 s
# less on a fresh machine; each recipe's own lines still run in order, and pyc waits for the venv.
MAKEFLAGS += --jobs=2

.PHONY: demo validate benchmark corpus2 diffusion table1 test venv deb pyc lint bench clean clean-jit-cache

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools<81" wheel
	# torch first, pinned to the local CPU wheel, so nothing pulls an unpinned CUDA build.
	# pip byte-compiles serially (about 90 s here); instead the modules are compiled once below,
	# on every core, leaving out the packages' own test folders (about 40 s). A few files are
	# written for newer Pythons (torch's py312 test helpers) and never imported here: their
	# failures are ignored, as pip ignores them.
	$(BIN)/pip install -q --no-compile torch==2.13.0
	$(BIN)/pip install -q --no-compile -c constraints.txt -e ".[test]"
	$(BIN)/pip install -q --no-compile --no-deps $(NODEPS)
	# librosa's numba kernels are compiled once, serially, into the read-only template that every
	# job copies into a private cache (parallel jobs must never share one: aria/runtime.py), while
	# compileall runs (one core against its two); a failure of warm-jit-cache stops make
	$(BIN)/aria warm-jit-cache & jit=$$!; \
	$(BIN)/python -m compileall -q -j 0 -x '/tests?/' $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') > /dev/null || true; \
	wait $$jit
	touch $(STAMP)

venv: $(STAMP)

# Aria's own modules byte-compiled too (the venv's are compiled above): where the environment sets
# PYTHONDONTWRITEBYTECODE, every job would otherwise compile the modules it imports, about 0.2 s
# a job. Incremental: only changed files are compiled again.
pyc: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 aria > /dev/null

deb:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) \
	  || echo "could not install$$missing; the browser-rendering test will be skipped"; \
	else echo "optional: install$$missing with: sudo apt-get install -y$$missing"; fi

demo: $(STAMP) deb pyc
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES)

# the demo plus its LDS ground truth (counterfactual retraining, docs/spec.md §9; docs/validation.md "Ground truth (LDS)")
validate: $(STAMP) deb pyc
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile config.yaml profiles/validate/lds.yaml

# the planted-influence benchmark: queries that copy one aspect of known training pieces, so the
# right answer is certain (docs/validation.md "Planted-influence benchmark"); results/benchmark_symbolic and
# results/benchmark_audio
benchmark: $(STAMP) deb pyc
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile config.yaml profiles/benchmark/planted.yaml

# the validation and the planted benchmark in one run, on a second corpus that shares no collection
# with the demo (Aird's airs, Essen folk songs, trecento; docs/validation.md "A second corpus"); results/corpus2
corpus2: $(STAMP) deb pyc
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile config.yaml profiles/corpus2/validate.yaml

# the unlearning paper's own setting: a latent diffusion transformer on the demo's audio corpus, with the
# self-influence grid and the test-to-train comparison (docs/methods.md); results/demo_diffusion
diffusion: $(STAMP) deb pyc
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES) results/demo_diffusion/report.md \
		results/demo_diffusion/summary.json --configfile config.yaml profiles/diffusion/demo.yaml

# the Aria paper's Table 1: dattri's MAESTRO MusicTransformer benchmark, read offline from the folder
# dattri's load_benchmark downloads (DATTRI, default dattri's own ~/.dattri); results/maestro
DATTRI ?= ~/.dattri
table1: $(STAMP) pyc
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile config.yaml profiles/dattri/table1.yaml \
		--config 'corpus={"kind": "dattri_benchmark", "dattri_benchmark": {"download_path": "$(DATTRI)"}}'

# two pytest workers: while one waits on a job or a daemon (the SLURM test), the other computes;
# tests/conftest.py shares the tiny workflow run between them and orders the tests longest first;
# --dist loadgroup hands out the tests one by one as workers free up (no test is in a group).
# ARIA_FORKSERVER=1: the workflow runs' jobs are forked from a process that has the libraries
# imported (aria/forkserver.py), not started anew: the tiny run takes 3 min 20 s instead of 8 min.
# Their benchmark files then hold the supervisor's CPU time and memory (wall time is right); the
# one test that reads them checks the report's cost against those same files.
TEST_WORKERS ?= 2
test: $(STAMP) deb pyc
	PATH="$(CURDIR)/$(BIN):$$PATH" ARIA_FORKSERVER=1 $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

lint: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules/

bench: $(STAMP)
	$(BIN)/python bench/bench_reliability.py
	$(BIN)/python bench/bench_reliability.py --n 1000000 --only-default
	$(BIN)/python bench/bench_projection.py
	$(BIN)/python bench/bench_homogeneity.py
	$(BIN)/python bench/bench_dask_scoring.py
	$(BIN)/python bench/bench_jit_cache.py
	$(BIN)/python bench/bench_library_swaps.py
	$(BIN)/python bench/bench_factored.py
	$(BIN)/python bench/bench_malloc.py
	$(BIN)/python bench/bench_audio_features.py

clean:
	rm -rf results/ .snakemake/

# Troubleshooting (README): delete every numba cache inside the venv (a corrupt one, left by
# an older Aria or another tool, crashes librosa with SIGSEGV) and rebuild the JIT template.
clean-jit-cache: $(STAMP)
	find $(VENV) \( -name '*.nbi' -o -name '*.nbc' \) -delete
	rm -rf $(VENV)/var/aria
	$(BIN)/aria warm-jit-cache
