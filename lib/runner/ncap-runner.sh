#!/usr/bin/env bash
# NeuroCAAS-TS instance-side runner: the one runner contract for every backend.
#
#   ncap-runner.sh [--machine <instance id>] -- <workflow argv...>
#
# (--machine only labels the process, so a machine can be recognised in a process listing.)
#
# It fetches the dataset and the (normalised, JSON) config into a scratch folder, runs the
# workflow argv in NCAP_WORKDIR with the NCAP_* variables until the deadline, streams
# stdout+stderr to the job's log, copies NCAP_OUTPUT_DIR to process_results/ (create-only),
# and writes the dataset status. The store is a folder tree (local backend) or S3 (aws).
#
# Required environment:
#   NCAP_STORE            "local:<bucket folder>" or "s3://<bucket>"
#   NCAP_JOB_ID NCAP_ANALYSIS NCAP_DATASET
#   NCAP_INPUT_KEY        dataset key in the bucket
#   NCAP_CONFIG_KEY       key of the config as JSON (written by the job manager)
#   NCAP_LOG_KEY NCAP_STATUS_KEY NCAP_RESULTS_PREFIX
#   NCAP_DEADLINE_EPOCH_MS  the workflow is stopped here, whatever happens
#   NCAP_WORKDIR          folder the workflow runs in (its environment)
#   NCAP_SCRATCH          empty scratch folder for this dataset
# Optional:
#   NCAP_INSTANCE_ID NCAP_INSTANCE_TYPE   recorded in the status
#   NCAP_REPLICA NCAP_SEED   ensemble replicas: passed on to the workflow as they are
#   NCAP_REPLICAS_PREFIX  ensemble consensus: every object under this prefix is fetched into a
#                         folder the workflow finds in NCAP_REPLICAS_DIR
#   NCAP_EVENTS_FD        file descriptor for progress events (local backend)
#   NCAP_LIFELINE=stdin   stdin closing means the launcher is gone: stop (local backend)
#   NCAP_LOG_SHIP_SECONDS how often the log is shipped to S3 (default 5)
#   NCAP_KILL_GRACE_SECONDS  SIGTERM -> SIGKILL grace (default 2)
#   NCAP_SHUTDOWN=1       power the machine off a minute after it is done (aws: the instance
#                         terminates); the delay lets the SSM agent report the command first
set -uo pipefail

die() {
  printf 'ncap-runner: %s\n' "$*" >&2
  exit 2
}

