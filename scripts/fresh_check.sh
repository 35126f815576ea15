#!/usr/bin/env bash
# What a new user does, checked: README's two commands in a fresh clone and a fresh virtual environment
# (the main job until it shows its prediction, then Ctrl-C (SIGINT), leaving nothing in the temp dir; then the
# test command), then a real, non-editable `pip install .` whose 2017 launchers serve a prediction from
# another working directory. Called by .ci/run; extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$repo/../shared" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ilastikbackend-fresh.XXXXXX")
cleanup() { [ -n "${job:-}" ] && kill -- "-$job" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ln -s "$shared" "$work/shared"
git clone -q "$repo" "$work/clone"
cd "$work/clone"

# The commands exactly as README.md shows them (the sh block after each marker).
readme_command() { awk -v tag="<!-- $1 -->" '$0==tag{f=1;next} f&&/^```sh/{g=1;next} g&&/^```/{exit} g{print}' README.md; }
main_job=$(readme_command main-job)
test_command=$(readme_command test-command)
[ -n "$main_job" ] && [ -n "$test_command" ] || { echo "README lost its main-job/test-command markers"; exit 1; }

python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
mkdir "$work/tmp"
export TMPDIR="$work/tmp"

echo "== README main job: $main_job"
set -m
bash -c "$main_job" >"$work/main-job.log" 2>&1 &
job=$!
set +m
for _ in $(seq 1 900); do
  grep -q "prediction of region" "$work/main-job.log" && break
  kill -0 "$job" 2>/dev/null || { cat "$work/main-job.log"; echo "the main job exited early"; exit 1; }
  sleep 1
done
grep -q "prediction of region" "$work/main-job.log" || { cat "$work/main-job.log"; echo "no prediction shown"; exit 1; }
sed -n '/prediction of region/,$p' "$work/main-job.log" | head -40
kill -INT -- "-$job"  # Ctrl-C
wait "$job" || true
job=
leftover=$(find "$work/tmp" -mindepth 1 -name 'ilastikbackend-*' | head -5)
[ -z "$leftover" ] || { echo "the main job left behind: $leftover"; exit 1; }

echo "== README test command: $test_command"
bash -c "$test_command $*"

echo "== pip install . (not editable), the 2017 launchers from another folder"
python -m pip install -q --no-deps --no-build-isolation --force-reinstall .
python -m pip show -f ilastikbackend >"$work/installed.txt"
grep -q "_core" "$work/installed.txt" || { echo "the compiled core is not in the installed package"; exit 1; }
(cd "$work" && python "$work/clone/scripts/check_installed.py" "$work/clone" "$shared/seed-data")
echo "fresh clone, fresh virtualenv: README's commands and the installed package work"
