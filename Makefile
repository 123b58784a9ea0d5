# The two commands the README promises: `make demo` and `make test`. Both work in the
# project's own virtual environment (.venv), created on first use.
PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python

.PHONY: demo test lint check catalogs

$(VENV_PYTHON):
	scripts/make-venv.sh $(PYTHON) $(VENV)

# The editable install follows the source tree, so it is redone only when the package's
# metadata (dependencies, entry points) changes.
$(VENV)/.maildesk-installed: $(VENV_PYTHON) setup.cfg pyproject.toml
	PIP_ROOT_USER_ACTION=ignore $(VENV_PYTHON) -m pip install -q --disable-pip-version-check -e .
	touch $@

## demo: install maildesk into .venv and run the local demonstration desk
demo: $(VENV)/.maildesk-installed
	$(VENV)/bin/maildesk demo

## test: prepare servers and packages, then lint, type-check and run the whole test suite
test: $(VENV_PYTHON)
	PYTHON=$(VENV_PYTHON) scripts/setup-test-env.sh
	$(VENV_PYTHON) -m ruff check maildesk tests
	$(VENV_PYTHON) -m mypy
	$(VENV_PYTHON) -m pytest -q -n auto

## lint: ruff only
lint: $(VENV_PYTHON)
	$(VENV_PYTHON) -m ruff check maildesk tests

## check: ruff and mypy, without the tests
check: lint
	$(VENV_PYTHON) -m mypy

## catalogs: compile maildesk/locale/*/*.po into maildesk.mo after editing a .po file
catalogs: $(VENV_PYTHON)
	$(VENV_PYTHON) -c "from maildesk.i18n import write_compiled_catalogs; write_compiled_catalogs()"
