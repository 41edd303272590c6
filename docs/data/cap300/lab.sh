#!/bin/bash
# One lab run per lock hold, alternating head (a git-archive snapshot of branch cap300,
# native build copied: no C changed) and base (/work/wt/base, main 1b567f3).
# usage: lab.sh HEADDIR name:tree ...   (tree = head | base); no run starts after 17:10 UTC.
OUT=/work/wt/cap300/docs/data/cap300
HEAD=$1; shift
for spec in "$@"; do
  IFS=: read -r name tree <<< "$spec"
  if [ "$(date -u +%H%M)" -ge 1710 ]; then echo "$(date -u +%H:%M:%S) stop: 17:10" >> $OUT/lab-log.txt; break; fi
  dir=$HEAD; [ "$tree" = base ] && dir=/work/wt/base
  echo "$(date -u +%H:%M:%S) queued $name ($dir) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/lab-log.txt
  (cd $dir && PYTHONPATH=$dir flock /tmp/bench.lock sh -c "echo \"\$(date -u +%H:%M:%S) start $name load \$(cut -d' ' -f1-3 /proc/loadavg)\" >> $OUT/lab-log.txt; /work/main/.venv/bin/python bench/netlab.py --quick --no-janus --impaired-s 30 --only cap_300k cap_1m --json $OUT/netlab-$name.json; rc=\$?; echo \"\$(date -u +%H:%M:%S) end $name rc=\$rc load \$(cut -d' ' -f1-3 /proc/loadavg)\" >> $OUT/lab-log.txt" > $OUT/netlab-$name.txt 2>&1)
  sleep 8  # let another helper waiting on the lock take it first
done
