# kubepki.certs developer commands. Every target creates .venv and installs the pinned
# dependencies itself (tests/requirements.txt), so a fresh clone needs nothing installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
COLLECTIONS := .cache/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/kubepki/certs
SITE = $(shell test -x $(PY) && $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export ANSIBLE_COLLECTIONS_PATH = $(CURDIR)/$(COLLECTIONS):$(SITE)
export ANSIBLE_PYTHON_INTERPRETER = $(CURDIR)/$(PY)
export PYTHONPATH := $(CURDIR)/tests/harness:$(CURDIR)/tests/sandbox:$(CURDIR)/$(COLLECTIONS)

STATE ?= $(CURDIR)/out/sandbox
CLUSTERS ?= 2
PYTEST_WORKERS ?= 2
PYTEST_OPTS = -n $(PYTEST_WORKERS) --dist loadfile -p no:cacheprovider -rs
# Real kube-apiserver/kube-controller-manager binaries for tests/functional/real (kubeharness.controlplane, tests/harness):
# ../shared/k8s beside the checkout when it exists, unless KUBEPKI_K8S_ASSETS is already set.
KUBEPKI_K8S_ASSETS ?= $(wildcard $(abspath $(CURDIR)/../shared/k8s))

.PHONY: help venv real-pass test pytest test-deps test-ansible test-artifact sanity lint changelog-lint build demo bench sandbox-up sandbox-down clean

help:
	@echo "make demo    - the main job end to end on two local sandbox clusters and real etcd"
	@echo "make test    - everything CI runs: pytest, the dependency sets, the ansible-core lines, the built artifact, sanity, ansible-lint"
	@echo "make test-deps - unit, real-cluster onboarding and MongoDB wire tests on the newest and the minimum dependencies"
	@echo "make test-ansible - the real-cluster onboarding on each ansible-core line that runs on Python 3.11 (2.16 to 2.19)"
	@echo "make test-artifact - the built tarball installed and run as users get it; the execution environment built from it"
	@echo "make build [DIST=dir] - the collection tarball (ansible-galaxy collection build) into dist/"
	@echo "make bench   - benchmarks against the tools operators use today"
	@echo "make sandbox-up STATE=<dir> CLUSTERS=<n> / make sandbox-down STATE=<dir>"

$(STAMP): tests/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade 'pip>=24'
	$(PY) -m pip install --quiet -r tests/requirements.txt
	touch $@

venv: $(STAMP) $(COLLECTION_LINK)

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

# Each part stops make test when it fails; what each part runs and its wall time: README.md, "Development".
# The real-cluster tests again on the oldest supported Kubernetes, v1.30 (tools/real_pass.sh): tests/functional/real
# and the onboarding flow on real clusters. ../shared/k8s-1.30 beside the checkout when it exists.
KUBEPKI_K8S_OLDEST ?= $(wildcard $(abspath $(CURDIR)/../shared/k8s-1.30))

real-pass: venv
	@if [ -n "$(KUBEPKI_K8S_OLDEST)" ]; then PYTEST_OPTS="$(PYTEST_OPTS)" tools/real_pass.sh "$(KUBEPKI_K8S_OLDEST)"; \
	else echo "real-pass: ../shared/k8s-1.30 not found, the real-cluster pass on Kubernetes 1.30 is skipped"; fi

test: venv
	$(MAKE) --no-print-directory pytest
	$(MAKE) --no-print-directory real-pass
	$(MAKE) --no-print-directory test-deps
	$(MAKE) --no-print-directory test-ansible
	$(MAKE) --no-print-directory test-artifact
	$(MAKE) --no-print-directory sanity
	$(MAKE) --no-print-directory lint

# make test-artifact's tests build venvs and the tarball of their own: make pytest leaves them out.
ARTIFACT_TESTS := tests/functional/test_built_artifact.py tests/functional/test_execution_environment.py
ARTIFACT_IGNORE := $(addprefix --ignore ,$(ARTIFACT_TESTS))

# With KUBEPKI_K8S_ASSETS the functional tests that use clusters run a second time, against real clusters
# (KUBEPKI_TEST_CLUSTERS=real; tests/functional/conftest.py); tests/functional/real runs on real clusters in the first pass.
pytest: venv
	@if [ -n "$(KUBEPKI_K8S_ASSETS)" ]; then echo "pytest: real-cluster tests use KUBEPKI_K8S_ASSETS=$(KUBEPKI_K8S_ASSETS)"; \
	else echo "pytest: KUBEPKI_K8S_ASSETS not set, real-cluster tests and the real-cluster pass will be skipped"; fi
	KUBEPKI_K8S_ASSETS="$(KUBEPKI_K8S_ASSETS)" $(PY) -m pytest tests/unit tests/functional $(ARTIFACT_IGNORE) $(PYTEST_OPTS)
	@if [ -n "$(KUBEPKI_K8S_ASSETS)" ]; then \
	  echo "pytest: the functional tests that use clusters, again on real clusters (KUBEPKI_TEST_CLUSTERS=real)"; \
	  KUBEPKI_K8S_ASSETS="$(KUBEPKI_K8S_ASSETS)" KUBEPKI_TEST_CLUSTERS=real $(PY) -m pytest tests/functional \
	    --ignore tests/functional/real --ignore tests/functional/sandbox $(ARTIFACT_IGNORE) $(PYTEST_OPTS); \
	fi

# The runtime dependencies (meta/ee-requirements.txt) at the newest releases and at exactly the declared minimums,
# each set in its own venv under .cache/ (tools/dep_sets.sh): tests/unit, the real-cluster onboarding and the MongoDB
# store over the wire. Both sets run even when the first fails; the versions each ran with are printed at the end
# (out/dep-sets/<set>.txt).
DEP_SETS ?= newest minimum
test-deps: $(COLLECTION_LINK)
	@status=0; for set in $(DEP_SETS); do \
	  PYTHON="$(PYTHON)" PYTEST_OPTS="$(PYTEST_OPTS)" KUBEPKI_K8S_ASSETS="$(KUBEPKI_K8S_ASSETS)" tools/dep_sets.sh $$set || status=1; \
	done; \
	echo "test-deps: the runtime dependencies each set ran with"; \
	for set in $(DEP_SETS); do cat out/dep-sets/$$set.txt 2>/dev/null || echo "# dep set $$set: no versions recorded"; done; \
	exit $$status

# The real-cluster onboarding (tests/functional/real/test_real_user_certificates.py) on every ansible-core release line
# that runs on Python 3.11 (2.20 and later need Python >= 3.12), each in its own venv under .cache/
# (tools/ansible_matrix.sh, pins in tests/requirements-ansible-<line>.txt); `make pytest` and sanity run the newest
# only. Every line runs even when one fails; the versions each ran with are printed at the end (out/ansible-matrix/).
ANSIBLE_LINES ?= 2.16 2.17 2.18 2.19
test-ansible: $(COLLECTION_LINK)
	@status=0; for line in $(ANSIBLE_LINES); do \
	  PYTHON="$(PYTHON)" KUBEPKI_K8S_ASSETS="$(KUBEPKI_K8S_ASSETS)" tools/ansible_matrix.sh $$line || status=1; \
	done; \
	echo "test-ansible: the versions each ansible-core line ran with"; \
	echo "| line | ansible-core | ansible (collections) | kubernetes.core | community.crypto | ansible.posix | result |"; \
	for line in $(ANSIBLE_LINES); do cat out/ansible-matrix/$$line.row 2>/dev/null || echo "| $$line | no versions recorded |"; done; \
	exit $$status

# The built collection as users get it: `make build`'s tarball installed offline into an empty collections path and
# its onboarding playbook run from outside the checkout with a fresh venv on real clusters, the shipped unit tests in
# the installed tree (tests/functional/test_built_artifact.py); the execution environment built from the tarball,
# `ansible-builder create` on meta/execution-environment.yml (tests/functional/test_execution_environment.py).
test-artifact: venv
	KUBEPKI_K8S_ASSETS="$(KUBEPKI_K8S_ASSETS)" $(PY) -m pytest $(ARTIFACT_TESTS) $(PYTEST_OPTS)

sanity: venv
	VENV_BIN=$(CURDIR)/$(BIN) tools/sanity.sh

lint: venv
	$(BIN)/ansible-lint
	$(BIN)/antsibull-changelog lint

DIST ?= dist
build: venv
	$(BIN)/ansible-galaxy collection build --force --output-path $(DIST)/

demo: venv
	tools/demo.sh

bench: venv
	$(PY) benchmarks/run.py

sandbox-up: venv
	$(PY) -m kubesandbox up --state $(STATE) --clusters $(CLUSTERS)

sandbox-down: venv
	$(PY) -m kubesandbox down --state $(STATE)

clean:
	rm -rf .cache out dist tests/output
