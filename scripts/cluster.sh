#!/usr/bin/env bash
# scripts/cluster.sh — an assistd cluster on one machine, every part a separate process as it would be on
# separate machines:
#   - PostgreSQL (Debian's package, a throwaway cluster in a temp dir, 127.0.0.1 only): all state and the
#     run/file queues;
#   - `chroma run` (the chromadb package's CLI): the vectors of file_search;
#   - one inference engine (`assistd engine MODEL`): llama.cpp's server, shared by every worker through a
#     models file that names it by `url`;
#   - three `assistd serve`: one `--role api` (the HTTP API, runs nothing) and two `--role worker` (execute
#     runs and index files; answer /health only), on the same --database-url, --chroma-url and --files-dir.
# Everything lives in one temp dir (data, logs, pids), removed by `stop` unless KEEP=1.
#
# Usage:
#   scripts/cluster.sh [start]       start, print the API URL, stay in the foreground; Ctrl-C stops everything
#   scripts/cluster.sh start --detach   start, print the API URL, return (the processes keep running)
#   scripts/cluster.sh stop [DIR]    stop a detached cluster (default: the last one started)
#   scripts/cluster.sh status [DIR]  the processes of a cluster and whether each is up
# Settings (environment):
#   API_PORT=8000  PARALLEL=4 (engine slots)  N_CTX=4096  WORKERS=2
#   MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf  MODEL_NAME=SmolLM2-135M-Instruct
#   ASSISTD_API_KEYS='key=project,...' (optional; without keys only loopback is served)
#   ASSISTD=.venv/bin/assistd  PYTHON=.venv/bin/python  KEEP=1 (keep the temp dir after stop)
# Needs: `apt-get install postgresql` (initdb/pg_ctl), and `make install` (assistd, chromadb, the model).
# As root, PostgreSQL runs as the `postgres` user (runuser).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ASSISTD="${ASSISTD:-$ROOT/.venv/bin/assistd}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CHROMA="${CHROMA:-$(dirname "$PYTHON")/chroma}"
MODEL="${MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
MODEL_NAME="${MODEL_NAME:-SmolLM2-135M-Instruct}"
API_PORT="${API_PORT:-8000}"
PARALLEL="${PARALLEL:-4}"
N_CTX="${N_CTX:-4096}"
WORKERS="${WORKERS:-2}"
LAST="${TMPDIR:-/tmp}/assistd-cluster.last"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"

say() { echo "cluster: $*" >&2; }
die() { say "$*"; exit 1; }

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_up NAME URL PID LOG: until URL answers 200, or the process exits (its log is shown), or 180 s pass.
wait_up() {
  local name=$1 url=$2 pid=$3 log=$4
  for _ in $(seq 1 900); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$log" >&2
      die "$name exited during start (log: $log)"
    fi
    if "$PYTHON" -c 'import sys, httpx; sys.exit(httpx.get(sys.argv[1], timeout=1).status_code != 200)' \
      "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  tail -n 40 "$log" >&2
  die "$name did not come up within 180 s (log: $log)"
}

pg_bindir() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$dir" ] && command -v pg_config >/dev/null 2>&1; then dir="$(pg_config --bindir)"; fi
  [ -n "$dir" ] && [ -x "$dir/initdb" ] || die "PostgreSQL is not installed: apt-get install postgresql"
  echo "$dir"
}

as_pg() {  # runs a PostgreSQL tool as the postgres user when we are root
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_bg NAME LOG CMD...: starts CMD in the background, records its pid in $DIR/pids.
start_bg() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  echo "$! $name" >>"$DIR/pids"
  LAST_PID=$!
}

stop_cluster() {
  local dir=$1
  [ -d "$dir" ] || die "no cluster at $dir"
  if [ -f "$dir/pids" ]; then
    # newest first: the assistd nodes, then the engine and chroma
    tac "$dir/pids" | while read -r pid name; do
      if kill -0 "$pid" 2>/dev/null; then
        kill -CONT "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        say "stopped $name ($pid)"
      fi
    done
  fi
  if [ -f "$dir/pg/postmaster.pid" ]; then
    as_pg "$(cat "$dir/pgbin")/pg_ctl" stop -D "$dir/pg" -m fast -w >/dev/null && say "stopped PostgreSQL"
  fi
  if [ "${KEEP:-0}" = "1" ]; then say "kept $dir"; else rm -rf "$dir"; fi
}

cleanup() {
  [ "${STOPPED:-0}" = "1" ] && return 0
  STOPPED=1
  stop_cluster "$DIR"
}

status_cluster() {
  local dir=$1
  [ -f "$dir/pids" ] || die "no cluster at $dir"
  while read -r pid name; do
    if kill -0 "$pid" 2>/dev/null; then echo "up    $pid $name"; else echo "down  $pid $name"; fi
  done <"$dir/pids"
  if [ -f "$dir/pg/postmaster.pid" ]; then echo "up    PostgreSQL $(head -n 1 "$dir/pg/postmaster.pid")"; fi
  cat "$dir/url" 2>/dev/null || true
}

