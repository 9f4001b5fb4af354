#!/usr/bin/env bash
# The agent of a local machine (what the SSM agent is on EC2). It announces itself online on
# the events descriptor, waits for one command file on stdin, and becomes the runner. It shuts
# down by itself at the machine's deadline if no command ever came, or when stdin closes
# (its launcher is gone).
#
#   local-agent.sh <deadline epoch ms> <instance id>      (with NCAP_EVENTS_FD set)
set -uo pipefail
deadline_ms=${1:?deadline epoch ms required}
instance_id=${2:?instance id required}
{ printf 'online\n' >&"${NCAP_EVENTS_FD:?}"; } 2>/dev/null
remaining_ms=$((deadline_ms - $(date +%s%3N)))
((remaining_ms > 0)) || exit 124
IFS= read -r -t "$((remaining_ms / 1000)).$(printf '%03d' $((remaining_ms % 1000)))" command_file || exit 124
[[ -f "$command_file" ]] || {
  printf 'local-agent: command file %s does not exist\n' "$command_file" >&2
  exit 2
}
# The command file is written by the platform with every value shell-quoted; it sets the
# runner's NCAP_* environment and the workflow argv NCAP_ARGV, and names the runner.
# shellcheck source=/dev/null
source "$command_file"
exec bash "$NCAP_RUNNER" --machine "$instance_id" -- "${NCAP_ARGV[@]}"
