#!/usr/bin/env bash
# Stands in for mpirun (vitscale-agent --mpirun) to measure the orchestration without Open MPI's
# start-up: drops mpirun's options (docs/agent.md lists what the agent passes) and runs the
# train command once, in place.
while [[ $# -gt 0 ]]; do
  case $1 in
    -np | -H) shift 2 ;;
    --allow-run-as-root | --oversubscribe) shift ;;
    *) break ;;
  esac
done
exec "$@"
