# fpgagen: every target creates and fills the virtualenv itself, so a fresh clone needs only python3, g++ and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BOARD ?= pynq_z2
# Test workers (pytest-xdist, one test file per worker at a time): the machine's cores, at most 4 (each worker
# holds torch and compiles C-sims; more would cost memory for little gain).
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

.PHONY: setup test test-all demo bench lint bitstream runtime-wheel docker-image clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools<81" wheel
	# Pin torch alone first: an unpinned resolve would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile

test-all: setup
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile -m "slow or not slow"

demo: setup
	$(BIN)/python -m fpgagen.train.demo --board $(BOARD)

bench: setup
	$(BIN)/python scripts/bench_startup.py
	$(BIN)/python scripts/bench_generator.py
	$(BIN)/python scripts/bench_csim.py
	test ! -f scripts/bench_fold.py || $(BIN)/python scripts/bench_fold.py
	$(BIN)/python scripts/bench_runtime.py
	$(BIN)/python scripts/bench_hw.py
	$(BIN)/python scripts/bench_graph.py
	$(BIN)/python scripts/bench_camera.py
	$(BIN)/python scripts/bench_debug.py
	$(BIN)/python scripts/bench_explore.py

# The PYNQ bitstream: the shipped face detector, or MODEL=my_net.onnx; USE_DOCKER=1 runs the Xilinx tools in the
# image from `make docker-image`. Without Vitis HLS/Vivado it stops after the verified HLS project and the Tcl (exit 2).
# The shipped detector takes CAMERA frames (its letterbox in the fabric); CAMERA=none gives the plain 416x416 build.
MODEL ?=
CAMERA ?= 640x480
USE_DOCKER ?= 0
bitstream: setup
	$(BIN)/python -m fpgagen.synth.cli --board $(BOARD) $(if $(MODEL),--model $(MODEL)) --camera $(or $(CAMERA),none) $(if $(filter 1,$(USE_DOCKER)),--docker)

# The board's runtime alone (fpgagen-runtime: asks only for numpy >= 1.21): dist/fpgagen_runtime-<version>-py3-none-any.whl;
# on the PYNQ board: pip3 install <that wheel>. `fpgagen bitstream` also puts it into deploy/.
runtime-wheel: setup
	$(BIN)/python -m fpgagen.synth.runtime_wheel -o dist

docker-image:
	@test -n "$(XILINX_INSTALLER)" || { echo "usage: make docker-image XILINX_INSTALLER=/path/to/the/extracted/installer (or its .tar.gz)"; exit 2; }
	docker/build_image.sh "$(XILINX_INSTALLER)"

lint: setup
	$(BIN)/ruff check fpgagen tests scripts

clean:
	rm -rf build .pytest_cache
