#!/usr/bin/env bash
# dtrain under a real Slurm (two slurmd on this host, see cluster.sh), what a user does on a cluster:
#   1. srun -N2 -n2 dtrain train   (one Slurm task per worker): both tasks see a world of 2 and the node list
#      node[1-2] expanded to node1, node2; the losses equal a 1-process run with the same global batch (float64);
#   2. sbatch examples/slurm/train.sbatch (one dtrain launch per node) and, mid-run, the SIGUSR1 its --signal sends
#      before the time limit: the ranks checkpoint and exit 75, the script requeues the job, the requeued job resumes
#      and finishes with the losses of an uninterrupted run.
# Needs root (it starts the daemons). Usage: tests/slurm/run.sh   (leaves the cluster up with KEEP_CLUSTER=1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
start=$(date +%s)

tests/slurm/cluster.sh up
[ "${KEEP_CLUSTER:-0}" = 1 ] || trap 'tests/slurm/cluster.sh down' EXIT
work=$(mktemp -d /tmp/dtrain-slurm.XXXXXX)
export DTRAIN_SECRET_DIR=$work/secret    # the "home directory" both nodes share
bin/dtrain --version >/dev/null          # build the jar once, before tasks start together

fail() { echo "slurm test: FAILED: $*" >&2; exit 1; }

# A float64 gpt-micro run: global batch 8 = 2 ranks x micro-batch 2 x 2 accumulation steps (1 process: 4 steps).
common=(--config configs/gpt-micro.yaml --set model.dtype=float64 --set model.dropout=0.1 --set training.global_batch=8
        --set training.micro_batch=2 --set training.eval_interval=0 --set metrics.interval_ms=0 --set metrics.trace=false)

# losses_equal RUN_A RUN_B: every step both ran has the same loss (relative 1e-9), and B ran to A's last step
losses_equal() {
  python3 - "$1" "$2" <<'PY'
import json, sys
def losses(run):
    out = {}
    for line in open(run + "/metrics/steps-rank0.jsonl"):
        r = json.loads(line)
        if r.get("type", "step") == "step":
            out[r["step"]] = r["loss"]
    return out
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert max(b) == max(a), f"{sys.argv[2]} ended at step {max(b)}, {sys.argv[1]} at {max(a)}"
common = sorted(set(a) & set(b))
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in common)
assert worst <= 1e-9, f"losses differ by {worst:.3g} (relative)"
print(f"  {len(common)} steps, final loss {b[max(b)]:.12f}, largest relative difference {worst:.2g}")
PY
}

echo "== 1 process, the reference"
bin/dtrain train "${common[@]}" --set training.steps=20 --set output.dir="$work/one" > "$work/one.log" 2>&1 \
  || { cat "$work/one.log"; fail "the 1-process run"; }

echo "== srun -N2 -n2 dtrain train"
srun -N2 -n2 --label --chdir="$repo" bin/dtrain train "${common[@]}" --set training.steps=20 \
  --set output.dir="$work/srun" > "$work/srun.log" 2>&1 || { cat "$work/srun.log"; fail "srun -N2 -n2 dtrain train"; }
grep -E "^0: Slurm job [0-9]+, task 0 of 2 on node1 \(step nodes node1, node2\): rank 0 of 2, rendezvous node1:2[0-9]{4}$" \
  "$work/srun.log" >/dev/null || { cat "$work/srun.log"; fail "task 0 did not see a world of 2 on node1, node2"; }
grep -E "^1: Slurm job [0-9]+, task 1 of 2 on node2 \(step nodes node1, node2\): rank 1 of 2, rendezvous node1:2[0-9]{4}$" \
  "$work/srun.log" >/dev/null || { cat "$work/srun.log"; fail "task 1 did not see a world of 2 on node1, node2"; }
grep -h "Slurm job" "$work/srun.log" | sed 's/^/  /'
losses_equal "$work/one" "$work/srun" || fail "srun's losses differ from the 1-process run's"

echo "== sbatch examples/slurm/train.sbatch, SIGUSR1 mid-run, requeue, resume"
steps=150
bin/dtrain train "${common[@]}" --set training.steps=$steps --set output.dir="$work/one-long" > "$work/one-long.log" 2>&1 \
  || { cat "$work/one-long.log"; fail "the long 1-process run"; }
# This cluster has no GPUs and 2 CPUs a node: the example's resources are overridden, nothing else.
job=$(sbatch --parsable --gpus-per-node=0 --cpus-per-task=2 --chdir="$repo" --output="$work/batch-%j.out" \
      examples/slurm/train.sbatch configs/gpt-micro.yaml "${common[@]:2}" --set training.steps=$steps \
      --set training.checkpoint_interval=100 --set output.dir="$work/batch")
echo "  job $job submitted"
signalled=0
for _ in $(seq 1 1200); do
  state=$(scontrol show job "$job" | grep -oP 'JobState=\K\S+')
  if [ $signalled = 0 ] && [ -f "$work/batch/metrics/steps-rank0.jsonl" ] \
     && [ "$(wc -l < "$work/batch/metrics/steps-rank0.jsonl")" -ge 30 ]; then
    scancel --signal=USR1 "$job" && signalled=1 && echo "  SIGUSR1 sent at step $(wc -l < "$work/batch/metrics/steps-rank0.jsonl")"
  fi
  # Slurm holds a requeued job for ~2 minutes (EligibleTime); on this test cluster nobody else waits: release it,
  # but only some seconds after the requeue (a credential issued in the second the old one was revoked is refused).
  if [ $signalled = 1 ] && [ "$state" = PENDING ] && scontrol show job "$job" | grep -q 'Reason=BeginTime'; then
    held_since=${held_since:-$(date +%s)}
    if [ $(( $(date +%s) - held_since )) -ge 5 ]; then
      scontrol update JobId="$job" StartTime=now
      held_since=$(( $(date +%s) + 600 ))   # once
    fi
  fi
  case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)
    # a job that requeues itself passes through an end state on its way back to PENDING: final only if it stays
    sleep 2
    again=$(scontrol show job "$job" | grep -oP 'JobState=\K\S+')
    [ "$again" = "$state" ] && break
    state=$again ;;
  esac
  sleep 0.1
done
out="$work/batch-$job.out"
[ "$state" = COMPLETED ] || { cat "$out"; fail "job $job ended $state"; }
[ $signalled = 1 ] || { cat "$out"; fail "the job ended before it could be signalled"; }
restarts=$(scontrol show job "$job" | grep -oP 'Restarts=\K[0-9]+')
[ "$restarts" = 1 ] || { cat "$out"; fail "job $job was requeued $restarts times, expected once"; }
grep -q "requeueing job $job" "$out" || { cat "$out"; fail "the script did not requeue after exit 75"; }
grep -qE "resum(ing|ed) .*step [0-9]+" "$out" || { cat "$out"; fail "the requeued job did not resume from the checkpoint"; }
grep -E "resum(ing|ed) .*step [0-9]+" "$out" | head -1 | sed 's/^/  /'
losses_equal "$work/one-long" "$work/batch" || fail "the requeued job's losses differ from an uninterrupted run's"

rm -rf "$work"
echo "== slurm test passed in $(( $(date +%s) - start )) s"
