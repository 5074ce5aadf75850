# Developer entry points: `make demo` (the main job) and `make test`. Each sets the environment up on first use
# (scripts/setup.sh --if-needed: it returns at once when nothing that setup reads has changed); `make setup` runs
# every setup step explicitly.
VENV ?= $(or $(G2VLM_VENV),.venv)
export G2VLM_VENV := $(abspath $(VENV))
PY := $(G2VLM_VENV)/bin/python
# DDS stays on this machine's loopback and in its own domain unless the caller says otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export ROS_DOMAIN_ID ?= 42
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup env demo test bench clean

setup:  ## install everything into $(VENV), build msg/ and srv/, lay the package out for ros2 (idempotent)
	bash scripts/setup.sh

env:  ## set up on first use, or when what setup reads has changed; seconds otherwise
	@bash scripts/setup.sh --if-needed

demo: env  ## the main job: a synthetic scene bag through the node, spatial queries, map saved as PLY + JSON + PNG
	$(PY) -m g2vlm_ros.demo

test: env  ## the test suite (tests/)
	$(PY) -m pytest -q tests

bench: env  ## benchmark scripts: they print figures (not tests)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis
