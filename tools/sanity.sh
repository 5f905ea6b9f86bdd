#!/usr/bin/env bash
# Run `ansible-test sanity` on a staged copy of the committed collection.
# ansible-test needs the working directory to be .../ansible_collections/kubepki/certs (a real
# directory, not a symlink), so the git-tracked files are copied there. The pip bootstrap script that
# ansible-test would download is replaced by tools/get_pip_shim.py (the network only reaches PyPI).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv_bin=${VENV_BIN:-$repo/.venv/bin}
stage_root=${SANITY_STAGE:-$repo/.cache/sanity}
stage=$stage_root/ansible_collections/kubepki/certs

# The pip version ansible-test bootstraps its test venvs with (24.2 for ansible-core 2.19).
pip_version=$("$venv_bin/python" -c '
from ansible_test._internal.python_requirements import get_venv_packages
class Python:
    version = "3.11"
print(get_venv_packages(Python())["pip"].replace(".", "_"))')
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
cp "$repo/tools/get_pip_shim.py" "$cache/get_pip_${pip_version}.py"

rm -rf "$stage_root"
mkdir -p "$stage"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$stage")
cd "$stage"
git init -q && git add -A && git -c user.email=ci@localhost -c user.name=ci commit -qm staged
export PATH=$venv_bin:$PATH
ansible-test sanity --venv --python 3.11 --color no "$@"
