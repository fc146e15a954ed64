# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing and
# install the project with constraints.txt (pinned torch/torchvision; see README "Install").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-slow test-all lint bench-camvid prior clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/unetseg demo

# ruff, and the import contracts of pyproject.toml (stages import downwards; docs/architecture.md).
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

# The fast tier (<= 3 minutes on 2 cores; no test over 60 s); test-slow runs the rest (@pytest.mark.slow:
# training, DDP, kill -9, fuzzing, browser); test-all is both, and is what .ci/run runs.
test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" --timeout 60

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

test-all: test test-slow

bench-camvid: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/train_camvid.py --minutes 10

# The built-in call prior (src/unetseg/audio/prior): synthetic calls and three bat recordings, 30 minutes of
# training on this 2-core machine (see its MODEL_CARD.md); --install replaces the shipped weights.
prior: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/prior.py --minutes 30 --install

clean:
	rm -rf $(VENV) runs .pytest_cache
