# Entry points. `make lab` and `make test` do all set-up on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PYTEST_ARGS ?=

.PHONY: setup lab lab-down test test-py sanity lint molecule bench clean

setup:
	@bash scripts/setup.sh

lab: setup
	ansible-playbook playbooks/site.yml

lab-down: setup
	ansible-playbook playbooks/teardown.yml

test: setup sanity test-py lint molecule

test-py:
	python -m pytest tests $(PYTEST_ARGS)

# ansible-test sanity on library/, module_utils/ and connection_plugins/, through a collection
# generated in build/sanity (tests/sanity/run.py); installs nothing from the network.
sanity: setup
	python tests/sanity/run.py

lint:
	ansible-lint --profile production

molecule:
	molecule test --all

bench: setup
	python -m bench.run --out BENCHMARKS.md

clean: lab-down
	rm -rf build
