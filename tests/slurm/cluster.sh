#!/usr/bin/env bash
# A real two-node Slurm cluster on this one host, for dtrain's Slurm test (tests/slurm/run.sh) and for trying the
# examples in examples/slurm/ by hand. Needs root and Debian 12 (slurm-wlm 22.05, munge).
#
#   tests/slurm/cluster.sh up     install slurm-wlm + munge if missing, start munged, slurmctld and two slurmd
#                                 (node1, node2: Debian builds slurmd with MULTIPLE_SLURMD), wait until both are idle
#   tests/slurm/cluster.sh down   stop the daemons (the packages stay)
#
# No systemd, no cgroups (proctrack/linuxproc, task/none, CgroupPlugin=cgroup/v1 so slurmd starts anywhere), no
# accounting database. node1 and node2 must resolve: they are added to /etc/hosts as 127.0.0.1 if missing.
set -euo pipefail

CPUS=${SLURM_CI_CPUS:-2}

install_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  echo "cluster: installing slurm-wlm and munge"
  # apt's postinst would start the daemons on some hosts; deny it for this install (we start them ourselves)
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  [ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

write_config() {
  mkdir -p /etc/slurm
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
EnforcePartLimits=ALL
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=30
Waittime=0
NodeName=node1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=6818 CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN
NodeName=node2 NodeHostname=localhost NodeAddr=127.0.0.1 Port=6819 CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  echo "CgroupPlugin=cgroup/v1" > /etc/slurm/cgroup.conf
  grep -qE '^[0-9.]+[[:space:]].*\bnode1\b' /etc/hosts || echo "127.0.0.1 node1" >> /etc/hosts
  grep -qE '^[0-9.]+[[:space:]].*\bnode2\b' /etc/hosts || echo "127.0.0.1 node2" >> /etc/hosts
}

start_daemons() {
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  # a fresh state every time: saved node state would show the nodes idle before their slurmd registered
  rm -rf /var/spool/slurmctld
  mkdir -p /run/slurm /var/log/slurm /var/spool/slurmctld /var/spool/slurmd/node1 /var/spool/slurmd/node2
  chown slurm:slurm /run/slurm /var/log/slurm /var/spool/slurmctld
  slurmctld
  slurmd -N node1
  slurmd -N node2
  for _ in $(seq 1 100); do
    if [ "$(sinfo -h -N -o '%N %t' 2>/dev/null | grep -c ' idle')" = 2 ] && timeout 10 srun -N2 true 2>/dev/null; then
      echo "cluster: up, nodes $(sinfo -h -N -o '%N' | paste -sd, -) idle"
      return 0
    fi
    sleep 0.2
  done
  echo "cluster: the nodes did not become idle; see /var/log/slurm/" >&2
  sinfo -N >&2 || true
  exit 1
}

stop_daemons() {
  for pidfile in /run/slurm/slurmd-node1.pid /run/slurm/slurmd-node2.pid /run/slurm/slurmctld.pid; do
    [ -s "$pidfile" ] && kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.1; done
  pkill -KILL -x slurmctld 2>/dev/null || true
  pkill -KILL -x slurmd 2>/dev/null || true
  echo "cluster: down"
}

stop_munge() {
  [ -s /run/munge/munged.pid ] && kill -TERM "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  for _ in $(seq 1 50); do pgrep -x munged >/dev/null || break; sleep 0.1; done
}

case "${1:-}" in
  up) install_packages; write_config; stop_daemons >/dev/null; start_daemons ;;
  down) stop_daemons; stop_munge ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
