#!/usr/bin/env bash
# make demo: start two sandbox clusters and etcd, run playbooks/demo.yml, stop them again.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$repo/.venv/bin
state=$repo/out/sandbox
cd "$repo"
mkdir -p out
"$bin/python" -m kubesandbox down --state "$state" >/dev/null 2>&1 || true
rm -rf "$state" out/store.db out/*.kubeconfig
"$bin/python" -m kubesandbox up --state "$state" --clusters 2
trap '"$bin/python" -m kubesandbox down --state "$state"' EXIT
printf 'localhost ansible_connection=local ansible_python_interpreter=%s\n' "$bin/python" > out/demo-inventory.ini
"$bin/ansible-playbook" -i out/demo-inventory.ini playbooks/demo.yml -e "kubepki_demo_state=$state"
echo
echo "kubeconfigs:" out/*.kubeconfig