if [[ "${1:-}" == "--machine" ]]; then shift 2; fi
[[ "${1:-}" == "--" ]] || die "usage: ncap-runner.sh [--machine <id>] -- <workflow argv...>"
shift
(($# > 0)) || die "no workflow command given after --"
for name in NCAP_STORE NCAP_JOB_ID NCAP_ANALYSIS NCAP_DATASET NCAP_INPUT_KEY NCAP_CONFIG_KEY NCAP_LOG_KEY \
  NCAP_STATUS_KEY NCAP_RESULTS_PREFIX NCAP_DEADLINE_EPOCH_MS NCAP_WORKDIR NCAP_SCRATCH; do
  [[ -n "${!name:-}" ]] || die "environment variable $name is required"
done
[[ "$NCAP_DEADLINE_EPOCH_MS" =~ ^[0-9]+$ ]] || die "NCAP_DEADLINE_EPOCH_MS must be epoch milliseconds, got '$NCAP_DEADLINE_EPOCH_MS'"

grace="${NCAP_KILL_GRACE_SECONDS:-2}"
scratch="$NCAP_SCRATCH"
workflow_pid=""
started_ms=""

# Builtins only (no forks): many machines share a small host on the local backend.
now_ms() {
  local us=${EPOCHREALTIME/[.,]/}
  REPLY=${us:0:${#us}-3}
}
iso_of() { # epoch ms -> REPLY as ISO-8601 UTC
  local TZ=UTC0
  printf -v REPLY '%(%Y-%m-%dT%H:%M:%S)T.%03dZ' "$(($1 / 1000))" "$(($1 % 1000))"
}

emit() {
  if [[ -n "${NCAP_EVENTS_FD:-}" ]]; then { printf '%s\n' "$*" >&"$NCAP_EVENTS_FD"; } 2>/dev/null || true; fi
}

# ---- store: a folder tree or S3 -------------------------------------------------------------
case "$NCAP_STORE" in
  local:*) store_kind=local store_root="${NCAP_STORE#local:}" ;;
  s3://*) store_kind=s3 store_root="${NCAP_STORE#s3://}" ;;
  *) die "NCAP_STORE must be local:<folder> or s3://<bucket>, got '$NCAP_STORE'" ;;
esac

store_get() { # key dest
  if [[ $store_kind == local ]]; then cp -- "$store_root/$1" "$2"; else aws s3 cp --only-show-errors "s3://$store_root/$1" "$2"; fi
}

store_put() { # file key (replaces: status and log)
  if [[ $store_kind == local ]]; then
    local target="$store_root/$2"
    mkdir -p -- "${target%/*}" && cp -- "$1" "$target.ncap-part" && mv -f -- "$target.ncap-part" "$target"
  else
    aws s3 cp --only-show-errors "$1" "s3://$store_root/$2"
  fi
}

store_create() { # file key (never replaces: results)
  if [[ $store_kind == local ]]; then
    local target="$store_root/$2"
    [[ -d "${target%/*}" ]] || mkdir -p -- "${target%/*}"
    cp -- "$1" "$target.ncap-part" && ln -- "$target.ncap-part" "$target"
    local status=$?
    rm -f -- "$target.ncap-part"
    return $status
  else
    aws s3api put-object --bucket "$store_root" --key "$2" --body "$1" --if-none-match '*' >/dev/null
  fi
}

# ---- status document ------------------------------------------------------------------------
json_string() { # value -> REPLY as a JSON string literal
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/}
  s=${s//$'\n'/\\n}
  s=${s//[$'\001'-$'\010'$'\013'$'\014'$'\016'-$'\037']/}
  REPLY="\"$s\""
}

write_status() { # status exitCode(or "") finishedMs(or "") [failureKind failureDetail]
  local status=$1 exit_code=$2 finished_ms=$3 failure_kind=${4:-} failure_detail=${5:-} tail_json="" line doc
  if [[ -s "$live_log" ]]; then
    while IFS= read -r line; do
      [[ -n "${line//[[:space:]]/}" ]] || continue
      json_string "${line:0:400}"
      tail_json+="${tail_json:+, }$REPLY"
    done < <(tail -n 20 -- "$live_log")
  fi
  doc=$'{\n  "schemaVersion": 1'
  local field
  for field in jobId:NCAP_JOB_ID analysis:NCAP_ANALYSIS dataset:NCAP_DATASET inputKey:NCAP_INPUT_KEY \
    instanceId:NCAP_INSTANCE_ID instanceType:NCAP_INSTANCE_TYPE logKey:NCAP_LOG_KEY resultsPrefix:NCAP_RESULTS_PREFIX; do
    local var=${field#*:}
    [[ -n "${!var:-}" ]] || continue
    json_string "${!var}"
    doc+=$',\n  "'"${field%%:*}"'": '"$REPLY"
  done
  doc+=$',\n  "status": "'"$status"'"'
  if [[ -n "$failure_kind" ]]; then
    json_string "$failure_detail"
    doc+=$',\n  "reason": '"$REPLY"$',\n  "failure": {"kind": "'"$failure_kind"'", "detail": '"$REPLY"'}'
  fi
  [[ -n "$exit_code" ]] && doc+=$',\n  "exitCode": '"$exit_code"
  iso_of "$started_ms"
  doc+=$',\n  "times": {"started": "'"$REPLY"'"'
  if [[ -n "$finished_ms" ]]; then
    iso_of "$finished_ms"
    doc+=', "finished": "'"$REPLY"'"'
  fi
  iso_of "$NCAP_DEADLINE_EPOCH_MS"
  doc+=', "deadline": "'"$REPLY"'"}'
  now_ms
  iso_of "$REPLY"
  doc+=$',\n  "logTail": ['"$tail_json"$'],\n  "updatedAt": "'"$REPLY"$'"\n}\n'
  if [[ $store_kind == local ]]; then
    # Written beside its final name and renamed over it: readers never see half a document.
    local target="$store_root/$NCAP_STATUS_KEY"
    [[ -d "${target%/*}" ]] || mkdir -p -- "${target%/*}"
    printf '%s' "$doc" >"$target.ncap-part" && mv -f -- "$target.ncap-part" "$target"
  else
    printf '%s' "$doc" >"$scratch/status.json" && store_put "$scratch/status.json" "$NCAP_STATUS_KEY"
  fi || printf 'ncap-runner: could not write the status\n' >&2
}

# ---- stopping ---------------------------------------------------------------------------------
stop_workflow() {
  [[ -n "$workflow_pid" ]] || return 0
  kill -TERM -- "-$workflow_pid" 2>/dev/null || return 0
  local waited=0
  while kill -0 -- "-$workflow_pid" 2>/dev/null && ((waited < grace * 10)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  kill -KILL -- "-$workflow_pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # invoked by the trap below
on_signal() {
  printf 'ncap-runner: stopped by signal; stopping the workflow\n' >&2
  stop_workflow
  exit 143
}
trap on_signal TERM INT HUP

# ---- local backend lifeline: when the launcher goes away, stdin closes and we stop ---------
lifeline_pid=""
if [[ "${NCAP_LIFELINE:-}" == stdin ]]; then
  # The explicit <&0: without it bash gives background jobs /dev/null as stdin.
  (
    while IFS= read -r _; do :; done
    kill -TERM $$ 2>/dev/null
  ) <&0 &
  lifeline_pid=$!
fi

# ---- run ------------------------------------------------------------------------------------
now_ms
started_ms=$REPLY
mkdir -p -- "$scratch/input" "$scratch/output" || die "cannot create $scratch"
# Where the log goes while the workflow runs: straight into the bucket folder (local), or a
# scratch file shipped every few seconds (s3).
if [[ $store_kind == local ]]; then
  live_log="$store_root/$NCAP_LOG_KEY"
  mkdir -p -- "${live_log%/*}"
else
  live_log="$scratch/workflow.log"
fi
: >>"$live_log"
write_status RUNNING "" ""
emit "started $started_ms"

input_path="$scratch/input/$(basename -- "$NCAP_INPUT_KEY")"
config_path="$scratch/config.json"
prepare_error=""
store_get "$NCAP_INPUT_KEY" "$input_path" 2>>"$live_log" || prepare_error="could not fetch the dataset $NCAP_INPUT_KEY"
store_get "$NCAP_CONFIG_KEY" "$config_path" 2>>"$live_log" || prepare_error="could not fetch the config $NCAP_CONFIG_KEY"
replicas_dir=""
if [[ -n "${NCAP_REPLICAS_PREFIX:-}" ]]; then
  replicas_dir="$scratch/replicas"
  mkdir -p -- "$replicas_dir"
  if [[ $store_kind == local ]]; then
    { [[ ! -d "$store_root/$NCAP_REPLICAS_PREFIX" ]] || cp -R -- "$store_root/$NCAP_REPLICAS_PREFIX." "$replicas_dir/"; } 2>>"$live_log"
  else
    aws s3 cp --recursive --only-show-errors "s3://$store_root/$NCAP_REPLICAS_PREFIX" "$replicas_dir" 2>>"$live_log"
  fi || prepare_error="could not fetch the replicas' results under $NCAP_REPLICAS_PREFIX"
fi

timed_out=0
exit_code=""
failure_kind=""
failure_detail=""
if [[ -n "$prepare_error" ]]; then
  failure_kind=input failure_detail=$prepare_error
  printf 'ncap-runner: %s\n' "$prepare_error" >>"$live_log"
  exit_code=125
else
  now_ms
  remaining_ms=$((NCAP_DEADLINE_EPOCH_MS - REPLY))
  if ((remaining_ms <= 0)); then
    timed_out=1
  else
    cd -- "$NCAP_WORKDIR" || die "workflow folder $NCAP_WORKDIR does not exist"
    NCAP_INPUT="$input_path" NCAP_CONFIG="$config_path" NCAP_OUTPUT_DIR="$scratch/output" NCAP_REPLICAS_DIR="$replicas_dir" \
      NCAP_JOB_ID="$NCAP_JOB_ID" NCAP_DATASET="$NCAP_DATASET" HOME="$scratch" TMPDIR="$scratch" \
      setsid "$@" >>"$live_log" 2>&1 </dev/null &
    workflow_pid=$!
    emit "workflow $workflow_pid"
    sleep "$((remaining_ms / 1000)).$(printf '%03d' $((remaining_ms % 1000)))" &
    watchdog_pid=$!
    shipper_pid=""
    if [[ $store_kind == s3 ]]; then
      (while sleep "${NCAP_LOG_SHIP_SECONDS:-5}"; do store_put "$live_log" "$NCAP_LOG_KEY" 2>/dev/null; done) &
      shipper_pid=$!
    fi
    wait -n "$workflow_pid" "$watchdog_pid"
    if kill -0 "$workflow_pid" 2>/dev/null; then
      timed_out=1
      printf 'ncap-runner: deadline reached, stopping the workflow\n' >>"$live_log"
      stop_workflow
    else
      kill "$watchdog_pid" 2>/dev/null
    fi
    wait "$workflow_pid"
    exit_code=$?
    [[ -n "$shipper_pid" ]] && kill "$shipper_pid" 2>/dev/null
    workflow_pid=""
  fi
fi

# ---- report ---------------------------------------------------------------------------------
if [[ $store_kind == s3 ]]; then
  store_put "$live_log" "$NCAP_LOG_KEY" || printf 'ncap-runner: could not ship the log\n' >&2
fi

if ((timed_out)); then
  status=TIMED_OUT
  exit_code=""
elif [[ "$exit_code" == 0 ]]; then
  status=SUCCEEDED
  # Outputs of a successful run become results; a name that already exists is never replaced.
  missing=()
  while IFS= read -r -d '' file; do
    store_create "$scratch/output/${file#./}" "$NCAP_RESULTS_PREFIX${file#./}" 2>>"$live_log" || missing+=("${file#./}")
  done < <(cd -- "$scratch/output" && find . -type f -print0)
  if ((${#missing[@]} > 0)); then
    # A result that did not arrive is a lost result: never SUCCEEDED.
    status=FAILED failure_kind=platform
    failure_detail="results could not be stored: ${missing[*]}"
    printf 'ncap-runner: %s\n' "$failure_detail" >>"$live_log"
  fi
else
  status=FAILED
fi
now_ms
finished_ms=$REPLY
write_status "$status" "$exit_code" "$finished_ms" "$failure_kind" "$failure_detail"
emit "finished ${exit_code:--} $timed_out $finished_ms ${failure_kind:--}"

[[ -n "$lifeline_pid" ]] && kill "$lifeline_pid" 2>/dev/null
if [[ "${NCAP_SHUTDOWN:-}" == 1 ]]; then shutdown -h +1 "neurocaas: job done" >/dev/null 2>&1 || poweroff; fi
exit 0
