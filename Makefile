# Entry points. `make lab` and `make test` do all set-up on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PYTEST_ARGS ?= --durations=25

.PHONY: setup lab lab-down test checks test-py sanity lint molecule bench clean

setup:
	@bash scripts/setup.sh

lab: setup
	ansible-playbook playbooks/site.yml

lab-down: setup
	ansible-playbook playbooks/teardown.yml

test: setup checks test-py molecule

# ansible-test sanity and ansible-lint read the tree and share nothing (lint skips build/, where
# sanity builds its collection): both CPUs, each one's output kept together
checks: setup
	$(MAKE) --no-print-directory --output-sync=target -j2 sanity lint

# Two runs, each on both CPUs with a file per worker (a file's tests in order, on one worker).
# First the tests that share nothing with a lab (renders, models, the core on fixture maps, the
# datapath through BPF_PROG_TEST_RUN with each worker's pins under its own pid): quick, and they
# fail before any lab is built. Then the lab tests (a new test file lands there unless it is
# listed here): each file builds its labs under its own prefix, tests/control a slice per worker,
# so two files' labs run side by side; they spend most of their time waiting on playbooks and
# traffic, and two at a time took 987 s where one at a time took 1,774 (README, Tests).
PARALLEL_TESTS := tests/windows tests/core tests/datapath tests/test_topology_model.py \
	tests/test_services_filters.py tests/test_tier_route.py tests/test_report.py \
	tests/test_libvirt_provider.py tests/test_check_efw.py

test-py:
	python -m pytest $(PARALLEL_TESTS) -n 2 --dist loadfile $(PYTEST_ARGS)
	python -m pytest tests $(addprefix --ignore=,$(PARALLEL_TESTS)) -n 2 --dist loadfile $(PYTEST_ARGS)

# ansible-test sanity on library/, module_utils/ and connection_plugins/, through a collection
# generated in build/sanity (tests/sanity/run.py); installs nothing from the network.
sanity: setup
	python tests/sanity/run.py

lint:
	ansible-lint --profile production

# Every scenario under molecule/. Those in MOLECULE_SIDE_BY_SIDE build namespace labs under their
# own prefixes and mostly wait on playbooks: two at a time, each one's output kept together
# (default 84 s and tier 106 s alone on the Xeon). The others run alone afterwards: libvirt's
# TCG guests want both CPUs. A new scenario runs alone unless listed here.
MOLECULE_SCENARIOS := $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml))
MOLECULE_SIDE_BY_SIDE := default tier

molecule:
	$(MAKE) --no-print-directory --output-sync=target -j2 $(addprefix molecule-,$(MOLECULE_SIDE_BY_SIDE))
	set -e; for s in $(filter-out $(MOLECULE_SIDE_BY_SIDE),$(MOLECULE_SCENARIOS)); do molecule test -s $$s; done

molecule-%:
	molecule test -s $*

bench: setup
	python -m bench.run --out BENCHMARKS.md

clean: lab-down
	rm -rf build
