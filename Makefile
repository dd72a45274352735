# Entry points. `make lab` and `make test` do all set-up on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PYTEST_ARGS ?=

.PHONY: setup lab lab-down test test-py lint molecule bench clean

setup:
	@bash scripts/setup.sh

lab: setup
	ansible-playbook playbooks/site.yml

lab-down: setup
	ansible-playbook playbooks/teardown.yml

test: setup test-py lint molecule

test-py:
	python -m pytest tests $(PYTEST_ARGS)

lint:
	ansible-lint --profile production

molecule:
	molecule test --all

bench: setup
	python -m bench.run --out BENCHMARKS.md

clean: lab-down
	rm -rf build
