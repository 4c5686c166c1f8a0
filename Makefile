# Two commands: `make run` (set up, then run a video through the pipeline)
# and `make test` (set up, lint, then run the whole test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VIDEO ?= ../shared/media/vid.mp4
ARGS ?=

.PHONY: setup run lint test bench clean

$(VENV)/.installed: pyproject.toml Makefile clients/node/package.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build from the local wheel; an unpinned torch would pull CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[blazepose,hmr2,dev]'
	# --no-deps: mediapipe's declared deps add opencv-contrib-python (a second cv2) and sounddevice.
	$(BIN)/pip install -q --no-deps "mediapipe>=1.2.3,<2"
	cd clients/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/python launch.py $(VIDEO) $(ARGS)

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) clients/node/node_modules
