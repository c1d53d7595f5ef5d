# Two commands on a fresh clone:
#   make run DATA_DIR=path/to/data   set up .venv, train -> export -> predict check_deployed_model/test.json
#   make test                        set up .venv, run the tests
PYTHON ?= python3
PY := .venv/bin/python
DATA_DIR ?= data
JOB_DIR ?= output
ARGS ?=

.PHONY: setup run test
setup: .venv/.installed

.venv/.installed: requirements.txt
	$(PYTHON) -m venv .venv
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

run: setup
	$(PY) -m trainer.final_task --data-dir $(DATA_DIR) --job-dir $(JOB_DIR) $(ARGS)
	$(PY) -m check_deployed_model.predict --json-instances check_deployed_model/test.json \
	    --model-dir "$$(ls -td $(JOB_DIR)/exported_model* | head -n 1)"

test: setup
	$(PY) -m pytest
