#!/usr/bin/env bash
# Run the real-cluster onboarding (tests/functional/real/test_real_user_certificates.py: playbooks/onboard_users.yml
# on two real clusters) with one ansible-core release line, in a venv of its own under .cache/ (ignored by git,
# ansible-galaxy build and ansible-lint):
#
#   tools/ansible_matrix.sh 2.16     # .cache/venv-ansible-2.16, pins of tests/requirements-ansible-2.16.txt
#
# The lines are those that run on Python 3.11 (2.16 to 2.19; 2.20 and later need Python >= 3.12). Each line's
# tests/requirements-ansible-<line>.txt pins ansible-core (the newest patch) and the `ansible` package that brings
# the collections the tests use (kubernetes.core, community.crypto, ansible.posix); `ansible` is installed without
# its dependencies, so a line may take the collections of a newer bundle (why: that file). The test tooling is
# tests/requirements-ansible.txt and the runtime dependencies meta/ee-requirements.txt, both at the versions of
# tests/requirements.txt (constraints, without ansible, ansible-core and resolvelib), as `make pytest` has them.
# Sanity (ansible-test) runs on the newest line only: `make sanity`.
#
# The versions a line ran with are printed and written to out/ansible-matrix/<line>.txt, its result to
# out/ansible-matrix/<line>.result and both as a row of make test-ansible's table to out/ansible-matrix/<line>.row.
#
# Environment: PYTHON (python3), PYTEST_OPTS (default "-p no:cacheprovider -rs": one test file, so no xdist),
# KUBEPKI_K8S_ASSETS (real Kubernetes binaries; without it the tests are skipped with that reason),
# ANSIBLE_MATRIX_TESTS (the test paths, default tests/functional/real/test_real_user_certificates.py).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

line=${1:?usage: tools/ansible_matrix.sh LINE (2.16, 2.17, 2.18 or 2.19)}
pins=tests/requirements-ansible-$line.txt
if [ ! -f "$pins" ]; then
  lines=(tests/requirements-ansible-*.txt)
  lines=("${lines[@]#tests/requirements-ansible-}")
  echo "ansible_matrix: no $pins (the lines: ${lines[*]%.txt})" >&2
  exit 2
fi
python=${PYTHON:-python3}
pytest_opts=${PYTEST_OPTS:--p no:cacheprovider -rs}
venv=$repo/.cache/venv-ansible-$line
report_dir=$repo/out/ansible-matrix
# shellcheck disable=SC2206  # ANSIBLE_MATRIX_TESTS is a list of test paths
tests=(${ANSIBLE_MATRIX_TESTS:-tests/functional/real/test_real_user_certificates.py})

# the pins: ansible-core (with its dependencies) and the ansible package (without)
core_pin=$(grep -E '^ansible-core==' "$pins" | sed 's/[[:space:]]*#.*//')
bundle_pin=$(grep -E '^ansible==' "$pins" | sed 's/[[:space:]]*#.*//')
if [ -z "$core_pin" ] || [ -z "$bundle_pin" ]; then
  echo "ansible_matrix: $pins must pin ansible-core==X and ansible==Y" >&2
  exit 2
fi

mkdir -p "$repo/.cache" "$report_dir"
report=$report_dir/$line.txt
rm -f "$report" "$report_dir/$line.result" "$report_dir/$line.row"
constraints=$repo/.cache/ansible-matrix-constraints.txt
grep -viE '^(ansible|ansible-core|resolvelib)[[:space:]]*==' tests/requirements.txt > "$constraints"

pip_install() {
  # --no-compile: Python compiles what the tests import, not all of the ansible package (most of the install time)
  # pip's warnings about find-links or index locations that lack a package are noise here
  "$venv/bin/python" -m pip install --quiet --no-compile "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

# The venv is kept while its inputs are unchanged: every version is pinned.
key=$( { "$python" -VV; cat tests/requirements-ansible.txt meta/ee-requirements.txt "$pins" "$constraints"; } | sha256sum | cut -d' ' -f1)
stamp=$venv/.ansible-matrix-installed
started=$SECONDS
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$key" ]; then
  rm -rf "$venv"  # a changed pin: start clean rather than downgrade over the old line
  "$python" -m venv "$venv"
  pip_install --upgrade 'pip>=24'
  pip_install -r tests/requirements-ansible.txt -r meta/ee-requirements.txt -c "$constraints" "$core_pin"
  pip_install --no-deps "$bundle_pin"
  # the one conflict allowed: the ansible package's own ansible-core range, when the line borrows a newer bundle
  problems=$("$venv/bin/python" -m pip check 2>&1 | grep -viE '^ansible [0-9.]+ has requirement ansible-core' | grep -v '^No broken' || true)
  if [ -n "$problems" ]; then
    echo "$problems" >&2
    exit 1
  fi
  echo "$key" > "$stamp"
fi
echo "ansible line $line: venv ready in $((SECONDS - started)) s"

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# The versions this line runs with, for the record.
{
  echo "# ansible line $line: $("$venv/bin/python" -V 2>&1), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  "$venv/bin/python" -m pip freeze --all | grep -iE '^(ansible-core|ansible|kubernetes|cryptography|pymongo|etcd3gw|pyyaml|urllib3|jinja2|resolvelib)==' || true
  for name in kubernetes/core community/crypto ansible/posix; do
    "$venv/bin/python" - "$site/ansible_collections/$name" <<'PY'
import json, os, re, sys
path = sys.argv[1]
with open(os.path.join(path, "MANIFEST.json")) as handle:
    info = json.load(handle)["collection_info"]
with open(os.path.join(path, "meta", "runtime.yml")) as handle:
    requires = re.search(r"requires_ansible:\s*['\"]?([^'\"\n]+)", handle.read())
print("%s.%s==%s (requires_ansible %s)" % (info["namespace"], info["name"], info["version"], requires.group(1) if requires else "?"))
PY
  done
} > "$report"
echo "ansible line $line runs with:"
sed 's/^/  /' "$report"

# shellcheck source=tools/test_env.sh
. "$repo/tools/test_env.sh"
test_env "$venv/bin/python" "ansible line $line"
version_text=$("$venv/bin/ansible" --version)  # not piped into head: ansible fails on a closed pipe
echo "${version_text%%$'\n'*}"
started=$SECONDS
status=0
# shellcheck disable=SC2086  # PYTEST_OPTS is a list of options
"$venv/bin/python" -m pytest "${tests[@]}" $pytest_opts || status=$?
version_of() { sed -n "s/^$1==\([^ ]*\).*/\1/p" "$report"; }
result=$([ "$status" -eq 0 ] && echo passed || echo "FAILED (pytest exit $status)")
echo "ansible-core $(version_of ansible-core): $result in $((SECONDS - started)) s" | tee "$report_dir/$line.result"
echo "| $line | $(version_of ansible-core) | $(version_of ansible) | $(version_of 'kubernetes\.core') |" \
  "$(version_of 'community\.crypto') | $(version_of 'ansible\.posix') | $result in $((SECONDS - started)) s |" > "$report_dir/$line.row"
exit $status
