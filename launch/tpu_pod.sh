#!/usr/bin/env bash
# Run r1jax-train on every worker of a Cloud TPU VM slice (multi-host TPU pod).
#
# One JAX process per TPU VM worker; `r1jax.distributed.initialize()` calls
# `jax.distributed.initialize()` with no arguments there and JAX finds the coordinator,
# the process count and each worker's id itself (R1JAX_DISTRIBUTED=auto is exported so
# this holds on any TPU VM image).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh [options] -- [r1jax-train flags...]

Ships the repo to every worker of a TPU VM slice, installs it (pip install -e .), runs
r1jax-train on all workers at once with the flags after `--`, and collects one log per
worker. Every gcloud command is printed before it runs.

  launch/tpu_pod.sh --tpu=my-pod --zone=us-central2-b --create \
      -- --config=experiments/arith_tiny.py --workdir=/mnt/shared/runs/pod1
  launch/tpu_pod.sh --dry_run --tpu=t --zone=z -- --config=experiments/arith_tiny.py:smoke

TPU VM (defaults from the environment):
  --tpu=NAME               TPU VM name ($TPU_NAME; required)
  --zone=ZONE              zone ($TPU_ZONE, else $CLOUDSDK_COMPUTE_ZONE; required)
  --project=PROJECT        project ($TPU_PROJECT, else $CLOUDSDK_CORE_PROJECT, else
                           gcloud's configured default)
  --accelerator_type=TYPE  for --create ($TPU_ACCELERATOR_TYPE, default v5litepod-16)
  --runtime_version=VER    for --create ($TPU_RUNTIME_VERSION, default v2-alpha-tpuv5-lite)
  --create                 create the TPU VM first (gcloud compute tpus tpu-vm create)

Code on the workers (installed with `pip install -e ".[tpu]"`):
  --source=copy            (default, $R1JAX_SOURCE) this working tree as it is, uncommitted
                           edits included: the files git lists (tracked + untracked, not
                           ignored) are tarred, copied to every worker with
                           `tpu-vm scp --worker=all` and unpacked over --remote_dir. This is
                           the rsync-style copy (gcloud's ssh wrapper does not carry rsync);
                           files deleted here are not deleted there.
  --source=git             `git clone` (or fetch + checkout) of --repo_url at --branch on
                           every worker: what is pushed, not what is local.
  --repo_url=URL           for --source=git ($R1JAX_REPO_URL, default: this checkout's origin)
  --branch=REF             for --source=git: branch or tag ($R1JAX_BRANCH, default main)
  --remote_dir=DIR         checkout on the workers, relative to the remote home
                           ($R1JAX_REMOTE_DIR, default r1jax); r1jax-train runs from there
  --python=PY              python on the workers ($R1JAX_REMOTE_PYTHON, default python3)
  --skip_install           reuse what is installed on the workers

Logs (each worker tees its output to ~/r1jax-logs/RUN/<hostname>.log):
  --run_name=RUN           ($R1JAX_RUN_NAME, default UTC date-time)
  --gcs_logs=gs://B/PATH   each worker uploads its log to gs://B/PATH/RUN/ ($R1JAX_GCS_LOGS)
  --log_dir=DIR            else the logs are copied back here with tpu-vm scp, one worker at
                           a time (default logs/tpu-NAME-RUN)
  --num_workers=N          workers to copy logs from (default: asked of tpu-vm describe)

  --dry_run                print the commands, run nothing
  -h, --help               this text

Multi-host runs need a --workdir every worker sees (NFS/Filestore mount, or a gcsfuse-mounted
bucket): all workers write their checkpoint shards there; only process 0 writes
metrics.jsonl, summary.json, TensorBoard events and the plot.
EOF
}

die() {
  echo "tpu_pod.sh: error: $*" >&2
  echo "Run launch/tpu_pod.sh --help for the options." >&2
  exit 2
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TPU=${TPU_NAME:-}
ZONE=${TPU_ZONE:-${CLOUDSDK_COMPUTE_ZONE:-}}
PROJECT=${TPU_PROJECT:-${CLOUDSDK_CORE_PROJECT:-}}
ACCELERATOR=${TPU_ACCELERATOR_TYPE:-v5litepod-16}
RUNTIME=${TPU_RUNTIME_VERSION:-v2-alpha-tpuv5-lite}
SOURCE=${R1JAX_SOURCE:-copy}
REPO_URL=${R1JAX_REPO_URL:-}
BRANCH=${R1JAX_BRANCH:-main}
REMOTE_DIR=${R1JAX_REMOTE_DIR:-r1jax}
PY=${R1JAX_REMOTE_PYTHON:-python3}
RUN_NAME=${R1JAX_RUN_NAME:-$(date -u +%Y%m%d-%H%M%S)}
GCS_LOGS=${R1JAX_GCS_LOGS:-}
LOG_DIR=""
NUM_WORKERS=""
CREATE=0
INSTALL=1
DRY_RUN=0

while (($#)); do
  case "$1" in
    --tpu=*) TPU=${1#*=} ;;
    --zone=*) ZONE=${1#*=} ;;
    --project=*) PROJECT=${1#*=} ;;
    --accelerator_type=*) ACCELERATOR=${1#*=} ;;
    --runtime_version=*) RUNTIME=${1#*=} ;;
    --create) CREATE=1 ;;
    --source=*) SOURCE=${1#*=} ;;
    --repo_url=*) REPO_URL=${1#*=} ;;
    --branch=*) BRANCH=${1#*=} ;;
    --remote_dir=*) REMOTE_DIR=${1#*=} ;;
    --python=*) PY=${1#*=} ;;
    --skip_install) INSTALL=0 ;;
    --run_name=*) RUN_NAME=${1#*=} ;;
    --gcs_logs=*) GCS_LOGS=${1#*=} ;;
    --log_dir=*) LOG_DIR=${1#*=} ;;
    --num_workers=*) NUM_WORKERS=${1#*=} ;;
    --dry_run | --dry-run) DRY_RUN=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    --)
      shift
      break
      ;;
    *) die "unknown option '$1' (r1jax-train flags go after '--')" ;;
  esac
  shift
