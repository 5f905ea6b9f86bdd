#!/usr/bin/env bash
# Run tests/unit, the real-cluster onboarding and the MongoDB store over the wire with one set of the collection's
# runtime dependencies, each set in a venv of its own under .cache/ (ignored by git, ansible-galaxy build and
# ansible-lint):
#
#   tools/dep_sets.sh newest    # the newest release of every runtime dependency (pip install -U)
#   tools/dep_sets.sh minimum   # exactly the minimums declared in meta/ee-requirements.txt (== each one)
#   tools/dep_sets.sh try NAME==VERSION ...   # the minimums with some pins changed, to look for a minimum
#                                               (.cache/venv-try)
#
# The runtime dependencies and their minimums are the `name>=version` lines of meta/ee-requirements.txt.
# The test tooling is tests/requirements-deps.txt, at the versions of tests/requirements.txt (used as
# constraints, without the runtime dependencies and so free for the set to choose), then
# tests/requirements-deps-nodeps.txt without dependencies (why: that file).
# The versions a set ran with are printed and written to out/dep-sets/<set>.txt.
#
# Environment: PYTHON (python3), PYTEST_OPTS (the Makefile's), KUBEPKI_K8S_ASSETS (real Kubernetes binaries;
# without it the real-cluster tests are skipped with that reason).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

set_name=${1:?usage: tools/dep_sets.sh newest|minimum|try NAME==VERSION ...}
shift
python=${PYTHON:-python3}
pytest_opts=${PYTEST_OPTS:--n 2 --dist loadfile -p no:cacheprovider -rs}
venv=${DEP_SET_VENV:-$repo/.cache/venv-$set_name}
report_dir=$repo/out/dep-sets
# shellcheck disable=SC2206  # DEP_SET_TESTS (a list of test paths) narrows a try
tests=(${DEP_SET_TESTS:-tests/unit tests/functional/real/test_real_user_certificates.py tests/functional/modules/test_store_mongodb_wire.py})

# name>=version lines of meta/ee-requirements.txt
mapfile -t declared < <(sed -n 's/^\([A-Za-z0-9_.-]*\)>=\([0-9][0-9A-Za-z.]*\)[[:space:]]*\(#.*\)\{0,1\}$/\1 \2/p' meta/ee-requirements.txt)
if [ "${#declared[@]}" -eq 0 ]; then
  echo "dep_sets: no name>=version line in meta/ee-requirements.txt" >&2
  exit 2
fi
names=()
minimums=()
for line in "${declared[@]}"; do
  names+=("${line%% *}")
  minimums+=("${line%% *}==${line##* }")
done

case $set_name in
  newest) wanted=(--upgrade "${names[@]}") ;;
  minimum) wanted=("${minimums[@]}") ;;
  try)
    if [ $# -eq 0 ]; then echo "dep_sets: try needs NAME==VERSION arguments" >&2; exit 2; fi
    wanted=("$@")
    for pin in "${minimums[@]}"; do
      given=$(printf '%s\n' "$@" | grep -ciE "^${pin%%==*}[^A-Za-z0-9_.-]" || true)
      [ "$given" -gt 0 ] || wanted+=("$pin")
    done ;;
  *) echo "dep_sets: unknown set $set_name (newest, minimum or try)" >&2; exit 2 ;;
esac

# tests/requirements.txt without the runtime dependencies, as constraints for the tooling
mkdir -p "$repo/.cache" "$report_dir"
report=$report_dir/$set_name.txt
rm -f "$report"  # no versions of an earlier run are reported for this one
constraints=$repo/.cache/dep-sets-constraints.txt
pattern=$(printf '%s|' "${names[@]}")
grep -viE "^(${pattern%|})[[:space:]]*==" tests/requirements.txt > "$constraints"

pip_install() {
  # --no-compile: Python compiles what the tests import, not all of the ansible package (most of the install time)
  # pip's warnings about find-links or index locations that lack a package are noise here
  "$venv/bin/python" -m pip install --quiet --no-compile "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

# The minimum (and a try) venv is kept while its inputs are unchanged; newest asks the index every time.
key=$( { "$python" -VV; cat tests/requirements-deps.txt tests/requirements-deps-nodeps.txt "$constraints"; printf '%s\n' "${wanted[@]}"; } \
  | sha256sum | cut -d' ' -f1)
stamp=$venv/.dep-set-installed
started=$SECONDS
if [ "$set_name" = newest ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$key" ]; then
  if [ "$set_name" != newest ] && [ -d "$venv" ]; then
    rm -rf "$venv"  # a changed pin: start clean rather than downgrade over the old set
  fi
  test -x "$venv/bin/python" || "$python" -m venv "$venv"
  pip_install --upgrade 'pip>=24'
  # one resolution of the tooling and the set, using pip's cache
  pip_install -r tests/requirements-deps.txt -c "$constraints" "${wanted[@]}"
  "$venv/bin/python" -m pip check >/dev/null || { "$venv/bin/python" -m pip check; exit 1; }
  pip_install --no-deps -r tests/requirements-deps-nodeps.txt -c "$constraints"
  echo "$key" > "$stamp"
fi
echo "dep set $set_name: venv ready in $((SECONDS - started)) s"

# The versions this set runs with, for the record.
{
  echo "# dep set $set_name: $("$venv/bin/python" -V 2>&1), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  "$venv/bin/python" -m pip freeze --all | grep -iE "^($(printf '%s|' "${names[@]}" | sed 's/[-_.]/[-_.]/g; s/|$//'))==" || true
} > "$report"
echo "dep set $set_name runs with:"
sed 's/^/  /' "$report"

# shellcheck source=tools/test_env.sh
. "$repo/tools/test_env.sh"
test_env "$venv/bin/python" "dep set $set_name"
started=$SECONDS
status=0
# shellcheck disable=SC2086  # PYTEST_OPTS is a list of options
"$venv/bin/python" -m pytest "${tests[@]}" $pytest_opts || status=$?
echo "dep set $set_name: pytest exited $status in $((SECONDS - started)) s with $(grep -v '^#' "$report" | tr '\n' ' ')"
exit $status
