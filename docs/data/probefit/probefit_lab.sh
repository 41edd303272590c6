#!/bin/bash
# Lab A/B, alternating head (a git-archive snapshot of the branch, native copied) and base
# (/work/wt/base, 13cac4e), one run per lock hold.  Usage: probefit_lab.sh head-1 base-1 ...
OUT=/work/wt/probefit/docs/data/probefit
for name in "$@"; do
  case $name in head*) tree=/tmp/probefit-head ;; base*) tree=/work/wt/base ;; esac
  echo "$name $tree start $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)" >> $OUT/lab-log.txt
  (cd $tree && PYTHONPATH=$tree flock /tmp/bench.lock /work/main/.venv/bin/python bench/netlab.py \
     --quick --no-janus --impaired-s 30 --only cap_300k cap_1m --json $OUT/netlab-$name.json \
     > $OUT/netlab-$name.log 2>&1)
  echo "$name end $(date -u +%T) rc $? load $(cut -d' ' -f1 /proc/loadavg)" >> $OUT/lab-log.txt
done
