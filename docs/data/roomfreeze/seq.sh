#!/bin/bash
# Runs the given NAME:N specs in order, one lab run per lock hold (trees below).
out=/work/wt/roomfreeze/docs/data/roomfreeze
declare -A tree=([old]=/work/wt/roomfreeze-old [main]=/work/wt/base [head]=/work/wt/roomfreeze-head [resend]=/work/wt/roomfreeze-resend)
for spec in "$@"; do
  name=${spec%%:*}; i=${spec#*:}; t=${tree[$name]}
  clip=""; [ "$name" = old ] && clip="--clip bounce"
  f=$out/room-$name-$i
  echo "$(date -u +%H:%M:%S) start $name $i load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out/ab.log
  (cd $t && PYTHONPATH=$t flock /tmp/bench.lock /work/main/.venv/bin/python bench/netlab.py --quick --no-janus --impaired-s 30 --only room10_1m $clip --json $f.json > $f.log 2>&1)
  echo "$(date -u +%H:%M:%S) end $name $i rc $? load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out/ab.log
done
