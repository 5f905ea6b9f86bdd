# shellcheck shell=bash
# Sourced by the scripts that run pytest outside make (dep_sets.sh, ansible_matrix.sh in a venv of their own,
# real_pass.sh): test_env PYTHON LABEL exports the environment the Makefile exports, for that venv's python, and
# says whether the real-cluster tests will run. Needs $repo (the checkout).
test_env() {
  local python=$1 label=$2 collections=$repo/.cache/collections site
  mkdir -p "$collections/ansible_collections/kubepki"
  test -e "$collections/ansible_collections/kubepki/certs" || ln -sfn "$repo" "$collections/ansible_collections/kubepki/certs"
  site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  export ANSIBLE_COLLECTIONS_PATH=$collections:$site
  export ANSIBLE_PYTHON_INTERPRETER=$python
  export PYTHONPATH=$repo/tests/harness:$repo/tests/sandbox:$collections
  export KUBEPKI_K8S_ASSETS=${KUBEPKI_K8S_ASSETS:-}
  unset KUBEPKI_TEST_CLUSTERS
  if [ -n "$KUBEPKI_K8S_ASSETS" ]; then
    echo "$label: real clusters from KUBEPKI_K8S_ASSETS=$KUBEPKI_K8S_ASSETS"
  else
    echo "$label: KUBEPKI_K8S_ASSETS not set, the real-cluster tests will be skipped"
  fi
}
