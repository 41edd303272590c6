#!/bin/bash
# One lab run per lock hold, alternating head (a git-archive snapshot of branch stale1m,
# native build copied: no C changed) and base (/work/wt/base, main 13cac4e).
# usage: lab.sh HEADDIR name:tree ...   (tree = head | base)
OUT=/work/wt/stale1m/docs/data/stale1m
HEAD=$1; shift
for spec in "$@"; do
  IFS=: read -r name tree <<< "$spec"
  dir=$HEAD; [ "$tree" = base ] && dir=/work/wt/base
  echo "$(date -u +%H:%M:%S) queued $name ($dir) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/lab-log.txt
  (cd $dir && PYTHONPATH=$dir flock /tmp/bench.lock sh -c "echo \"\$(date -u +%H:%M:%S) start $name load \$(cut -d' ' -f1-3 /proc/loadavg)\" >> $OUT/lab-log.txt; exec /work/main/.venv/bin/python bench/netlab.py --quick --no-janus --impaired-s 30 --only cap_1m room10_1m cap_300k --json $OUT/netlab-$name.json" > $OUT/netlab-$name.txt 2>&1)
  echo "$(date -u +%H:%M:%S) end $name rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/lab-log.txt
done
