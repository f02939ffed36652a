#!/usr/bin/env bash
# Run the workflow at two commits on this machine and compare their results value for value.
#
#   .ci/compare_runs.sh OLD_REV NEW_REV [snakemake arguments...]
#   .ci/compare_runs.sh 074d7c6 HEAD --cores all                          # the default config
#   .ci/compare_runs.sh 074d7c6 HEAD --cores all --configfile config/smoke.yaml
#   .ci/compare_runs.sh 074d7c6 HEAD results/smoke/md/al2/frames.parquet --cores 1 --configfile config/smoke.yaml
# (targets go before --configfile, which takes every word after it as a config file)
#
# Each commit gets a git worktree beside this checkout (../compare-<rev>) and runs with its own
# library on PYTHONPATH, one after the other so they do not share the cores. Re-running resumes
# both runs (--rerun-incomplete). Then .ci/compare_results.py compares every Parquet file of
# the experiment (time columns aside) and exits non-zero on a difference.
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,13p' "$0"
    exit 2
fi
old_rev=$1
new_rev=$2
shift 2
repo=$(cd "$(dirname "$0")/.." && pwd)
experiment=$(cd "$repo" && python - "$@" <<'PY'
import sys

import yaml

args = sys.argv[1:]
files = ["config/config.yaml"]
if "--configfile" in args:
    i = args.index("--configfile") + 1
    while i < len(args) and args[i].endswith((".yaml", ".yml")):
        files.append(args[i])
        i += 1
name = None
for path in files:
    name = (yaml.safe_load(open(path)) or {}).get("experiment", name)
print(name)
PY
)
trees=()
for rev in "$old_rev" "$new_rev"; do
    sha=$(git -C "$repo" rev-parse --short "$rev")
    tree="$repo/../compare-$sha"
    [ -d "$tree" ] || git -C "$repo" worktree add --detach "$tree" "$sha" >/dev/null
    echo "== $rev ($sha) in $tree: snakemake $*"
    (cd "$tree" && PYTHONPATH="$tree/workflow" snakemake --rerun-incomplete "$@")
    trees+=("$tree")
done
python "$repo/.ci/compare_results.py" --all "${trees[0]}/results/$experiment" "${trees[1]}/results/$experiment"
