# clinrag developer commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.clinrag-setup-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
EXTRAS ?= all
DEMO_INDEX ?= demo-index

.PHONY: setup test demo bench lint typecheck clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned by the constraints file, so nothing pulls another build
	$(PIP) install -q -c constraints.txt torch==2.14.1
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS)]"
	# medspacy/PyRuSH declare spacy<3.8 but run on 3.8; their real needs are in the ner extra
	$(PIP) install -q -c constraints.txt --no-deps medspacy==1.3.1 PyRuSH==1.0.13
	@rm -f $(VENV)/.clinrag-setup-*
	@touch $@

test: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/pytest -q

demo: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/clinrag demo --index $(DEMO_INDEX)

bench: setup
	HF_HUB_OFFLINE=1 $(PY) bench/bench_ingest.py

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	@mkdir -p .typecheck && ln -sfn .. .typecheck/clinrag
	MYPYPATH=.typecheck $(VENV)/bin/mypy -p clinrag

clean:
	rm -rf $(DEMO_INDEX) .pytest_cache .mypy_cache .ruff_cache .typecheck
