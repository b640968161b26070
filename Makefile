# The README's commands. `make book` sets up and builds the book (executing every chapter);
# `make test` sets up and runs every test (library tests and the executed chapters under nbval).
# `make lab` sets up and opens the chapters in JupyterLab (offline: export SEQSAE_DATA first, it is passed on).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On CPU-only machines install torch's CPU build first. Where pip would pick a CUDA build, use e.g.
#   make book TORCH_PIP_ARGS="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?= torch==2.13.0
BOOK_FLAGS ?= -W -n --keep-going
# `make test THREADS=1` runs every test and chapter with that many torch threads (SEQSAE_THREADS overrides
# the chapters' THREADS parameter); `ATEN_CPU_CAPABILITY=default make test` forces torch's plain kernels,
# which reproduces the last-digit differences of another CPU on this one.
THREADS ?=
ifneq ($(strip $(THREADS)),)
export SEQSAE_THREADS := $(THREADS)
endif

.PHONY: setup test book lab bench retrain clean-book

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(TORCH_PIP_ARGS)
	$(BIN)/pip install -e ".[book,test,lab]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(BIN)/python -m pytest

# JupyterLab on the chapters, from the venv (its kernel is the venv's Python, so `import seqsae_lib` works).
# SEQSAE_DATA, SEQSAE_CACHE and SEQSAE_PRETRAINED reach the kernels from the environment of this command;
# LAB_FLAGS passes options on, e.g. `make lab LAB_FLAGS="--no-browser --port 8899"`.
LAB_FLAGS ?=
lab: setup
	$(if $(SEQSAE_DATA),SEQSAE_DATA="$(SEQSAE_DATA)" ,)$(BIN)/jupyter lab --notebook-dir=chapters $(LAB_FLAGS)

book: setup
	$(BIN)/jupyter-book build . --toc book/_toc.yml $(BOOK_FLAGS)

# Everything from scratch: retrain SASRec (seed 0) and the SAE from their recipes into $(RETRAINED)
# (SEQSAE_PRETRAINED points the library there; the shipped files are not touched), then build the book
# from those models into $(RETRAINED)/_build/html, executing every chapter afresh (own execution cache).
RETRAINED ?= _build/retrained
retrain: setup
	mkdir -p $(RETRAINED)
	SEQSAE_PRETRAINED=$(abspath $(RETRAINED)) $(BIN)/python scripts/train_sasrec.py --seeds 0 --save-seed 0 --threads 2
	SEQSAE_PRETRAINED=$(abspath $(RETRAINED)) $(BIN)/python scripts/train_sae.py --save --threads 2
	SEQSAE_PRETRAINED=$(abspath $(RETRAINED)) $(BIN)/jupyter-book build . --toc book/_toc.yml --path-output $(RETRAINED) $(BOOK_FLAGS)

bench: setup
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean-book:
	rm -rf _build
