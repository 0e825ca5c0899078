#!/usr/bin/env bash
# Stand up a single-node SLURM cluster (controller + compute node + accounting) on this Debian host,
# for testing profiles/slurm for real (docs/slurm.md). Run as root:
#
#   sudo scripts/slurm/setup-single-node.sh
#
# Installs slurm-wlm, slurmdbd, munge and mariadb-server from the Debian registry, writes
# /etc/slurm/{slurm,slurmdbd,cgroup}.conf for ONE node (this host, partition `debug`, no GPUs),
# creates the accounting database, an account and user associations, and starts munged, MariaDB,
# slurmdbd, slurmctld and slurmd directly (no systemd needed), then waits until the node is idle.
# Running it again is safe: existing config/keys/database/associations are kept or rewritten
# identically, daemons that already run are left running (use --restart to restart them after a
# config change).
#
# Environment knobs (all optional):
#   SLURM_CLUSTER   cluster name (default: ldm)
#   SLURM_ACCOUNT   account created for the users (default: ldm)
#   SLURM_USERS     space-separated users to associate with the account
#                   (default: root and $SUDO_USER when set)
#   SLURM_CPUS      CPUs of the node (default: 2)
#   SLURM_MEM_MB    RealMemory of the node in MB (default: 3/4 of MemTotal)
#   SLURM_NO_APT=1  skip apt-get (packages already installed)
set -euo pipefail

RESTART=0
[[ "${1:-}" == "--restart" ]] && RESTART=1

if [[ $EUID -ne 0 ]]; then
    echo "setup-single-node.sh: must run as root" >&2
    exit 1
fi

CLUSTER=${SLURM_CLUSTER:-ldm}
ACCOUNT=${SLURM_ACCOUNT:-ldm}
USERS=${SLURM_USERS:-root ${SUDO_USER:-}}
CPUS=${SLURM_CPUS:-2}
MEM_TOTAL_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
MEM_MB=${SLURM_MEM_MB:-$((MEM_TOTAL_MB * 3 / 4))}
NODE=$(hostname -s)
DB_PASS_FILE=/etc/slurm/.slurmdbd-db-pass

log() { echo "[slurm-setup] $*"; }

# --- packages ------------------------------------------------------------------------------------
if [[ "${SLURM_NO_APT:-0}" != 1 ]]; then
    log "installing packages"
    export DEBIAN_FRONTEND=noninteractive
    # Without systemd, package postinst scripts would try to start daemons through invoke-rc.d;
    # forbid that while installing (we start them below), restoring any existing policy afterwards.
    POLICY=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $POLICY ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY"
        chmod +x "$POLICY"
        own_policy=1
        trap 'rm -f "$POLICY"' EXIT
    fi
    apt-get update -q
    apt-get install -y -q --no-install-recommends \
        slurm-wlm slurmdbd munge mariadb-server mariadb-client procps
    if [[ $own_policy == 1 ]]; then
        rm -f "$POLICY"
        trap - EXIT
    fi
fi

id slurm >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin slurm
id munge >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin munge

