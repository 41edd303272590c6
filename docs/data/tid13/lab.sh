#!/bin/bash
# One lab run per lock hold, taking the trees in turn, until STOP (HHMM UTC).
# Trees: head = /tmp/tid13-head (a git-archive snapshot of tid13 276c708, native build
# copied), head2 = /tmp/tid13-head2 (be1568d), head3 = /tmp/tid13-head3 (4a706b0),
# head4 = /tmp/tid13-head4 (8933871), head5 = /tmp/tid13-head5 (c457fd5),
# base = /tmp/main-base (main 47f1fac).
# usage: lab.sh STOP FIRST LAST TREE...   (runs TREE-K for K = FIRST..LAST, trees in turn)
OUT=/work/wt/tid13/docs/data/tid13
STOP=$1; FIRST=$2; LAST=$3; shift 3
for k in $(seq "$FIRST" "$LAST"); do
  for tree in "$@"; do
    name=$tree-$k
    if [ "$(date -u +%H%M)" -ge "$STOP" ]; then echo "$(date -u +%H:%M:%S) stop: $STOP" >> $OUT/lab-log.txt; exit 0; fi
    case $tree in head) dir=/tmp/tid13-head;; head2) dir=/tmp/tid13-head2;; head3) dir=/tmp/tid13-head3;; head4) dir=/tmp/tid13-head4;; head5) dir=/tmp/tid13-head5;; base) dir=/tmp/main-base;; esac
    (cd $dir && PYTHONPATH=$dir flock /tmp/bench.lock sh -c "echo \"\$(date -u +%H:%M:%S) start $name load \$(cut -d' ' -f1-3 /proc/loadavg)\" >> $OUT/lab-log.txt; /work/main/.venv/bin/python bench/netlab.py --quick --no-janus --impaired-s 30 --only cap_300k cap_1m room10_1m loss_5pct --json $OUT/netlab-$name.json; rc=\$?; echo \"\$(date -u +%H:%M:%S) end $name rc=\$rc load \$(cut -d' ' -f1-3 /proc/loadavg)\" >> $OUT/lab-log.txt" > $OUT/netlab-$name.txt 2>&1)
    sleep 3
  done
done