start_cluster() {
  local detach=$1
  [ -x "$ASSISTD" ] || die "$ASSISTD not found: run make install (or set ASSISTD)"
  [ -x "$CHROMA" ] || die "$CHROMA not found: the chromadb package's CLI (make install)"
  [ -f "$MODEL" ] || die "$MODEL not found: run make install (scripts/fetch_model.py) or set MODEL"
  local pgbin
  pgbin="$(pg_bindir)"
  DIR="$(mktemp -d "${TMPDIR:-/tmp}/assistd-cluster.XXXXXX")"
  chmod 755 "$DIR"
  echo "$DIR" >"$LAST"
  echo "$pgbin" >"$DIR/pgbin"
  : >"$DIR/pids"
  trap cleanup EXIT  # a failed start, Ctrl-C or a TERM stops whatever was started
  trap 'exit 0' INT TERM

  # PostgreSQL: a throwaway cluster; unix sockets in its own dir, TCP on 127.0.0.1 only.
  local pg_port
  pg_port="$(free_port)"
  mkdir -p "$DIR/pg"
  if [ "$(id -u)" = "0" ]; then chown postgres:postgres "$DIR/pg"; fi
  as_pg "$pgbin/initdb" -D "$DIR/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 ||
    { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
  touch "$DIR/postgres.log" && { [ "$(id -u)" != "0" ] || chown postgres "$DIR/postgres.log"; }
  as_pg "$pgbin/pg_ctl" start -D "$DIR/pg" -l "$DIR/postgres.log" -w \
    -o "-p $pg_port -k $DIR/pg -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null ||
    { tail -n 20 "$DIR/postgres.log" >&2; die "PostgreSQL did not start"; }
  as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres assistd
  local database_url="postgresql+psycopg://postgres@127.0.0.1:$pg_port/assistd"
  say "PostgreSQL on 127.0.0.1:$pg_port (data $DIR/pg)"

  # Chroma server.
  local chroma_port
  chroma_port="$(free_port)"
  start_bg chroma "$DIR/chroma.log" "$CHROMA" run --path "$DIR/chroma" --host 127.0.0.1 --port "$chroma_port"
  wait_up chroma "http://127.0.0.1:$chroma_port/api/v2/heartbeat" "$LAST_PID" "$DIR/chroma.log"
  local chroma_url="http://127.0.0.1:$chroma_port"
  say "Chroma on $chroma_url"

  # The inference engine, and a models file that points the model at it.
  local engine_port
  engine_port="$(free_port)"
  start_bg engine "$DIR/engine.log" env -u ASSISTD_ENGINE_KEY "$ASSISTD" engine "$MODEL" \
    --port "$engine_port" --parallel "$PARALLEL" --n-ctx "$N_CTX"
  wait_up engine "http://127.0.0.1:$engine_port/health" "$LAST_PID" "$DIR/engine.log"
  printf '[[models]]\nname = "%s"\nurl = "http://127.0.0.1:%s"\npath = "%s"\n' \
    "$MODEL_NAME" "$engine_port" "$MODEL" >"$DIR/models.toml"
  say "engine on http://127.0.0.1:$engine_port ($PARALLEL slots)"

  # The assistd nodes: the API node first (it migrates the empty database), then the workers.
  mkdir -p "$DIR/files"
  local common=(--database-url "$database_url" --chroma-url "$chroma_url" --files-dir "$DIR/files"
    --models-file "$DIR/models.toml" --default-model "$MODEL_NAME")
  start_bg api "$DIR/api.log" "$ASSISTD" serve --role api --port "$API_PORT" --data-dir "$DIR/api" "${common[@]}"
  wait_up "api node" "http://127.0.0.1:$API_PORT/health" "$LAST_PID" "$DIR/api.log"
  local i port pids=()
  for i in $(seq 1 "$WORKERS"); do
    port="$(free_port)"
    start_bg "worker-$i" "$DIR/worker-$i.log" "$ASSISTD" serve --role worker --port "$port" \
      --data-dir "$DIR/worker-$i" "${common[@]}"
    pids+=("$LAST_PID:$port:$i")
  done
  local entry
  for entry in "${pids[@]}"; do
    IFS=: read -r pid port i <<<"$entry"
    wait_up "worker-$i" "http://127.0.0.1:$port/health" "$pid" "$DIR/worker-$i.log"
  done
  echo "http://127.0.0.1:$API_PORT/v1" >"$DIR/url"
  say "$WORKERS workers up; logs and data in $DIR"
  echo "http://127.0.0.1:$API_PORT/v1"
  if [ "$detach" = "1" ]; then
    trap - EXIT INT TERM
    say "detached: scripts/cluster.sh stop $DIR"
    return 0
  fi
  say "Ctrl-C stops everything"
  while true; do sleep 1; done
}

command="${1:-start}"
case "$command" in
  start)
    detach=0
    [ "${2:-}" = "--detach" ] && detach=1
    start_cluster "$detach"
    ;;
  stop) stop_cluster "${2:-$(cat "$LAST" 2>/dev/null || true)}" ;;
  status) status_cluster "${2:-$(cat "$LAST" 2>/dev/null || true)}" ;;
  -h | --help | help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$command' (start, start --detach, stop, status)" ;;
esac
