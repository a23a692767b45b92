# The two commands of the README:
#   make demo   installs dnalift into .venv and scores the bundled demo data, drawing a logo
#   make test   installs dnalift with its test and workflow extras into .venv and runs every test (slow ones too)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test install install-test clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[test,workflow]'
	$(PIP) install -q -c constraints.txt --no-deps bpnet-lite
	touch $@

install: $(VENV)/.installed

demo: install
	bash data/run_demo.sh $(VENV)/bin

test: install
	$(PY) -m pytest -q -m 'slow or not slow'

clean:
	rm -rf $(VENV) results
