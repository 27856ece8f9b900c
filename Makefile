# Quickstart: `make demo` and `make test`. Both create .venv when missing and install everything.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.omnimask-installed

.PHONY: install demo test bench clean

install: $(STAMP)

# torch/torchvision/torchaudio are pinned in pyproject.toml; pip takes them from local wheels where present.
# The example plugin package (examples/ringmask) is installed too: the test suite trains with it.
$(STAMP): pyproject.toml examples/ringmask/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]' -e examples/ringmask
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/omnimask demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/loader_image.py
	$(PY) benchmarks/loader_media.py

clean:
	rm -rf demo_out runs .pytest_cache
