#!/usr/bin/env bash
# A real one-node SLURM on this machine (127.0.0.1), for trying deploy/slurm/
# end to end: munged, slurmctld and slurmd from Debian's munge and slurm-wlm.
# Run as root (it installs packages and starts daemons):
#
#   deploy/slurm/local_slurm.sh start [DIR]   # install if missing, write DIR/slurm.conf, start, wait
#   deploy/slurm/local_slurm.sh status [DIR]  # sinfo and squeue
#   deploy/slurm/local_slurm.sh stop [DIR]    # cancel every job, stop slurmd, slurmctld, munged
#
# DIR defaults to /etc/slurm (where sbatch, squeue and sinfo look by default);
# with another DIR, state and logs go under DIR too and the clients need
# `export SLURM_CONF=DIR/slurm.conf` (printed at start).
#
# The node is "localhost" with the CPUs and memory slurmd finds, in one
# partition "debug" (the default). No cgroup plugin is used, so it also runs in
# containers without usable cgroups: processes are tracked through /proc
# (proctrack/linuxproc), tasks are not bound to cores (task/none), and no
# accounting database is kept (finished jobs are listed in DIR's jobs.txt,
# state/jobs.txt beside it, by jobcomp/filetxt). Cores and memory are still
# allocated per job (select/cons_tres, CR_Core_Memory), so jobs queue when the
# node is full. Not for production: jobs run as the submitting user on this
# machine without any isolation.
set -euo pipefail

command="${1:-start}"
conf_dir="${2:-/etc/slurm}"
conf_dir="$(mkdir -p "$conf_dir" && cd "$conf_dir" && pwd)"
conf="$conf_dir/slurm.conf"
if [[ "$conf_dir" == /etc/slurm ]]; then
    state=/var/spool/slurm-local
else
    state="$conf_dir/state"
fi
export SLURM_CONF="$conf"
munge_run=/run/munge

log() { printf 'local_slurm: %s\n' "$*" >&2; }

need_root() {
    if [[ "$(id -u)" -ne 0 ]]; then
        log "run as root (it installs packages and starts daemons)"
        exit 2
    fi
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        slurm-wlm munge
}

write_config() {
    local cpus memory
    # What slurmd sees on this machine, e.g. "NodeName=vm CPUs=2 ... RealMemory=24105".
    cpus="$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -n 1)"
    memory="$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)"
    # Leave the daemons some memory: declare 90% (MiB) to SLURM.
    memory=$((memory * 9 / 10))
    mkdir -p "$state/ctld" "$state/d" "$state/log"
    cat >"$conf" <<EOF
# Written by deploy/slurm/local_slurm.sh: one node, this machine, 127.0.0.1.
ClusterName=tfbp-local
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$state/jobs.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=30
KillWait=10
Waittime=0
SchedulerType=sched/backfill
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    log "wrote $conf (CPUs=$cpus RealMemory=$memory)"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    mkdir -p "$munge_run"
    chown munge:munge "$munge_run"
    chmod 0755 "$munge_run"
    runuser -u munge -- /usr/sbin/munged
    local i
    for i in $(seq 50); do
        if munge -n | unmunge >/dev/null 2>&1; then
            return
        fi
        sleep 0.2
    done
    log "munged did not start"
    exit 1
}

running() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_idle() {
    local i node_state
    for i in $(seq 120); do
        node_state="$(sinfo -h -n localhost -o %T 2>/dev/null || true)"
        if [[ "$node_state" == idle* ]]; then
            log "node localhost is idle"
            return
        fi
        if [[ "$node_state" == drain* || "$node_state" == down* ]]; then
            scontrol update NodeName=localhost State=RESUME 2>/dev/null || true
        fi
        sleep 0.5
    done
    log "node localhost did not become idle (state: ${node_state:-none}); see $state/log/"
    exit 1
}

start() {
    need_root
    install_packages
    write_config
    start_munge
    if ! running "$state/slurmctld.pid"; then
        slurmctld -f "$conf"
    fi
    if ! running "$state/slurmd.pid"; then
        slurmd -f "$conf" -N localhost
    fi
    wait_idle
    # The node may look idle from the saved state before slurmd has registered: run a job.
    if ! timeout 60 srun --job-name=local-slurm-check --cpus-per-task=1 --mem=16 true; then
        log "a test job did not run; see $state/log/"
        exit 1
    fi
    log "a test job ran"
    if [[ "$conf" != /etc/slurm/slurm.conf ]]; then
        log "for sbatch, squeue and sinfo: export SLURM_CONF=$conf"
    fi
}

stop_pid() {
    # The daemons remove their pid file before they exit: wait for the process itself.
    local name="$1" pidfile="$2" pid i
    if ! running "$pidfile"; then
        return
    fi
    pid="$(cat "$pidfile")"
    kill "$pid"
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    log "$name (pid $pid) did not stop after 20 s; killing it"
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    need_root
    if [[ -f "$conf" ]] && running "$state/slurmctld.pid"; then
        scancel --full --quiet --partition=debug 2>/dev/null || true
        # Give slurmd a moment to end the jobs' processes before it stops.
        local i
        for i in $(seq 50); do
            [[ -z "$(squeue -h 2>/dev/null)" ]] && break
            sleep 0.2
        done
    fi
    stop_pid slurmd "$state/slurmd.pid"
    stop_pid slurmctld "$state/slurmctld.pid"
    stop_pid munged "$munge_run/munged.pid"
    log "stopped"
}

status() {
    sinfo
    squeue
}

case "$command" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        log "usage: $0 start|stop|status [DIR]"
        exit 2
        ;;
esac
