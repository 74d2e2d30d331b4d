#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the tests of profiles/slurm.
#
#   tests/slurm/cluster.sh install   apt-get Debian's Slurm, munge and MariaDB
#   tests/slurm/cluster.sh up        write the configs, start the daemons, wait
#   tests/slurm/cluster.sh status    exit 0 when every daemon runs and the node is usable
#   tests/slurm/cluster.sh down      cancel the jobs, stop the daemons by PID
#   tests/slurm/cluster.sh logs      print the tail of every daemon log
#   tests/slurm/cluster.sh env       print the exports that point the client tools at
#                                    this cluster: eval "$(tests/slurm/cluster.sh env)"
#
# Debian 12 (Slurm 22.05), as root, without systemd and without cgroups. Daemons
# run in the foreground under setsid, their PIDs kept in $ROOT/run/*.pid.
#
# One cluster per $SLURM_TEST_ROOT, and nothing shared between two of them, so
# that two test runs on one machine each have their own (.ci/run makes a fresh
# root per run; tests/test_slurm.py finds the cluster through `env`):
# - everything the cluster writes (configs, state, logs, PID files, munge key and
#   socket, the MariaDB datadir and socket) lives under $ROOT, by default
#   /tmp/unetcap-slurm-<hash of this checkout's path> (one per checkout);
# - its three ports are chosen at `up` among the free ones (under a machine-wide
#   lock, so that two `up`s at once cannot pick the same) and kept in $ROOT/etc/ports;
# - nothing is written outside $ROOT: the client tools find the configuration
#   through SLURM_CONF, and $ROOT/bin/srun sets it again for the srun that the
#   executor plugin starts inside each job (the plugin removes SLURM_* variables
#   from that srun's environment; the job inherits PATH through sbatch --export=ALL).
#
# Settings (environment): SLURM_TEST_ROOT, SLURM_TEST_CPUS (default 32),
# SLURM_TEST_MEM_MB (default 262144), SLURM_TEST_GPUS (default 4),
# SLURM_TEST_PORT (fixed ports instead of free ones: slurmctld, +1 slurmd, +2 slurmdbd).
# The node is declared with these numbers whatever the machine has (a fake GPU
# server; see slurm.conf.in), so that the production profile's requests fit.
set -euo pipefail
set +m  # no job control: `setsid CMD &` then execs CMD in place, and $! is its PID

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHECKOUT=$(cd "$HERE/../.." && pwd)
ROOT=${SLURM_TEST_ROOT:-/tmp/unetcap-slurm-$(printf %s "$CHECKOUT" | sha256sum | cut -c1-8)}
CPUS=${SLURM_TEST_CPUS:-32}
MEM_MB=${SLURM_TEST_MEM_MB:-262144}
GPUS=${SLURM_TEST_GPUS:-4}
HOST=$(hostname -s)
CLUSTER=unetcap
ACCOUNT=unetcap
PORT_LOCK=/tmp/unetcap-slurm-ports.lock   # held while an `up` picks ports and starts
PORT_RANGE=(20000 32000)                  # below Linux's ephemeral ports (32768-60999)
PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)   # start order

export SLURM_CONF=$ROOT/etc/slurm.conf
export MYSQL_UNIX_PORT=$ROOT/mysql/mysqld.sock

