# Developer entry points. `make setup` once, then `make demo` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# DDS stays on this machine's loopback and in its own domain unless the caller says otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export ROS_DOMAIN_ID ?= 42
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test bench clean

setup:  ## install everything into $(VENV) and build msg/ and srv/ (idempotent)
	bash scripts/setup.sh

demo:  ## the main job: a synthetic scene bag through the node, spatial queries, map saved as PLY + JSON + PNG
	$(PY) -m g2vlm_ros.demo

test:  ## the test suite (tests/)
	$(PY) -m pytest -q tests

bench:  ## benchmark scripts: they print figures (not tests)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis
