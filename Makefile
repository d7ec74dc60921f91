# m4i: the two commands are `make run` (main job) and `make test` (tests). See README.md.
SHELL := /bin/bash
PROFILE ?= default
VENV = $(shell bash scripts/setup_env.sh | tail -n 1)

.PHONY: run test lint lab env assignments
env:
	@bash scripts/setup_env.sh

run:
	@venv="$(VENV)" && "$$venv/bin/python" -m m4i_utils run --profile $(PROFILE)

test:
	@venv="$(VENV)" && export M4I_PROFILE=smoke && \
	  "$$venv/bin/ruff" check m4i_utils tests && \
	  "$$venv/bin/ruff" format --check m4i_utils tests && \
	  "$$venv/bin/ruff" check --select F,I notebooks assignments/source && \
	  "$$venv/bin/nbstripout" --verify notebooks/*.ipynb assignments/source/*/*.ipynb && \
	  "$$venv/bin/python" -m pytest -q tests && \
	  "$$venv/bin/python" -m pytest -q --nbval-lax --nbval-cell-timeout=600 -p no:cacheprovider notebooks

lint:
	@venv="$(VENV)" && "$$venv/bin/ruff" check --fix m4i_utils tests && "$$venv/bin/ruff" format m4i_utils tests && \
	  "$$venv/bin/nbstripout" notebooks/*.ipynb assignments/source/*/*.ipynb

# the student versions of the course assignments (nbgrader generate_assignment) -> assignments/release/
assignments:
	@venv="$(VENV)" && "$$venv/bin/python" -m m4i_utils.teaching generate

lab:
	@venv="$(VENV)" && "$$venv/bin/jupyter" lab notebooks