say() { printf '[slurm-test %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

pid_of() {  # pid of a daemon we started, if it still runs (and is still that daemon)
  local f=$ROOT/run/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  kill -0 "$pid" 2>/dev/null || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
  echo "$pid"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  while ((SECONDS < deadline)); do
    if declare -F "$1" >/dev/null; then
      "$@" >/dev/null 2>&1 && return 0
    elif timeout 5 "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  cmd_logs >&2 || true
  die "$what not ready after ${limit}s"
}

start() {  # start NAME LOG COMMAND...: run COMMAND in its own session, keep its PID
  local name=$1 log=$2
  shift 2
  if pid_of "$name" >/dev/null; then
    say "$name already runs (pid $(pid_of "$name"))"
    return 0
  fi
  setsid "$@" >>"$log" 2>&1 </dev/null &
  echo $! >"$ROOT/run/$name.pid"
  sleep 0.2
  pid_of "$name" >/dev/null || { tail -n 30 "$log" >&2; die "$name died at start (log: $log)"; }
  say "started $name (pid $(<"$ROOT/run/$name.pid"))"
}

stop() {  # stop NAME: SIGTERM, then SIGKILL after 15 s
  local name=$1 pid i
  pid=$(pid_of "$name") || { rm -f "$ROOT/run/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 75; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$ROOT/run/$name.pid"
  say "stopped $name (pid $pid)"
}

port_free() { [[ -z $(ss -Hltn "sport = :$1") ]]; }

choose_port() {  # set PORT: slurmctld's port; +1 slurmd, +2 slurmdbd
  if [[ -n ${SLURM_TEST_PORT:-} ]]; then
    PORT=$SLURM_TEST_PORT
  elif [[ -s $ROOT/etc/ports ]]; then
    PORT=$(<"$ROOT/etc/ports")   # this cluster's, from an earlier `up`
  else
    local try
    for ((try = 0; try < 200; try++)); do
      PORT=$(shuf -i "${PORT_RANGE[0]}-$((PORT_RANGE[1] - 3))" -n 1)
      port_free "$PORT" && port_free $((PORT + 1)) && port_free $((PORT + 2)) && break
    done
  fi
  local d p
  for d in slurmdbd slurmctld slurmd; do
    pid_of "$d" >/dev/null && return 0   # a daemon of ours runs: the ports are ours
  done
  for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
    port_free "$p" || die "port $p is taken (set SLURM_TEST_PORT, or remove $ROOT/etc/ports)"
  done
  echo "$PORT" >"$ROOT/etc/ports"
}

render() {  # render TEMPLATE OUT
  sed -e "s|@ROOT@|$ROOT|g" -e "s|@HOST@|$HOST|g" \
      -e "s|@CTLD_PORT@|$PORT|g" -e "s|@SLURMD_PORT@|$((PORT + 1))|g" \
      -e "s|@DBD_PORT@|$((PORT + 2))|g" -e "s|@CPUS@|$CPUS|g" \
      -e "s|@MEM_MB@|$MEM_MB|g" -e "s|@GPUS@|$GPUS|g" "$1" >"$2"
}

cmd_install() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    say "packages already installed: ${PACKAGES[*]}"
    return 0
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's policy-rc.d keeps the package scripts from starting services here.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "installed: Slurm $(dpkg-query -W -f='${Version}' slurmctld)"
}

write_configs() {
  mkdir -p "$ROOT"/{bin,etc,run,log,state/slurmctld,state/slurmd,munge,mysql,dev}
  chmod 755 "$ROOT"
  choose_port
  render "$HERE/slurm.conf.in" "$ROOT/etc/slurm.conf"
  render "$HERE/slurmdbd.conf.in" "$ROOT/etc/slurmdbd.conf"
  chmod 600 "$ROOT/etc/slurmdbd.conf"
  # Fake GPUs of model "testgpu": one character device each (that of /dev/null).
  local i
  for ((i = 0; i < GPUS; i++)); do
    [[ -e $ROOT/dev/gpu$i ]] || mknod "$ROOT/dev/gpu$i" c 1 3
  done
  printf 'NodeName=localhost Name=gpu Type=testgpu File=%s/dev/gpu[0-%d]\n' "$ROOT" $((GPUS - 1)) \
    >"$ROOT/etc/gres.conf"
  # srun inside a job runs without SLURM_CONF (see the top): this one puts it back.
  local srun
  srun=$(dirname "$(command -v sbatch)")/srun   # Slurm's (PATH may hold another cluster's)
  [[ -x $srun ]] || die "srun is not installed"
  printf '#!/bin/sh\n# srun of the test cluster in %q (written by cluster.sh up)\nSLURM_CONF=%q exec %q "$@"\n' \
    "$ROOT" "$SLURM_CONF" "$srun" >"$ROOT/bin/srun"
  chmod 755 "$ROOT/bin/srun"
}

start_munge() {
  if [[ ! -s $ROOT/munge/munge.key ]]; then
    dd if=/dev/urandom of="$ROOT/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 755 "$ROOT/munge"
  chmod 400 "$ROOT/munge/munge.key"
  start munged "$ROOT/log/munged.out" munged --foreground --force \
    --key-file="$ROOT/munge/munge.key" --socket="$ROOT/munge/munge.socket" \
    --pid-file="$ROOT/munge/munged.pid" --seed-file="$ROOT/munge/munged.seed" \
    --log-file="$ROOT/log/munged.log"
  wait_for 10 munged sh -c "munge -S '$ROOT/munge/munge.socket' -n | unmunge -S '$ROOT/munge/munge.socket'"
}

start_mariadb() {
  local data=$ROOT/mysql/data
  chown mysql:mysql "$ROOT/mysql"
  if [[ ! -d $data/mysql ]]; then
    mariadb-install-db --no-defaults --user=mysql --datadir="$data" \
      --auth-root-authentication-method=socket --skip-test-db \
      >"$ROOT/log/mariadb-install.log" 2>&1 \
      || { tail -n 30 "$ROOT/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
  fi
  start mariadbd "$ROOT/log/mariadbd.out" mariadbd --no-defaults --user=mysql \
    --datadir="$data" --socket="$MYSQL_UNIX_PORT" --pid-file="$ROOT/mysql/mariadbd.pid" \
    --skip-networking --log-error="$ROOT/mysql/mariadb.log" \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=16M
  wait_for 30 MariaDB mariadb-admin --no-defaults --socket="$MYSQL_UNIX_PORT" -u root ping
}

node_state() { sinfo -h -N -n localhost -o '%T' 2>/dev/null | head -n 1; }

node_usable() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; }

cmd_up() {
  local t0=$SECONDS
  command -v slurmctld >/dev/null || die "Slurm is not installed: run '$0 install' first"
  mkdir -p "$ROOT"
  # Until this cluster listens on its ports, no other `up` may choose them.
  exec 9>"$PORT_LOCK"
  flock 9
  write_configs
  start_munge
  start_mariadb
  start slurmdbd "$ROOT/log/slurmdbd.out" slurmdbd -D
  wait_for 30 slurmdbd sacctmgr -n list cluster
  if [[ -z $(sacctmgr -n -P list cluster format=cluster where cluster=$CLUSTER) ]]; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
  start slurmctld "$ROOT/log/slurmctld.out" slurmctld -D -i
  wait_for 30 slurmctld scontrol ping
  start slurmd "$ROOT/log/slurmd.out" slurmd -D -N localhost
  # A node drained once (say, killed mid-job) stays drained across restarts.
  wait_for 30 "node registration" sh -c "sinfo -h -N -n localhost -o %T | grep -qv '^unknown'"
  if ! node_usable; then
    say "node is $(node_state); resuming it"
    scontrol update nodename=localhost state=resume || true
  fi
  wait_for 30 "node localhost" node_usable
  # An account for the jobs, so that sbatch -A and the plugin's account check work.
  if [[ -z $(sacctmgr -n -P list account format=account where name=$ACCOUNT) ]]; then
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description=tests >/dev/null
    sacctmgr -i add user root account="$ACCOUNT" >/dev/null
  fi
  flock -u 9
  say "cluster up in $((SECONDS - t0)) s in $ROOT (ports $PORT-$((PORT + 2))):" \
    "$(sinfo -h -o '%P %a %D %T' | tr '\n' ' ')"
}

cmd_down() {
  if pid_of slurmctld >/dev/null; then
    scancel --user=root 2>/dev/null || true   # this cluster's jobs only
    local i
    for ((i = 0; i < 50; i++)); do
      [[ -z $(squeue -h -t running,completing -o %i 2>/dev/null) ]] && break
      sleep 0.2
    done
  fi
  local d
  for ((d = ${#DAEMONS[@]} - 1; d >= 0; d--)); do stop "${DAEMONS[d]}"; done
  say "down (state and logs stay in $ROOT; remove it for a fresh cluster)"
}

cmd_status() {
  local d ok=0 pid
  for d in "${DAEMONS[@]}"; do
    if pid=$(pid_of "$d"); then echo "$d: running (pid $pid)"; else echo "$d: not running"; ok=1; fi
  done
  if ((ok == 0)); then
    sinfo -o '%P %a %l %D %T %c %m %G' || ok=1
    node_usable || { echo "node localhost is $(node_state)"; ok=1; }
  fi
  return $ok
}

cmd_logs() {
  local f
  for f in "$ROOT"/log/* "$ROOT"/mysql/mariadb.log; do
    [[ -s $f ]] || continue
    echo "==> $f <=="
    tail -n "${LINES_PER_LOG:-25}" "$f"
  done
}

cmd_env() {
  printf 'export SLURM_TEST_ROOT=%q\n' "$ROOT"
  printf 'export SLURM_CONF=%q\n' "$SLURM_CONF"
  printf 'export PATH=%q\n' "$ROOT/bin:${PATH//$ROOT\/bin:/}"
}

case ${1:-} in
  install) cmd_install ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs) cmd_logs ;;
  env) cmd_env ;;
  *) echo "usage: $0 install|up|down|status|logs|env" >&2; exit 2 ;;
esac
