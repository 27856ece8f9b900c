# Quickstart: `make demo` and `make test`. Both create .venv when missing and install everything.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.omnimask-installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

# torch/torchvision/torchaudio are pinned in pyproject.toml; pip takes them from local wheels where present.
# The example plugin package (examples/ringmask) is installed too: the test suite trains with it.
$(STAMP): pyproject.toml examples/ringmask/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]' -e examples/ringmask
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/omnimask demo

# Two test files at a time (each file's tests stay together, on one worker, with its fixtures): most of the
# suite waits on processes starting (Ray, its workers, CLI subprocesses), so two run in ~2/3 of the time.
test: $(STAMP) lint
	$(PY) -m pytest -q -n 2 --dist loadfile

# Lint (pyflakes, pycodestyle, import order) and the format check, configured in pyproject.toml: seconds, before the suite.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf demo_out runs .pytest_cache
