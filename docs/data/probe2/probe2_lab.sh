#!/bin/bash
# usage: probe2_lab.sh TREE NAME SCENARIO
tree=$1; name=$2; sc=${3:-cap_300k}
d=/work/wt/probe2/docs/data/probe2
cd $tree
flock /tmp/bench.lock bash -c "echo \"$name ($tree) start \$(date -u +%T) load \$(cut -d' ' -f1 /proc/loadavg)\" >> $d/lab-log.txt; PYTHONPATH=$tree /work/main/.venv/bin/python bench/netlab.py --quick --no-janus --impaired-s 30 --only $sc --json $d/$name.json > $d/$name.txt 2>&1; echo \"$name end \$(date -u +%T) load \$(cut -d' ' -f1 /proc/loadavg) rc \$?\" >> $d/lab-log.txt"
