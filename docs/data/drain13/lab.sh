#!/bin/bash
# One lab run per lock hold, alternating head (a git-archive snapshot of this branch,
# native build copied: no C changed) and base (/work/wt/base, main 5a6b972).
# usage: lab.sh HEADDIR "name:tree:scenarios" ...   (tree = head | base)
OUT=/work/wt/drain13/docs/data/drain13
HEAD=$1; shift
for spec in "$@"; do
  IFS=: read -r name tree scen <<< "$spec"
  dir=$HEAD; [ "$tree" = base ] && dir=/work/wt/base
  echo "$(date -u +%H:%M:%S) queued $name ($dir) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/lab-log.txt
  (cd $dir && PYTHONPATH=$dir flock /tmp/bench.lock sh -c "echo \"\$(date -u +%H:%M:%S) start $name load \$(cut -d' ' -f1-3 /proc/loadavg)\" >> $OUT/lab-log.txt; exec /work/main/.venv/bin/python bench/netlab.py --quick --no-janus --impaired-s 30 --only $scen --json $OUT/$name.json" > $OUT/$name.txt 2>&1)
  echo "$(date -u +%H:%M:%S) end $name rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/lab-log.txt
done
