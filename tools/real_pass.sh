#!/usr/bin/env bash
# The real-cluster tests on the oldest Kubernetes line the collection supports (v1.30), beside `make pytest`'s
# pass on v1.36: the binaries of ../shared/k8s-1.30 (or the directory given), started by
# tests/harness/kubeharness/controlplane.py exactly as the v1.36 ones are.
#
#   tools/real_pass.sh [ASSETS_DIR]     # default: $REAL_PASS_ASSETS, else ../shared/k8s-1.30 beside the checkout
#
# It runs, each pytest even when the one before failed:
#   1. tests/functional/real: the users' onboarding on two real clusters, the approver's security tests
#      (test_real_attacks.py), the roles (the controller-manager and apiserver started from the flags and files
#      they write, a real kubelet bootstrapping with fakecri from ../shared/k8s) and cluster_trust_bundle
#      (certificates.k8s.io/v1alpha1 behind the feature gate, and the message without it);
#   2. tests/functional/test_onboard_flow.py with KUBEPKI_TEST_CLUSTERS=real: the onboarding playbook flow.
# The Kubernetes version, the result of each step and the wall time are printed at the end and written to
# out/real-pass/<version>.txt. Without the directory everything is skipped with that reason (exit 0), as the
# real-cluster tests are without KUBEPKI_K8S_ASSETS.
#
# Environment: PY (the venv's python, default .venv/bin/python), PYTEST_OPTS (the Makefile's; default
# "-n 2 --dist loadfile -p no:cacheprovider -rs"), REAL_PASS_TESTS (the tests of step 1, default tests/functional/real),
# REAL_PASS_FLOW_TESTS (those of step 2, default tests/functional/test_onboard_flow.py; empty: no step 2).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
started=$SECONDS

assets=${1:-${REAL_PASS_ASSETS:-$repo/../shared/k8s-1.30}}
py=${PY:-$repo/.venv/bin/python}
pytest_opts=${PYTEST_OPTS:--n 2 --dist loadfile -p no:cacheprovider -rs}
# shellcheck disable=SC2206  # lists of test paths
real_tests=(${REAL_PASS_TESTS:-tests/functional/real})
# shellcheck disable=SC2206
flow_tests=(${REAL_PASS_FLOW_TESTS-tests/functional/test_onboard_flow.py})

if [ ! -d "$assets" ]; then
  echo "real_pass: $assets does not exist: the real-cluster pass on the oldest supported Kubernetes is skipped"
  exit 0
fi
assets=$(cd "$assets" && pwd)

# what make exports, for a run outside make
# shellcheck source=tools/test_env.sh
. "$repo/tools/test_env.sh"
export KUBEPKI_K8S_ASSETS=$assets
test_env "$py" real_pass

# unpacks and checks the binaries (SHA256SUMS) once, before the pytest workers, and names the version
if ! version=$("$py" -c 'import sys; from kubeharness import controlplane; print(controlplane.binary_version(sys.argv[1]))' "$assets"); then
  echo "real_pass: the binaries of $assets cannot be used (above)" >&2
  exit 1
fi
echo "real_pass: Kubernetes $version from $assets"

status=0
summary=()
step() {
  local label=$1
  shift
  local began=$SECONDS rc=0
  echo "real_pass: $label"
  # shellcheck disable=SC2086  # PYTEST_OPTS is a list of options
  "$@" $pytest_opts || rc=$?
  summary+=("$label: $([ "$rc" -eq 0 ] && echo passed || echo "FAILED (pytest exit $rc)") in $((SECONDS - began)) s")
  [ "$rc" -eq 0 ] || status=1
}

step "tests/functional/real on $version" "$py" -m pytest "${real_tests[@]}"
if [ "${#flow_tests[@]}" -gt 0 ]; then
  step "KUBEPKI_TEST_CLUSTERS=real ${flow_tests[*]} on $version" env KUBEPKI_TEST_CLUSTERS=real "$py" -m pytest "${flow_tests[@]}"
fi

mkdir -p out/real-pass
{
  echo "# tools/real_pass.sh: Kubernetes $version ($assets)"
  printf '%s\n' "${summary[@]}"
  echo "wall time: $((SECONDS - started)) s"
} | tee "out/real-pass/$version.txt"
exit $status
