# llmaccel: `make run` and `make test` work on a fresh machine with Python 3.11+ and a C++
# compiler. Both create .venv and install the pinned dependencies from PyPI on first use (and
# again whenever pyproject.toml changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
JOBS   ?= 2
# NumPy's BLAS threads fight pytest-xdist workers and the simulators for the cores: the small
# matrices here run 10-20x slower with them on a busy 2-core machine.
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: setup run test soak verilog synth bench docs clean help

help:
	@echo "make run      generate text with the tiny GPT (the main job; PROMPT=..., TOKENS=...)"
	@echo "make test     the whole test suite, ruff included"
	@echo "make soak     long differential fuzzing (not part of make test)"
	@echo "make verilog  write the generated Verilog to build/verilog"
	@echo "make synth    ECP5 synthesis and place-and-route (installs the fpga extra)"
	@echo "make bench    run the benchmarks recorded in docs/performance.md"
	@echo "make docs     regenerate docs/isa.md from hw/isa.py"
	@echo "make clean    remove build outputs (keeps .venv)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP)

PROMPT ?= def
TOKENS ?= 32

run: setup
	$(BIN)/llmaccel generate --prompt "$(PROMPT) " --tokens $(TOKENS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(JOBS) -p xdist -m "not slow"

soak: setup
	LLMACCEL_SOAK=1 $(BIN)/python -m pytest -q -n $(JOBS) -p xdist -m slow

verilog: setup
	$(BIN)/llmaccel verilog -o build/verilog

synth: setup
	$(BIN)/python -m pip install -q -e ".[dev,fpga]"
	$(BIN)/llmaccel synth --target ecp5

bench: setup
	$(BIN)/llmaccel bench gemm
	$(BIN)/llmaccel bench pim
	$(BIN)/llmaccel bench dma
	$(BIN)/llmaccel bench model
	$(BIN)/llmaccel bench e2e
	$(BIN)/llmaccel bench simspeed

docs: setup
	$(BIN)/llmaccel isadoc --write

clean:
	rm -rf build .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print | xargs rm -rf
