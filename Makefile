# The two commands the README promises: `make demo` and `make test`.
PYTHON ?= python3

.PHONY: demo test lint check

## demo: install maildesk and run the local demonstration desk
demo:
	PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install -q --disable-pip-version-check -e .
	maildesk demo

## test: prepare servers and packages, then lint, type-check and run the whole test suite
test:
	PYTHON=$(PYTHON) scripts/setup-test-env.sh
	$(PYTHON) -m ruff check maildesk tests
	$(PYTHON) -m mypy
	$(PYTHON) -m pytest -q

## lint: ruff only
lint:
	$(PYTHON) -m ruff check maildesk tests

## check: ruff and mypy, without the tests
check: lint
	$(PYTHON) -m mypy
