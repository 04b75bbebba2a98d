# Sourced by the jobs/*.sbatch scripts: the repository, python and log folder.
#   GENEN_DGL_REPO  repository root (default: the submit directory, $SLURM_SUBMIT_DIR)
#   PYTHON          python with genen-dgl's dependencies (default: python3)
#   LOG_DIR         folder for the per-task logs (default: logs)
REPO=${GENEN_DGL_REPO:-${SLURM_SUBMIT_DIR:-$PWD}}
PYTHON=${PYTHON:-python3}
LOG_DIR=${LOG_DIR:-logs}
cd "$REPO"
mkdir -p "$LOG_DIR"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
echo "[$(date +%T)] job ${SLURM_JOB_ID:-?} (${SLURM_JOB_NAME:-?}) on ${SLURM_JOB_NODELIST:-$(hostname -s)}: $PYTHON, repo $REPO"
