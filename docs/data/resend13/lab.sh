#!/bin/bash
# Branch resend13 (docs/benchmarks.md): trees were git archives in /tmp with the native .so
# copied: r6 = c08dd10 (main 38e9782's SFU: six resends), rk = 352ea70 (main 9d1d8ed's SFU: six resends and the
# turned-down ask), rkd = rk + debug.patch.txt (a NACKDBG log line per video NACK), run by docs/data/stall13/lab.sh with OUT set to this directory (it
# copies the server log to server-NAME.log).  The comment below is the stall13 original's.
# Lab runs of one tree until STOP (HHMM UTC), one per lock hold, to catch a stall with
# packets arriving and no frame completing.  Trees: final = /tmp/stall13-tree (git archive
# of f8d3f51, native .so copied), dbg = /tmp/stall13-dbg (the same + debug.patch.txt:
# NACK and key frame request log lines, the server log copied to server-NAME.log).
# usage: lab.sh STOP FIRST LAST TREE_DIR NAME
OUT=/tmp/resend13-out
STOP=$1; FIRST=$2; LAST=$3; dir=$4; tree=$5
for k in $(seq "$FIRST" "$LAST"); do
  name=$tree-$k
  if [ "$(date -u +%H%M)" -ge "$STOP" ]; then echo "$(date -u +%H:%M:%S) stop: $STOP" >> $OUT/lab-log.txt; exit 0; fi
  (cd $dir && PYTHONPATH=$dir flock /tmp/bench.lock sh -c "echo \"\$(date -u +%H:%M:%S) start $name load \$(cut -d' ' -f1-3 /proc/loadavg)\" >> $OUT/lab-log.txt; /work/main/.venv/bin/python bench/netlab.py --quick --no-janus --impaired-s 30 --only cap_300k cap_1m room10_1m loss_5pct --json $OUT/netlab-$name.json; rc=\$?; echo \"\$(date -u +%H:%M:%S) end $name rc=\$rc load \$(cut -d' ' -f1-3 /proc/loadavg)\" >> $OUT/lab-log.txt" > $OUT/netlab-$name.txt 2>&1)
  sleep 3
done
