# Two commands for a fresh machine:
#   make run    set up .venv, run the main suite (gpubench run --suite mixed-precision) and end
#               with the self-check: the run's training steps predicted from its own kernels
#   make test   set up .venv with the test extras and run the test suite
# and, for developers (not part of `make test`; see docs/mutation.md):
#   make mutation   mutation-test the core modules, each against its own tests (MODULES="timing dtypes"
#                   for some; ARGS="--max-children 1"); scores in build/mutation/summary.json
#
# TORCH picks the PyTorch build. With no NVIDIA driver it defaults to torch==2.13.0,
# which resolves to the CPU wheel on gpubench's test machines; with one it is a plain
# `torch`, i.e. the CUDA build from your index. Override as needed, e.g.
#   make run TORCH="torch==2.11.0"  or  make run TORCH_INDEX=<your wheel index URL>
PYTHON ?= python3
VENV ?= .venv
ARGS ?=
HAVE_NVIDIA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH ?= $(if $(HAVE_NVIDIA),torch,torch==2.13.0)
TORCH_INDEX ?=
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: run test test-fast bench venv clean mutation

$(PY):
	$(PYTHON) -m venv $(VENV)

# The stamp holds the torch spec too: changing TORCH reinstalls.
$(VENV)/.torch-$(subst =,_,$(subst >,_,$(subst <,_,$(subst ",,$(TORCH))))): | $(PY)
	$(PIP) install $(PIP_FLAGS) "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch-$(subst =,_,$(subst >,_,$(subst <,_,$(subst ",,$(TORCH)))))
	$(PIP) install $(PIP_FLAGS) -e ".[test]"
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/gpubench run --suite mixed-precision --selfcheck $(ARGS)

test: venv
	$(PY) -m pytest -q $(ARGS)

test-fast: venv
	$(PY) -m pytest -q -m "not slow" $(ARGS)

# mutmut, pinned in the "mutation" extra, on top of the test extras.
$(VENV)/.mutation: pyproject.toml $(VENV)/.installed
	$(PIP) install $(PIP_FLAGS) -e ".[test,mutation]"
	touch $@

MODULES ?=
mutation: venv $(VENV)/.mutation
	$(PY) scripts/mutation.py $(MODULES) $(ARGS)

bench: venv
	$(PY) -m pytest benchmarks -q --benchmark-json results/pytest-benchmark.json $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
