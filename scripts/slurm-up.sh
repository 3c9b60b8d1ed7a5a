#!/usr/bin/env bash
# Brings up a single-node Slurm cluster with fake GPUs on this Debian machine, for the Slurm
# executor's tests and for trying the executor by hand. Idempotent: a second run checks the
# daemons and a smoke job and restarts nothing unless the configuration changed.
#
# Needs root (it installs packages, writes /etc/slurm and starts daemons). Settings:
#   SLURM_ACCOUNTING=dbd|none  accounting through slurmdbd + MariaDB (sacct works), or none
#   SLURM_FAKE_GPUS=4          fake GPU device nodes the node advertises (0: no GPUs)
#   SLURM_CPUS=16              CPUs the node advertises (more than the machine lets tiny
#                              test jobs run side by side)
#   SLURM_PARTITION=debug      the default partition
#   SLURM_SMOKE=1              finish with a smoke job
# Stop everything with scripts/slurm-down.sh.
set -euo pipefail

ACCOUNTING=${SLURM_ACCOUNTING:-dbd}
GPUS=${SLURM_FAKE_GPUS:-4}
CPUS=${SLURM_CPUS:-16}
PARTITION=${SLURM_PARTITION:-debug}
CLUSTER=${SLURM_CLUSTER:-aiguillage}
SMOKE=${SLURM_SMOKE:-1}
STATE=/var/lib/slurm-up
PIDS=$STATE/pids

log() { printf 'slurm-up: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root: it installs slurm-wlm and munge and starts their daemons (try: sudo $0)"
command -v apt-get >/dev/null || die "needs a Debian-like system with apt-get"
case $ACCOUNTING in dbd|none) ;; *) die "SLURM_ACCOUNTING must be dbd or none, not '$ACCOUNTING'";; esac

