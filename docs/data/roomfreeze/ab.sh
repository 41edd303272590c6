#!/bin/bash
# A/B: the lab's room of 10 (1 Mbit/s), alternating trees, one run per lock hold.
# usage: ab.sh OUT_DIR N TREE=NAME... (e.g. old=/work/wt/roomfreeze-old main=/work/wt/base)
out=$1; n=$2; shift 2
for i in $(seq 1 $n); do
  for spec in "$@"; do
    name=${spec%%=*}; tree=${spec#*=}
    clip=""; [ "$name" = old ] && clip="--clip bounce"
    f=$out/room-$name-$i
    echo "$(date -u +%H:%M:%S) start $name $i load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out/ab.log
    (cd $tree && PYTHONPATH=$tree flock /tmp/bench.lock /work/main/.venv/bin/python bench/netlab.py --quick --no-janus --impaired-s 30 --only room10_1m $clip --json $f.json > $f.log 2>&1)
    echo "$(date -u +%H:%M:%S) end $name $i rc $? load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out/ab.log
  done
done
