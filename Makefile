# Two commands do everything on a fresh machine:
#   make demo   build the environment, export the shipped Spikformer to Loihi 2, verify it
#               spike for spike in Lava, and print its energy report
#   make test   build the environment and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
NC := $(PY) -m neurocompile.cli
BUNDLE ?= out/spikformer_digits
SAMPLES ?= 100

.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup_env.sh

demo: setup
	$(NC) export spikformer_digits --target loihi2 -o $(BUNDLE)
	$(NC) verify $(BUNDLE) --samples $(SAMPLES)
	$(NC) report $(BUNDLE) --samples $(SAMPLES)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf out .pytest_cache
