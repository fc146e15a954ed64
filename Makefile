# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing and
# install the project with constraints.txt (pinned torch/torchvision; see README "Install").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-slow test-all lint bench-camvid clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/unetseg demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# The fast tier (a few minutes on 2 cores); test-slow runs the rest (@pytest.mark.slow); .ci/run runs both.
test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

test-all: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

bench-camvid: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/train_camvid.py --minutes 10

clean:
	rm -rf $(VENV) runs .pytest_cache
