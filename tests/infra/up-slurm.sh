#!/usr/bin/env bash
# The tests' own single-node Slurm cluster: munged, and a slurmctld and slurmd of their own,
# with their own config file ($STATE/slurm.conf, STATE=/var/lib/runctl-test-slurm/cluster;
# never /etc/slurm), ports (6917/6918), state
# and pid files, so a cluster already on this machine is never touched and theirs can be
# stopped by the tests that need to (a controller restart). Partition "debug" (default) with
# every CPU, partition "out-of-service" whose one node never answers, no accounting (as on
# many small clusters: runctl must reach final states without sacct).
# Idempotent: a controller of this config that answers (`scontrol ping`) is reused.
# Tests and users point Slurm's commands at it with SLURM_CONF=$STATE/slurm.conf.
set -euo pipefail
STATE=${RUNCTL_TEST_SLURM_STATE:-/var/lib/runctl-test-slurm}/cluster
CONF="$STATE/slurm.conf"
export SLURM_CONF="$CONF"
export DEBIAN_FRONTEND=noninteractive

need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

# munge: a key (once), then munged as the munge user (one that answers is reused).
mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
    head -c 1024 /dev/urandom >/etc/munge/munge.key
fi
chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    su -s /bin/sh munge -c "munged --pid-file=/run/munge/munged.pid" || su -s /bin/sh munge -c munged
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
munge -n | unmunge >/dev/null || { echo "munged does not answer" >&2; exit 1; }

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
mkdir -p "$STATE/ctld" "$STATE/d"
cat >"$CONF.tmp" <<CONFIG
# written by runctl tests/infra/up-slurm.sh: the tests' own cluster
ClusterName=runctl-test
SlurmctldHost=$host
SlurmctldPort=6917
SlurmdPort=6918
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
MinJobAge=300
KillWait=5
SchedulerParameters=sched_interval=1
MaxArraySize=1001
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
# A node that never answers, alone in partition "out-of-service": a job there is valid but
# cannot start now (as on a cluster whose nodes are drained for maintenance).
NodeName=runctl-ghost NodeAddr=127.0.0.1 Port=6899 CPUs=1 RealMemory=100 State=DOWN
PartitionName=out-of-service Nodes=runctl-ghost MaxTime=INFINITE State=UP
CONFIG
changed=0
if ! cmp -s "$CONF.tmp" "$CONF" 2>/dev/null; then
    mv "$CONF.tmp" "$CONF"
    changed=1
else
    rm -f "$CONF.tmp"
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ "$changed" = 1 ]; then  # a new config: restart the daemons of this config only (their pid files)
    for d in slurmd slurmctld; do
        if alive "$STATE/$d.pid"; then kill "$(cat "$STATE/$d.pid")"; sleep 1; fi
    done
fi
# Started in a session of their own, they outlive the shell that ran this script.
if ! scontrol ping 2>/dev/null | grep -q "is UP"; then
    alive "$STATE/slurmctld.pid" || setsid -f slurmctld -f "$CONF" </dev/null >/dev/null 2>&1
fi
alive "$STATE/slurmd.pid" || setsid -f slurmd -f "$CONF" </dev/null >/dev/null 2>&1
for _ in $(seq 1 100); do
    sinfo -h -p debug -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
    sleep 0.1
done
sinfo -h -p debug -o '%T' | grep -qE '^(idle|mixed|allocated)' || {
    scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    sleep 1
}
sinfo -h -p debug -o '%T' | grep -qE '^(idle|mixed|allocated)' \
    || { echo "slurm node not idle: $(sinfo 2>&1); see $STATE/*.log" >&2; exit 1; }
echo "slurm ok: $(sinfo -h -p debug -o '%P %D %T %C') (SLURM_CONF=$CONF)"
