#!/usr/bin/env bash
# A one-host Slurm for the fleet self-tests: slurmctld plus three slurmd (node01-03) on 127.0.0.1,
# GRES gpu on stand-in character devices. Needs root (apt-get, munged, slurmd).
#   scripts/slurm-test-cluster.sh start   install slurm-wlm + munge if missing, start, wait until idle (bounded)
#   scripts/slurm-test-cluster.sh stop    stop every daemon this script started
# Then: export SLURM_CONF=${PREFLIGHT_SLURM_DIR:-/tmp/preflight-slurm}/slurm.conf
set -euo pipefail

DIR=${PREFLIGHT_SLURM_DIR:-/tmp/preflight-slurm}
CONF=$DIR/slurm.conf
NODES=(node01 node02 node03)
START_SECONDS=${PREFLIGHT_SLURM_START_SECONDS:-90}
export SLURM_CONF=$CONF

log() { echo "slurm-test-cluster: $*" >&2; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    log "installing slurm-wlm and munge (apt-get, as root)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq
    timeout 900 apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
    mkdir -p "$DIR/state" "$DIR/dev" "$DIR/run"
    for n in "${NODES[@]}"; do mkdir -p "$DIR/spool-$n"; done
    # Stand-in GPUs: character devices (the null device's numbers), two per node.
    for i in 0 1; do [ -e "$DIR/dev/gpu$i" ] || mknod "$DIR/dev/gpu$i" c 1 3; done
    cat >"$CONF" <<EOF
ClusterName=preflight
SlurmctldHost=localhost
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool-%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
KillWait=5
GresTypes=gpu
NodeName=node[01-03] NodeAddr=127.0.0.1 Port=[17001-17003] CPUs=2 RealMemory=1000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=node[01-03] Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
    # Slurm 22.05: cgroup/v2 fails here with "Hybrid mode is not supported"; v1 works (nothing uses it).
    echo "CgroupPlugin=cgroup/v1" >"$DIR/cgroup.conf"
    echo "NodeName=node[01-03] Name=gpu File=$DIR/dev/gpu[0-1]" >"$DIR/gres.conf"
}

running() {  # a live process (a zombie, dead but not yet reaped, is not)
    kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}
alive() { local pid; pid=$(cat "$1" 2>/dev/null || true); [ -n "$pid" ] && running "$pid"; }

start() {
    install
    write_config
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        mkdir -p /run/munge /var/log/munge /var/lib/munge
        [ -s /etc/munge/munge.key ] || (umask 077; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none)
        munged --force --pid-file="$DIR/run/munged.pid"  # recorded: this script started it, stop ends it
    fi
    alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF"
    for n in "${NODES[@]}"; do
        alive "$DIR/run/slurmd-$n.pid" || slurmd -f "$CONF" -N "$n"
    done
    local deadline=$((SECONDS + START_SECONDS)) states
    while [ $SECONDS -lt $deadline ]; do
        states=$(timeout 10 sinfo -h -N -o '%N %T' 2>/dev/null || true)
        if [ "$(grep -c ' idle$' <<<"$states")" = "${#NODES[@]}" ]; then
            log "up: ${NODES[*]} idle (export SLURM_CONF=$CONF)"
            return 0
        fi
        if grep -qE ' (down|drained|drain)' <<<"$states"; then
            timeout 10 scontrol update nodename=node[01-03] state=resume 2>/dev/null || true
        fi
        sleep 1
    done
    log "not up after ${START_SECONDS} s; sinfo says: ${states:-nothing}; logs in $DIR"
    stop
    return 1
}

stop() {
    local pidfile pid
    for pidfile in "$DIR"/run/slurmd-*.pid "$DIR/run/slurmctld.pid" "$DIR/run/munged.pid"; do
        pid=$(cat "$pidfile" 2>/dev/null || true)  # read once: a daemon removes its pid file as it exits
        if [ -n "$pid" ] && running "$pid"; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 20); do running "$pid" || break; sleep 0.25; done
            if running "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
        fi
        rm -f "$pidfile"
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
