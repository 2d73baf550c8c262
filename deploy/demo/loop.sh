#!/bin/sh
# The compose stack's `demo` service: the example job (job.py) again and again, so dashboards
# and alerts have live data as soon as the stack is up. Every DEMO_CRASH_EVERY-th job (default
# 120: about once every two hours) ends with a run that crashes (OndineRunFailed fires, routed
# to the demo receiver); the others skip DEMO_FAILURE_RATE of their rows.
set -u
i=0
while :; do
  i=$((i + 1))
  if [ $((i % ${DEMO_CRASH_EVERY:-120})) -eq 0 ]; then
    python /app/demo/job.py --rows "${DEMO_ROWS:-500}" --runs 2 --crash-last-after 100 || true
  else
    python /app/demo/job.py --rows "${DEMO_ROWS:-500}" --latency-ms "${DEMO_LATENCY_MS:-20}" \
      --failure-rate "${DEMO_FAILURE_RATE:-0.03}" --budget-usd "${DEMO_BUDGET_USD:-1}" || true
  fi
  sleep "${DEMO_PAUSE_SECONDS:-15}"
done
