#!/usr/bin/env bash
# Stops the daemons scripts/slurm-up.sh started (and only those: a pid is signalled only
# while its start time matches the record). `--purge` also drops the accounting database,
# Slurm's saved state and logs, the generated configuration and the fake GPU nodes.
set -euo pipefail

STATE=/var/lib/slurm-up
PIDS=$STATE/pids
log() { printf 'slurm-down: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "error: needs root"; exit 1; }
purge=""
[ "${1:-}" = --purge ] && purge=1

starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }

# Queued and running jobs first, by id: a controller that comes back should not restart them.
if [ -f "$PIDS/slurmctld" ] && command -v squeue >/dev/null; then
  ids=$(timeout 15 squeue -h -o '%i' 2>/dev/null || true)
  [ -n "$ids" ] && timeout 15 scancel $ids 2>/dev/null || true
fi

for name in slurmrestd slurmd slurmctld slurmdbd mariadbd munged; do
  f=$PIDS/$name
  [ -f "$f" ] || continue
  read -r pid st <"$f" || true
  if [ -n "${pid:-}" ] && [ "$(starttime "$pid")" = "$st" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do [ "$(starttime "$pid")" = "$st" ] || break; sleep 0.1; done
    if [ "$(starttime "$pid")" = "$st" ]; then
      log "$name ($pid) ignored SIGTERM for 30 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name ($pid)"
  fi
  # A stale pid file naming our pid breaks the packages' own scripts later.
  for pf in "/run/$name.pid" /run/mysqld/mysqld.pid; do
    [ -f "$pf" ] && [ "$(cat "$pf" 2>/dev/null)" = "${pid:-}" ] && rm -f "$pf"
  done
  rm -f "$f"
done

if [ -n "$purge" ]; then
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/* /var/log/slurm/* \
    /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf "$STATE"
  # The accounting database lives in MariaDB's data folder; drop it with the rest.
  rm -rf /var/lib/mysql/slurm_acct_db
  log "purged"
fi