done
TRAIN_ARGS=("$@")

[[ -n "$TPU" ]] || die "no TPU VM name: pass --tpu=NAME or set TPU_NAME"
[[ -n "$ZONE" ]] || die "no zone: pass --zone=ZONE or set TPU_ZONE"
[[ "$SOURCE" == copy || "$SOURCE" == git ]] || die "--source=$SOURCE: use 'copy' or 'git'"
[[ -z "$NUM_WORKERS" || "$NUM_WORKERS" =~ ^[1-9][0-9]*$ ]] ||
  die "--num_workers=$NUM_WORKERS: expected a positive integer"
[[ -z "$GCS_LOGS" || "$GCS_LOGS" == gs://* ]] || die "--gcs_logs=$GCS_LOGS: expected gs://BUCKET/PATH"
[[ "$RUN_NAME" =~ ^[A-Za-z0-9._-]+$ ]] || die "--run_name=$RUN_NAME: use letters, digits, . _ -"
if [[ "$SOURCE" == git && -z "$REPO_URL" ]]; then
  REPO_URL=$(git -C "$ROOT" remote get-url origin 2>/dev/null) ||
    die "--source=git needs --repo_url=URL (this checkout has no 'origin' remote)"
fi
LOG_DIR=${LOG_DIR:-logs/tpu-$TPU-$RUN_NAME}

# Shell-quotes one word for display only where needed, so printed commands stay readable
# and can be pasted back into a shell.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  else
    printf '%s' "${1@Q}"
  fi
}

# Prints a command (stdout under --dry_run, stderr otherwise) and runs it unless --dry_run.
run() {
  local line="+" word
  for word in "$@"; do
    line+=" $(quote "$word")"
  done
  if ((DRY_RUN)); then
    printf '%s\n' "$line"
    return 0
  fi
  printf '%s\n' "$line" >&2
  "$@"
}

if ((!DRY_RUN)); then
  command -v gcloud >/dev/null || die "gcloud not found: install the Google Cloud CLI"
fi

TPU_VM=(gcloud compute tpus tpu-vm)
WHERE=(--zone="$ZONE")
[[ -z "$PROJECT" ]] || WHERE+=(--project="$PROJECT")

# Remote paths: relative ones live under the remote $HOME (expanded on the worker).
if [[ "$REMOTE_DIR" == /* ]]; then
  RDIR=$(printf '%q' "$REMOTE_DIR")
else
  RDIR="\"\$HOME\"/$(printf '%q' "$REMOTE_DIR")"
fi
RLOGS="\"\$HOME\"/r1jax-logs/$RUN_NAME"
RLOG="$RLOGS/\"\$(hostname)\".log"

# 1. The TPU VM.
if ((CREATE)); then
  run "${TPU_VM[@]}" create "$TPU" "${WHERE[@]}" \
    --accelerator-type="$ACCELERATOR" --version="$RUNTIME"
fi

# 2. Code and install, on all workers.
if ((INSTALL)); then
  if [[ "$SOURCE" == copy ]]; then
    git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 ||
      die "--source=copy lists files with git, but $ROOT is not a git checkout: use --source=git"
    TMP=$(mktemp -d)
    trap 'rm -rf "$TMP"' EXIT
    TARBALL="$TMP/r1jax-src.tar.gz"
    if ((DRY_RUN)); then
      echo "+ (cd $(quote "$ROOT") && git ls-files -co --exclude-standard | tar -czf $TARBALL -T -)"
    else
      (
        cd "$ROOT"
        git ls-files -z -co --exclude-standard |
          while IFS= read -r -d '' f; do if [[ -e "$f" ]]; then printf '%s\0' "$f"; fi; done |
          tar -czf "$TARBALL" --null -T -
      )
    fi
    run "${TPU_VM[@]}" scp "$TARBALL" "$TPU:r1jax-src.tar.gz" --worker=all "${WHERE[@]}"
    FETCH="mkdir -p $RDIR && tar -xzf \"\$HOME\"/r1jax-src.tar.gz -C $RDIR"
  else
    url=$(printf '%q' "$REPO_URL")
    ref=$(printf '%q' "$BRANCH")
    FETCH="if [ -d $RDIR/.git ]; then git -C $RDIR fetch --depth=1 $url $ref"
    FETCH+=" && git -C $RDIR checkout --force FETCH_HEAD;"
    FETCH+=" else git clone --depth=1 --branch $ref $url $RDIR; fi"
  fi
  PYQ=$(printf '%q' "$PY")
  run "${TPU_VM[@]}" ssh "$TPU" "${WHERE[@]}" --worker=all \
    --command="set -e; $FETCH; cd $RDIR && $PYQ -m pip install -q -e \".[tpu]\""
fi

# 3. Train on all workers; each tees its output to its own log file.
ARGS=""
if ((${#TRAIN_ARGS[@]})); then
  ARGS=$(printf ' %q' "${TRAIN_ARGS[@]}")
fi
UPLOAD=""
if [[ -n "$GCS_LOGS" ]]; then
  DEST=$(printf '%q' "${GCS_LOGS%/}/$RUN_NAME/")
  UPLOAD=" gcloud storage cp $RLOG $DEST || echo log upload failed >&2;"
fi
REMOTE="set -o pipefail; mkdir -p $RLOGS && cd $RDIR"
REMOTE+=" && export PATH=\"\$HOME/.local/bin:\$PATH\" R1JAX_DISTRIBUTED=auto"
REMOTE+=" && r1jax-train$ARGS 2>&1 | tee $RLOG; rc=\$?;$UPLOAD exit \$rc"
rc=0
run "${TPU_VM[@]}" ssh "$TPU" "${WHERE[@]}" --worker=all --command="$REMOTE" || rc=$?

# 4. Logs back (unless they went to GCS), also after a failed run.
if [[ -n "$GCS_LOGS" ]]; then
  echo "worker logs: ${GCS_LOGS%/}/$RUN_NAME/" >&2
else
  if [[ -z "$NUM_WORKERS" ]]; then
    if ((DRY_RUN)); then
      run "${TPU_VM[@]}" describe "$TPU" "${WHERE[@]}" --format='value(networkEndpoints.len())'
      NUM_WORKERS=1
      echo "# (the copy below is repeated for --worker=0 .. N-1, N from describe)"
    else
      NUM_WORKERS=$(run "${TPU_VM[@]}" describe "$TPU" "${WHERE[@]}" \
        --format='value(networkEndpoints.len())') || NUM_WORKERS=1
      [[ "$NUM_WORKERS" =~ ^[1-9][0-9]*$ ]] || NUM_WORKERS=1
    fi
  fi
  ((DRY_RUN)) || mkdir -p "$LOG_DIR"
  for ((i = 0; i < NUM_WORKERS; i++)); do
    run "${TPU_VM[@]}" scp "$TPU:r1jax-logs/$RUN_NAME/*" "$LOG_DIR/" --worker="$i" "${WHERE[@]}" ||
      echo "warning: could not copy the log of worker $i" >&2
  done
  echo "worker logs: $LOG_DIR/" >&2
fi
exit "$rc"