alive() { # alive PIDFILE: the process named in PIDFILE runs
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_if_restart() { # stop_if_restart PIDFILE NAME
    local pid
    pid=$(cat "$1" 2>/dev/null || true)
    if [[ $RESTART == 1 && -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        log "stopping $2 (pid $pid)"
        kill "$pid" || true
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    fi
}

# --- munge ---------------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating munge key"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
stop_if_restart /run/munge/munged.pid munged
if ! alive /run/munge/munged.pid; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
fi
munge -n | unmunge >/dev/null || { echo "munge self-test failed" >&2; exit 1; }

# --- MariaDB + accounting database ---------------------------------------------------------------
install -d -o mysql -g mysql -m 0755 /run/mysqld
if ! mysqladmin ping --silent >/dev/null 2>&1; then
    log "starting MariaDB"
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    setsid mysqld_safe --user=mysql --innodb-buffer-pool-size=64M >/var/log/mysqld_safe.out 2>&1 </dev/null &
    for _ in $(seq 60); do mysqladmin ping --silent >/dev/null 2>&1 && break; sleep 1; done
    mysqladmin ping --silent >/dev/null 2>&1 || { echo "MariaDB did not start; see /var/log/mysqld_safe.out" >&2; exit 1; }
fi
install -d -m 0755 /etc/slurm
if [[ ! -s $DB_PASS_FILE ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DB_PASS_FILE")
fi
DB_PASS=$(cat "$DB_PASS_FILE")
mysql -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '${DB_PASS}';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '${DB_PASS}';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL

# --- configuration -------------------------------------------------------------------------------
install -d -o slurm -g slurm -m 0755 /var/lib/slurm /var/lib/slurm/slurmctld /var/log/slurm /run/slurm
install -d -o root -g root -m 0755 /var/lib/slurm/slurmd

log "writing /etc/slurm/slurm.conf (node $NODE: CPUs=$CPUS RealMemory=$MEM_MB)"
cat >/etc/slurm/slurm.conf.new <<EOF
# Written by scripts/slurm/setup-single-node.sh: one host is controller and compute node.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
# Containers without systemd cannot delegate cgroups reliably: track processes through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# Use the node line below even where the hardware reports more CPUs/memory.
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Accounting through slurmdbd: the Snakemake SLURM executor polls job states with sacct.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
JobCompType=jobcomp/none
# Keep sbatch --comment (the executor puts the rule and wildcards there) for sacct -o Comment.
AccountingStoreFlags=job_comment
MinJobAge=300
NodeName=$NODE CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

cat >/etc/slurm/cgroup.conf.new <<EOF
# Written by scripts/slurm/setup-single-node.sh. Not used by slurm.conf above (proctrack/linuxproc,
# task/affinity); a host with systemd-delegated cgroups can switch to proctrack/cgroup + task/cgroup.
CgroupPlugin=autodetect
ConstrainCores=yes
ConstrainRAMSpace=yes
EOF

cat >/etc/slurm/slurmdbd.conf.new <<EOF
# Written by scripts/slurm/setup-single-node.sh.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurm/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF

changed=""
for f in slurm.conf cgroup.conf slurmdbd.conf; do
    if ! cmp -s "/etc/slurm/$f.new" "/etc/slurm/$f"; then
        mv "/etc/slurm/$f.new" "/etc/slurm/$f"
        changed="$changed $f"
    else
        rm "/etc/slurm/$f.new"
    fi
done
chmod 0644 /etc/slurm/slurm.conf /etc/slurm/cgroup.conf
chown slurm:slurm /etc/slurm/slurmdbd.conf
chmod 0600 /etc/slurm/slurmdbd.conf
if [[ -n $changed && $RESTART == 0 ]] && { alive /run/slurm/slurmctld.pid || alive /run/slurm/slurmdbd.pid; }; then
    log "changed:$changed while daemons run; rerun with --restart to apply"
fi

# --- daemons -------------------------------------------------------------------------------------
stop_if_restart /run/slurm/slurmd.pid slurmd
stop_if_restart /run/slurm/slurmctld.pid slurmctld
stop_if_restart /run/slurm/slurmdbd.pid slurmdbd

if ! alive /run/slurm/slurmdbd.pid; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd
fi
for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 1; done
sacctmgr -n list cluster >/dev/null || { echo "slurmdbd not answering; see /var/log/slurm/slurmdbd.log" >&2; exit 1; }

if [[ -z $(sacctmgr -n -P list cluster "$CLUSTER" format=cluster) ]]; then
    log "registering cluster $CLUSTER"
    sacctmgr -i add cluster "$CLUSTER"
fi
if [[ -z $(sacctmgr -n -P list account "$ACCOUNT" format=account) ]]; then
    log "adding account $ACCOUNT"
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="ldm test account" Organization=ldm
fi
for user in $USERS; do
    if [[ -z $(sacctmgr -n -P list assoc cluster="$CLUSTER" account="$ACCOUNT" user="$user" format=user) ]]; then
        log "associating user $user with account $ACCOUNT"
        sacctmgr -i add user "$user" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER"
    fi
done

if ! alive /run/slurm/slurmctld.pid; then
    log "starting slurmctld"
    /usr/sbin/slurmctld
fi
if ! alive /run/slurm/slurmd.pid; then
    log "starting slurmd"
    /usr/sbin/slurmd
fi

log "waiting for node $NODE to become idle"
state=""
for _ in $(seq 90); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    case $state in
        idle|mixed|allocated) break ;;
        down|drained|draining|drain) scontrol update NodeName="$NODE" State=RESUME || true ;;
    esac
    sleep 1
done
sinfo
case $state in
    idle|mixed|allocated) log "ready: partition debug, node $NODE ($state), account $ACCOUNT" ;;
    *) echo "node $NODE is '$state'; see /var/log/slurm/slurmctld.log and slurmd.log" >&2; exit 1 ;;
esac