# ---------------------------------------------------------------- packages
packages=(slurm-wlm munge procps)
[ "$ACCOUNTING" = dbd ] && packages+=(slurmdbd mariadb-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  # Keep the packages' own service scripts from starting daemons: this script starts them.
  temp_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    temp_policy=1
  fi
  if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  [ -n "$temp_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

# ---------------------------------------------------------------- helpers
mkdir -p "$PIDS" /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /run/munge
chown slurm:slurm /var/log/slurm /var/lib/slurm/slurmctld
chown munge:munge /run/munge

starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }

# A daemon we started is alive when its recorded pid still has its recorded start time.
ours_alive() {
  local f=$PIDS/$1 pid st
  [ -f "$f" ] || return 1
  read -r pid st <"$f" || return 1
  [ -n "$pid" ] && [ "$(starttime "$pid")" = "$st" ]
}

record() { echo "$2 $(starttime "$2")" >"$PIDS/$1"; }

running_elsewhere() { pgrep -x "$1" >/dev/null 2>&1; }

wait_for() { # seconds, description, command...
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "timed out after ${t}s waiting for $what"
    sleep 0.1
  done
}

# Writes $2 to $1 only when it differs; prints "changed" when it did.
write_if_changed() {
  if [ ! -f "$1" ] || ! cmp -s "$1" <(printf '%s' "$2"); then
    printf '%s' "$2" >"$1"
    echo changed
  fi
}

# ---------------------------------------------------------------- fake GPUs
mkdir -p "$STATE/gpu"
for ((i = 0; i < GPUS; i++)); do
  # Their own major:minor (120 is "local/experimental"), not an alias of /dev/null.
  [ -c "$STATE/gpu/nvidia$i" ] || mknod -m 666 "$STATE/gpu/nvidia$i" c 120 "$i"
done

# ---------------------------------------------------------------- configuration
host=$(hostname -s)
mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
gres_node=""
gres_conf="AutoDetect=off
"
if [ "$GPUS" -gt 0 ]; then
  gres_node=" Gres=gpu:fake:$GPUS"
  gres_conf+="NodeName=$host Name=gpu Type=fake File=$STATE/gpu/nvidia[0-$((GPUS - 1))]
"
fi
if [ "$ACCOUNTING" = dbd ]; then
  accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  accounting="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
slurm_conf="# Written by scripts/slurm-up.sh: a single-node cluster for tests.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=300
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
$accounting
GresTypes=gpu
AccountingStorageTRES=gres/gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem$gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
"
changed=""
[ -n "$(write_if_changed /etc/slurm/slurm.conf "$slurm_conf")" ] && changed=1
[ -n "$(write_if_changed /etc/slurm/gres.conf "$gres_conf")" ] && changed=1

if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  changed=1
fi

# ---------------------------------------------------------------- daemons
stop_ours() {
  local name=$1 pid st
  [ -f "$PIDS/$name" ] || return 0
  read -r pid st <"$PIDS/$name" || true
  if [ -n "${pid:-}" ] && [ "$(starttime "$pid")" = "$st" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do [ "$(starttime "$pid")" = "$st" ] || break; sleep 0.1; done
    [ "$(starttime "$pid")" = "$st" ] && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$name"
}

if [ -n "$changed" ]; then
  for d in slurmd slurmctld slurmdbd; do
    if ours_alive "$d"; then log "configuration changed: restarting $d"; stop_ours "$d"; fi
  done
fi

# munged: reuse one that is already running.
if ! pgrep -x munged >/dev/null; then
  setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged
  wait_for 5 munged pgrep -x munged
  record munged "$(pgrep -x munged | head -1)"
fi

if [ "$ACCOUNTING" = dbd ]; then
  if ! pgrep -x mariadbd >/dev/null; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    setsid /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql \
      --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
      --bind-address=127.0.0.1 --innodb-buffer-pool-size=128M \
      --innodb-lock-wait-timeout=900 >/var/log/slurm/mariadb.log 2>&1 </dev/null &
    mpid=$!
    wait_for 30 mariadb mariadb-admin --socket=/run/mysqld/mysqld.sock ping
    record mariadbd "$mpid"
  fi
  [ -s "$STATE/dbpass" ] || { head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/dbpass"; chmod 600 "$STATE/dbpass"; }
  pass=$(cat "$STATE/dbpass")
  mariadb --socket=/run/mysqld/mysqld.sock -e "
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  dbd_conf="AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$pass
"
  if [ -n "$(write_if_changed /etc/slurm/slurmdbd.conf "$dbd_conf")" ] && ours_alive slurmdbd; then
    stop_ours slurmdbd
  fi
  chown slurm:slurm /etc/slurm/slurmdbd.conf
  chmod 600 /etc/slurm/slurmdbd.conf
  if ! ours_alive slurmdbd; then
    running_elsewhere slurmdbd && die "a slurmdbd this script did not start is running; stop it first"
    rm -f /run/slurmdbd.pid
    /usr/sbin/slurmdbd
    wait_for 10 slurmdbd test -s /run/slurmdbd.pid
    record slurmdbd "$(cat /run/slurmdbd.pid)"
    # slurmctld registers the cluster when it connects; give slurmdbd its port first.
    wait_for 10 "slurmdbd port" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
  fi
fi

if ! ours_alive slurmctld; then
  running_elsewhere slurmctld && die "a slurmctld this script did not start is running; stop it first"
  rm -f /run/slurmctld.pid
  /usr/sbin/slurmctld
  wait_for 15 slurmctld scontrol ping
  record slurmctld "$(cat /run/slurmctld.pid)"
fi

if ! ours_alive slurmd; then
  running_elsewhere slurmd && die "a slurmd this script did not start is running; stop it first"
  rm -f /run/slurmd.pid
  /usr/sbin/slurmd
  wait_for 10 slurmd test -s /run/slurmd.pid
  record slurmd "$(cat /run/slurmd.pid)"
fi

# A node drained or down in the saved state stays so across restarts until resumed.
node_state=$(sinfo -h -N -n "$host" -o '%T' 2>/dev/null || true)
case $node_state in
  *drain*|*down*|*inval*|*fail*) log "resuming node $host ($node_state)"
    scontrol update nodename="$host" state=resume || true ;;
esac

# ---------------------------------------------------------------- smoke job
if [ "$SMOKE" = 1 ]; then
  out=$(mktemp -d)
  chmod 777 "$out"
  gres=()
  [ "$GPUS" -gt 0 ] && gres=(--gres=gpu:1)
  id=$(sbatch --parsable -J slurm-up-smoke -o "$out/out" -t 1 "${gres[@]}" \
    --wrap 'echo "gpus=$CUDA_VISIBLE_DEVICES"')
  id=${id%%;*}
  end=$((SECONDS + 60))
  while :; do
    state=$(scontrol -o show job "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    [ "$state" = COMPLETED ] && break
    case $state in FAILED|CANCELLED|TIMEOUT|NODE_FAIL|BOOT_FAIL|OUT_OF_MEMORY)
      die "smoke job $id ended $state; see /var/log/slurm/slurmd.log" ;;
    esac
    [ $SECONDS -lt $end ] || die "smoke job $id still '$state' after 60 s; see /var/log/slurm/slurmctld.log"
    sleep 0.1
  done
  log "up: smoke job $id $(cat "$out/out")"
  rm -rf "$out"
else
  log "up"
fi
