# Sourced by the jobs/*.sbatch scripts: the working folder, python and log folder.
#   GENEN_DGL_REPO  folder the jobs run in (default: the submit directory, $SLURM_SUBMIT_DIR)
#   PYTHON          python with genen-dgl installed (pip install genen-dgl, or pip install . in
#                   a checkout; default: python3)
#   LOG_DIR         folder for the per-task logs (default: logs)
REPO=${GENEN_DGL_REPO:-${SLURM_SUBMIT_DIR:-$PWD}}
PYTHON=${PYTHON:-python3}
LOG_DIR=${LOG_DIR:-logs}
cd "$REPO"
mkdir -p "$LOG_DIR"
"$PYTHON" -c "import genen_dgl" 2>/dev/null || { echo "error: $PYTHON cannot import genen_dgl; pip install it first" >&2; exit 2; }
export PYTHONUNBUFFERED=1
echo "[$(date +%T)] job ${SLURM_JOB_ID:-?} (${SLURM_JOB_NAME:-?}) on ${SLURM_JOB_NODELIST:-$(hostname -s)}: $PYTHON, repo $REPO"
