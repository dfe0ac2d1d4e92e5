#!/usr/bin/env bash
# Interleaved A/B of sleep(0) (bench's switch figures, ns) between two revisions:
#   tools/ab_switch.sh REV_A REV_B [PAIRS]     e.g. tools/ab_switch.sh a306ad3 main 5
# Each revision is checked out in a temporary worktree; the runs alternate A, B, A, B...
# so that a machine whose speed drifts affects both alike. Run on an idle machine.
set -euo pipefail
a=$1; b=$2; pairs=${3:-5}
root=$(git rev-parse --show-toplevel); py=$root/.venv/bin/python
tmp=$(mktemp -d); trap 'git -C "$root" worktree remove --force "$tmp/a"; git -C "$root" worktree remove --force "$tmp/b"; rm -rf "$tmp"' EXIT
git -C "$root" worktree add -q --detach "$tmp/a" "$a"
git -C "$root" worktree add -q --detach "$tmp/b" "$b"
echo "side: ns per sleep(0) with 2 tasks, with 1,000 tasks"
for _ in $(seq "$pairs"); do
  for side in a b; do
    dir=$tmp/$side
    (cd /tmp && PYTHONPATH=$dir "$py" -c "
import microthreads; assert microthreads.__file__.startswith('$dir')
from bench.peers import common, microthreads_peer as p
print('$side' == 'a' and '$a' or '$b', round(common.ns_per_sleep0(p.sleep0, 2, 0.5)),
      round(common.ns_per_sleep0(p.sleep0, 1000, 0.5)))")
  done
done
