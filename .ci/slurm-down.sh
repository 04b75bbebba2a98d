#!/usr/bin/env bash
# slurm-down.sh — stop the one-node cluster started by slurm-up.sh:
# cancel all jobs, stop slurmd, slurmctld, munged. Leaves packages/config in
# place so slurm-up.sh can bring it back quickly. Safe to run when nothing runs.
set -uo pipefail
log() { echo "[slurm-down] $*" >&2; }

# alive = exists and not a zombie (pid 1 in containers may reap slowly)
alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

stop() {  # name pidfile binary
    local name=$1 pf=$2 bin=$3 pids=""
    [ -f "$pf" ] && pids=$(cat "$pf" 2>/dev/null)
    # also catch instances whose pidfile went missing (exact binary match only)
    local p; for p in $(pgrep -x "$name" 2>/dev/null); do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$bin")" ] && pids="$pids $p"
    done
    local live=""; for p in $pids; do alive "$p" && live="$live $p"; done; pids=$live
    pids=$(echo $pids | tr ' ' '\n' | sort -u | tr '\n' ' ')
    [ -n "${pids// /}" ] || { rm -f "$pf"; return 0; }
    log "stopping $name ($pids)"
    kill $pids 2>/dev/null
    for _ in $(seq 100); do
        local alive=0; for p in $pids; do alive "$p" && alive=1; done
        [ $alive = 0 ] && break; sleep 0.1
    done
    for p in $pids; do alive "$p" && { log "SIGKILL $name $p"; kill -9 "$p" 2>/dev/null; }; done
    rm -f "$pf"
}

if command -v scancel >/dev/null 2>&1 && scontrol ping 2>/dev/null | grep -q 'is UP'; then
    if [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
        log "cancelling jobs: $(squeue -h -o %i | tr '\n' ' ')"
        scancel --full -u root 2>/dev/null; scancel --full $(squeue -h -o %i) 2>/dev/null
        for _ in $(seq 100); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.1; done
    fi
fi
stop slurmd    /run/slurm/slurmd.pid    /usr/sbin/slurmd
# leftover job step daemons
for p in $(pgrep -x slurmstepd 2>/dev/null); do alive "$p" || continue; log "killing slurmstepd $p"; kill -9 "$p" 2>/dev/null; done
stop slurmctld /run/slurm/slurmctld.pid /usr/sbin/slurmctld
stop munged    /run/munge/munged.pid    /usr/sbin/munged
log "done"
exit 0
