#!/bin/bash
# quiet.sh COMMAND...: run a benchmark with the machine's other CPU-heavy processes paused.
#
# On a shared machine, other jobs (builds, test suites) steal cores mid-run. This pauses (SIGSTOP)
# every process outside this command's process group that uses more than 5% CPU, also ones
# started meanwhile (checked every 0.2 s), runs the command, then resumes (SIGCONT) them all.
# Use it for short runs only, and only on a machine where pausing others is acceptable:
#     setsid benchmarks/quiet.sh .venv-torch/bin/python benchmarks/bench.py ...
stopped=$(mktemp)
own_group=$(ps -o pgid= $$ | tr -d ' ')
pause_others() {
  while true; do
    ps -eo pid,pgid,pcpu,comm --no-headers |
      awk -v g="$own_group" '$2 != g && $3 > 5 && $4 !~ /^k/ {print $1}' |
      while read -r pid; do kill -STOP "$pid" 2>/dev/null && echo "$pid" >> "$stopped"; done
    sleep 0.2
  done
}
pause_others & watcher=$!
sleep 0.6
"$@"
status=$?
kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null
for pid in $(sort -u "$stopped"); do kill -CONT "$pid" 2>/dev/null; done
rm -f "$stopped"
exit $status
