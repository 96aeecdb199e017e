#!/usr/bin/env bash
# A real single-node SLURM on localhost, for the SLURM end-to-end test (tests/workflow/test_slurm.py)
# and for trying profiles/slurm by hand before a real cluster.
#
#   .ci/local-slurm.sh start    # as root: munged, slurmctld and slurmd on this machine
#   .ci/local-slurm.sh status   # sinfo, or exit 1 when down
#   .ci/local-slurm.sh stop
#
# Needs Debian's slurm-wlm and munge (`make deb` installs them when run as root). Spool, state
# and logs live in $ARIA_SLURM_DIR (default /tmp/aria-slurm). The configuration is written to
# /etc/slurm/slurm.conf, the default place, because the job-step plugin
# (snakemake-executor-plugin-slurm-jobstep 0.6) drops every SLURM_* variable, SLURM_CONF too,
# before its inner srun; a slurm.conf that this script did not write is never overwritten. It is
# GRES-free (no GPUs), has one partition "debug" with every core of this machine, no accounting
# database (so the executor plugin's status queries go through squeue; MinJobAge keeps finished
# jobs visible there for 5 minutes), and no cgroups (containers rarely allow them).
set -euo pipefail

DIR=${ARIA_SLURM_DIR:-/tmp/aria-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by .ci/local-slurm.sh"

die() { echo "local-slurm: $*" >&2; exit 2; }

write_conf() {
  local host cpus mem_mb
  host=$(hostname -s)
  cpus=$(nproc)
  mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  if [ -f "$CONF" ] && ! grep -qx "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; not touching a real cluster's configuration"
  fi
  mkdir -p "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/log" /etc/slurm
  cat > "$CONF.tmp" <<EOF
$MARK
ClusterName=aria-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=300
SchedulerParameters=sched_interval=1
MpiDefault=none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

up() { timeout 5 sinfo -h -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

start() {
  [ "$(id -u)" = 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"
  for b in munged slurmctld slurmd sbatch squeue; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || die "$b not found: apt-get install slurm-wlm munge (or: make deb, as root)"
  done
  if up; then echo "local-slurm: already up ($CONF)"; return 0; fi
  write_conf
  # munge: its key comes with the Debian package; the socket directory may be missing in a container
  mkdir -p /run/munge && chown munge:munge /run/munge
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged || die "munged failed to start"
  fi
  /usr/sbin/slurmctld -f "$CONF" || die "slurmctld failed to start: see $DIR/log/slurmctld.log"
  /usr/sbin/slurmd -f "$CONF" || die "slurmd failed to start: see $DIR/log/slurmd.log"
  for _ in $(seq 1 60); do
    if up; then echo "local-slurm: up ($CONF)"; return 0; fi
    sleep 0.5
  done
  scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true
  up || die "the node did not come up within 30 s: see $DIR/log/"
}

stop() {
  for d in slurmd slurmctld; do
    if [ -f "$DIR/$d.pid" ]; then kill "$(cat "$DIR/$d.pid")" 2>/dev/null || true; fi
  done
  sleep 1
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  echo "local-slurm: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if up; then sinfo; else echo "local-slurm: down"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 64 ;;
esac
