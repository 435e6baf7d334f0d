#!/usr/bin/env bash
# Runs one command on every worker (host) of a Cloud TPU VM pod slice, all at once.
#
#   scripts/launch_tpu_pod.sh [--setup] [--detach] [--dry-run] TPU_NAME ZONE -- COMMAND...
#
# Example, a v4-32 slice (4 hosts x 4 chips), first run on a fresh slice:
#
#   scripts/launch_tpu_pod.sh --setup my-v4-32 us-central2-b -- \
#     python -m sslx.main --multihost --config=experiments/simclr_imagenet.py \
#       --workdir=/mnt/shared/runs/simclr_imagenet
#
# On every worker, through `gcloud compute tpus tpu-vm ssh --worker=all`:
#   --setup    clone this repository into ~/sslx (or fetch into it), check out the commit
#              this checkout is at (push it first), and `pip install -e . jax[tpu]`.
#   (always)   cd ~/sslx && COMMAND
#   --detach   run COMMAND under nohup (log: ~/sslx_run.log on each worker) and return;
#              without it the command's output streams back and the script waits.
#   --dry-run  print the gcloud commands instead of running them.
#
# Notes
# - Pass --multihost to sslx.main: each host's process then calls
#   jax.distributed.initialize(), which on Cloud TPU finds the coordinator, the number of
#   processes and its own index by itself. All hosts run the same program on the global
#   device mesh; batch sizes are global.
# - --workdir must be one directory every worker sees at the same path (Filestore/NFS, or
#   a gcsfuse mount of a bucket): every host writes its part of each checkpoint there, and
#   process 0 writes config.json, metrics.jsonl and results.json.
# - Preemption: JAX's preemption sync point makes all hosts checkpoint the same step and
#   exit with status 42. A preempted slice has to be recreated; then run the same command
#   again (with --setup) and it resumes from the latest checkpoint.
# Environment: PROJECT (gcloud --project), SSLX_REPO (git URL to clone; default: this
# checkout's `origin`), SSH_FLAGS (more gcloud ssh flags, e.g. "--internal-ip").
set -euo pipefail

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

setup=0 detach=0 dry_run=0
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --setup) setup=1 ;;
    --detach) detach=1 ;;
    --dry-run) dry_run=1 ;;
    --) break ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
  shift
done
[[ $# -ge 4 && "$3" == "--" ]] || usage
tpu_name="$1" zone="$2"
shift 3

# The command, quoted for the remote shell.
command_line="$(printf '%q ' "$@")"
if [[ $detach -eq 1 ]]; then
  remote="cd ~/sslx && nohup ${command_line}> ~/sslx_run.log 2>&1 < /dev/null &"
else
  remote="cd ~/sslx && ${command_line}"
fi

gcloud_ssh=(gcloud compute tpus tpu-vm ssh "$tpu_name" --zone="$zone" --worker=all)
[[ -n "${PROJECT:-}" ]] && gcloud_ssh+=(--project="$PROJECT")
# shellcheck disable=SC2206  # SSH_FLAGS is a list of flags on purpose
[[ -n "${SSH_FLAGS:-}" ]] && gcloud_ssh+=(${SSH_FLAGS})

run() {
  if [[ $dry_run -eq 1 ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

if [[ $setup -eq 1 ]]; then
  repo_dir="$(cd "$(dirname "$0")/.." && pwd)"
  commit="$(git -C "$repo_dir" rev-parse HEAD)"
  repo_url="${SSLX_REPO:-$(git -C "$repo_dir" remote get-url origin 2>/dev/null || true)}"
  if [[ -z "$repo_url" ]]; then
    echo "--setup: this checkout has no 'origin' remote; set SSLX_REPO to a git URL the" \
         "workers can clone (with commit $commit pushed to it)." >&2
    exit 2
  fi
  setup_cmd="set -e; [ -d ~/sslx/.git ] || git clone -q $(printf '%q' "$repo_url") ~/sslx; \
cd ~/sslx && git fetch -q origin && git checkout -q $commit && \
python3 -m pip install -q -e . 'jax[tpu]'"
  run "${gcloud_ssh[@]}" --command="$setup_cmd"
fi
run "${gcloud_ssh[@]}" --command="$remote"
