# mufin-kit. Two commands on a fresh machine:
#   make reproduce   # all notebooks on the embedded default data -> runs/<id>/ (+ figures/)
#   make test        # unit tests + notebooks under nbval at smoke size
# Both create .venv and install the pinned stack on first use; re-running does not reinstall.
PYTHON ?= python3
VENV   ?= .venv
PRESET ?= default
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: reproduce ablations smoke test test-fast test-smoke test-slow lab bench scaling real-shape predictor-speed ranker-variants clean-runs help

help:
	@echo "make reproduce [PRESET=default|smoke|paper|hm|mango|mango-xc|polyvore] | make ablations PRESET=hm | make test | make test-fast | make lab | make bench | make scaling | make real-shape | make predictor-speed RUN=runs/<id> | make ranker-variants RUN=runs/<id>"

# Reinstalls only when pyproject.toml or constraints.txt changed since the last install.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip check
	@touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/mufin run --preset $(PRESET) --publish

# Table 4 (notebook 08): the chain 01-06, every ablation variant as a run beside it (stages reused where their
# parameters and inputs are the same), then the table: make ablations PRESET=hm
ablations: $(STAMP)
	$(BIN)/mufin run --preset $(PRESET) --only 08

smoke: $(STAMP)
	$(BIN)/mufin run --preset smoke

# Unit tests, then every notebook executed by nbval (--nbval-lax: outputs are not compared) at smoke size; the 15
# slowest listed at the end (CI must stay under 20 minutes).
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest --nbval-lax -m "not slow" --durations=15 tests notebooks

# The smoke tier alone: the chain at smoke size through the runner, numbers read from each stage's metrics.json.
test-smoke: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m smoke tests

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow and not smoke" tests

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m slow tests

# Lab's root is the project: notebooks/ and runs/<id>/ (executed copies, figures) side by side. The committed
# notebooks are saved stripped (mufin_lib/lab.py), so exploring never dirties the repository.
lab: $(STAMP)
	$(BIN)/python -m mufin_lib.lab

bench: $(STAMP)
	$(BIN)/python benchmarks/curation_throughput.py
	$(BIN)/python benchmarks/module1_throughput.py
	$(BIN)/mufin run --only 11 --publish  # plots them (runs/<id>/benchmarks/, figures/)

# Prediction cost against L, 10K to 1M labels (REPRODUCE.md gives its time), then notebook 13 plots it
scaling: $(STAMP)
	$(BIN)/python benchmarks/scaling.py
	$(BIN)/mufin run --only 13 --publish

# Stages 01-07 at MM-AmazonTitles-300K's shape on planted data (seconds and peak memory per stage; REPRODUCE.md gives
# its time), then notebook 13 plots it beside the scaling benchmark
real-shape: $(STAMP)
	$(BIN)/python benchmarks/real_shape.py
	$(BIN)/mufin run --only 13 --publish

# A finished run's Predictor (what `mufin predict` runs), one product at a time at the run's shape, encoders excluded;
# notebook 13 tabulates it beside the scaling benchmark: make predictor-speed RUN=runs/<id>
predictor-speed: $(STAMP)
	@test -n "$(RUN)" || { echo "set RUN=runs/<id>, a run with notebooks 01-06 done"; exit 2; }
	$(BIN)/python benchmarks/predictor_speed.py --run $(RUN)
	$(BIN)/mufin run --only 13 --publish

# Module IV variants retrained on a finished run (REPRODUCE.md gives its time): make ranker-variants RUN=runs/<id>
ranker-variants: $(STAMP)
	@test -n "$(RUN)" || { echo "set RUN=runs/<id>, a run with notebooks 01-04 done"; exit 2; }
	$(BIN)/python benchmarks/ranker_variants.py --run $(RUN)
	$(BIN)/mufin run --only 11 --publish

clean-runs:
	rm -rf runs/
