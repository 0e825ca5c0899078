# One-command entry points. `make run` and `make test` set up .venv on first use.
VENV    ?= .venv
PROFILE ?= config/config.yaml
BIN     := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: install run test lint dvc-yaml pull ui clean check-profile report

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install ldm with its dependencies

check-profile:
	@test -f "$(PROFILE)" || { echo "config profile $(PROFILE) does not exist (profiles: $$(ls config/*.yaml | tr '\n' ' '))" >&2; exit 2; }

run: check-profile install  ## run the whole pipeline with PROFILE (default: config/config.yaml)
	ldm validate $(PROFILE)
	snakemake --cores all --configfile $(PROFILE)

test: install  ## run the test suite
	pytest

lint: install  ## snakemake --lint
	snakemake --lint

dvc-yaml: check-profile install  ## regenerate dvc.yaml from the Snakemake DAG of PROFILE
	ldm dvc-yaml --configfile $(PROFILE)

report: install  ## report.html: every figure with its caption and the paper-vs-ours tables
	snakemake --configfile $(PROFILE) --report report.html

pull: check-profile install  ## fetch DVC-tracked outputs (dvc.lock) and record them as up to date for Snakemake
	dvc pull
	@dvc status --quiet || { echo "dvc status: the pulled outputs do not match this checkout's code/params (see 'dvc status'); not marking them up to date" >&2; exit 1; }
	snakemake --cores 1 --configfile $(PROFILE) --touch --forceall

ui: install  ## browse runs at http://127.0.0.1:5000
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/results/mlflow/mlflow.db --host 127.0.0.1 --port 5000

clean:  ## remove outputs (results/, data/ica, logs, Snakemake metadata); keeps .venv
	rm -rf results logs .snakemake data/ica data/kalman
