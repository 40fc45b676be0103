# vigil: `make demo` and `make test` are all a fresh machine needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv demo test lint firmware-check bench clean hil-labgrid vm32

all: test

$(BIN)/python:
	$(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip > /dev/null 2>&1 || true

$(STAMP): $(BIN)/python pyproject.toml
	@echo "installing vigil and its development tools into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/python -m pip install -q -e '.[dev,flash,ble,labgrid]' > $(VENV)/install.log 2>&1 || \
		{ tail -30 $(VENV)/install.log; exit 1; }
	@# labgrid's pyserial fork and pyserial share the `serial` package, and whichever pip
	@# wrote last wins; the fork (pyserial 3.5 + rfc2217 fixes ser2net needs) must.
	@$(BIN)/python -m pip install -q --force-reinstall --no-deps pyserial-labgrid >> $(VENV)/install.log 2>&1 || \
		{ tail -30 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/vigil emulate offender-approach

test: $(STAMP)
	$(BIN)/python -m pytest -n auto tests
	$(BIN)/python -m pytest -n auto hil/tests --vigil-board=emu --vigil-report=hil-report/emu
	$(BIN)/python -m pytest -n auto hil/tests --vigil-board=pty --vigil-report=hil-report/pty
	$(BIN)/python -m pytest -n auto hil/tests --vigil-board=hil/boards/emu-inject.toml --vigil-report=hil-report/emu-inject
	$(BIN)/python -m pytest -n auto hil/tests --vigil-board=ble --vigil-report=hil-report/ble
	$(MAKE) hil-labgrid

# Part of the HIL suite through a local labgrid farm (coordinator, exporter, ser2net);
# skipped with the reason when labgrid or ser2net is missing, except under CI.
hil-labgrid: $(STAMP)
	$(BIN)/python -m hil.labgrid_ci

lint: $(STAMP)
	$(BIN)/ruff check protocol firmware host hil tests bench
	$(BIN)/mypy

firmware-check: $(STAMP)
	$(BIN)/python -m tests.firmware_check

bench: $(STAMP)
	$(BIN)/python bench/codec.py
	$(BIN)/python bench/emulator.py
	$(BIN)/python bench/recording.py
	$(BIN)/python bench/report.py

# A 32-bit MicroPython unix port (the ESP32's word size) into ~/.cache/vigil, for heap figures
# (VIGIL_MICROPYTHON=path, bench/heap.py --micropython path). Not part of `make test`: it
# takes minutes and needs gcc-multilib.
vm32:
	bench/build_vm32.sh 32

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
