#!/usr/bin/env bash
# bench/run.sh compares aemproxy with nginx and Caddy on loopback: the same
# small Go upstream behind each, 1 KiB JSON under wrk, a token rotation under
# load, a 1 GiB download and a 256 MiB upload, and aemproxy's start-up time
# and idle memory. It installs nothing, starts everything in a temporary
# directory on 127.0.0.1 and stops all of it on exit. See bench/README.md.
#
# Usage: bench/run.sh            (from anywhere in the repository)
# Knobs (environment): DURATION=5 (seconds per wrk run), RUNS=3, CONNS=64,
# WRK_THREADS=2, PORT_BASE=18400, AEMPROXY_BIN=path (skip the build),
# KEEP_TMP=1 (keep logs and configs).
set -euo pipefail

DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
PORT_BASE=${PORT_BASE:-18400}
DOWNLOAD_BYTES=$((1 << 30))
# Tokens in the rotation test live 2*period s; aemproxy refreshes a token
# half its lifetime after fetching it (5 min before expiry, capped at half),
# so once every period. Windows of DURATION s fit between refreshes.
ROTATION_PERIOD=$((3 * DURATION < 12 ? 12 : 3 * DURATION))
ROTATION_LIFETIME=$((2 * ROTATION_PERIOD))
UPLOAD_BYTES=$((256 << 20))
BEARER="Bearer static-bench-token"

for v in DURATION RUNS CONNS WRK_THREADS PORT_BASE; do
	[[ ${!v} =~ ^[0-9]+$ ]] || { echo "run.sh: $v must be a number" >&2; exit 2; }
done
((DURATION >= 1 && DURATION <= 60 && RUNS >= 1 && RUNS <= 10)) ||
	{ echo "run.sh: DURATION must be 1..60 and RUNS 1..10" >&2; exit 2; }

# --- what it needs ----------------------------------------------------------
missing=() packages=()
need() { command -v "$1" >/dev/null 2>&1 || { missing+=("$1"); packages+=("$2"); }; }
need go "golang (or Go from go.dev)"
need curl curl
need wrk wrk
need nginx nginx
need caddy caddy
if ((${#missing[@]})); then
	echo "run.sh: missing ${missing[*]}" >&2
	echo "  on Debian: apt-get install -y ${packages[*]}" >&2
	exit 2
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/aemproxy-bench.XXXXXX")
pids=()

cleanup() {
	local pid
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [[ ${KEEP_TMP:-} == 1 ]]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }

# start NAME CMD... runs CMD in the background with its output in $tmp/NAME.log.
start() {
	local name=$1; shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	eval "pid_$name=$!"
}

# wait_http URL [HEADER]: until URL answers 200, at most 10 s.
wait_http() {
	local i
	for i in $(seq 200); do
		curl -fsS -o /dev/null -H "${2:-X-Bench: 1}" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	log "run.sh: $1 not ready after 10 s"; return 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

P_UP=$((PORT_BASE + 1)) P_IMS=$((PORT_BASE + 2)) P_IMS2=$((PORT_BASE + 3))
P_AEM=$((PORT_BASE + 10)) P_AEM_ADMIN=$((PORT_BASE + 11))
P_ROT=$((PORT_BASE + 12)) P_ROT_ADMIN=$((PORT_BASE + 13))
P_START=$((PORT_BASE + 14)) P_START_ADMIN=$((PORT_BASE + 15))
P_NGINX=$((PORT_BASE + 20)) P_CADDY=$((PORT_BASE + 30))
for p in $P_UP $P_IMS $P_IMS2 $P_AEM $P_AEM_ADMIN $P_ROT $P_ROT_ADMIN $P_START $P_START_ADMIN $P_NGINX $P_CADDY; do
	port_free "$p" || { log "run.sh: port $p is in use; set PORT_BASE"; exit 2; }
done

# --- build ------------------------------------------------------------------
log "building into $tmp/bin"
mkdir -p "$tmp/bin"
(cd "$repo" && go build -o "$tmp/bin/" ./bench/upstream ./bench/simims ./bench/startup)
if [[ -n ${AEMPROXY_BIN:-} ]]; then
	cp "$AEMPROXY_BIN" "$tmp/bin/aemproxy"
else
	(cd "$repo" && go build -o "$tmp/bin/aemproxy" ./cmd/aemproxy)
fi
bin=$tmp/bin

# --- servers ----------------------------------------------------------------
start upstream "$bin/upstream" -listen "127.0.0.1:$P_UP"
start simims "$bin/simims" -listen "127.0.0.1:$P_IMS" -credentials "$tmp/creds.json" -addr-file "$tmp/ims.addr"
wait_http "http://127.0.0.1:$P_UP/json" "Authorization: $BEARER"
wait_http "http://127.0.0.1:$P_IMS/bench/stats"

aemproxy_args() { # listen admin credentials ims-port
	echo --listen "127.0.0.1:$1" --admin-listen "127.0.0.1:$2" --upstream "http://127.0.0.1:$P_UP" \
		--credentials "$3" --ims-url "http://127.0.0.1:$4"
}
# shellcheck disable=SC2046
start aemproxy "$bin/aemproxy" $(aemproxy_args "$P_AEM" "$P_AEM_ADMIN" "$tmp/creds.json" "$P_IMS")

mkdir -p "$tmp/nginx/logs" "$tmp/nginx/tmp"
cat >"$tmp/nginx/nginx.conf" <<EOF
# One worker per core, keep-alive to the upstream, streaming both ways.
worker_processes auto;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log $tmp/nginx/logs/access.log;
  client_body_temp_path $tmp/nginx/tmp/body;
  proxy_temp_path $tmp/nginx/tmp/proxy;
  fastcgi_temp_path $tmp/nginx/tmp/fastcgi;
  uwsgi_temp_path $tmp/nginx/tmp/uwsgi;
  scgi_temp_path $tmp/nginx/tmp/scgi;
  upstream aem { server 127.0.0.1:$P_UP; keepalive 128; }
  server {
    listen 127.0.0.1:$P_NGINX;
    client_max_body_size 0;
    location / {
      proxy_pass http://aem;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "$BEARER";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
    }
  }
}
EOF
start nginx nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf"

cat >"$tmp/Caddyfile" <<EOF
{
	admin off
	auto_https off
}
http://127.0.0.1:$P_CADDY {
	reverse_proxy 127.0.0.1:$P_UP {
		header_up Authorization "$BEARER"
	}
}
EOF
mkdir -p "$tmp/caddy-home"
start caddy env HOME="$tmp/caddy-home" XDG_CONFIG_HOME="$tmp/caddy-home" XDG_DATA_HOME="$tmp/caddy-home" \
	caddy run --config "$tmp/Caddyfile" --adapter caddyfile

wait_http "http://127.0.0.1:$P_AEM_ADMIN/readyz"
wait_http "http://127.0.0.1:$P_AEM/json"
wait_http "http://127.0.0.1:$P_NGINX/json"
wait_http "http://127.0.0.1:$P_CADDY/json"

# --- helpers ----------------------------------------------------------------
# procs NAME: the pids that make up a server (nginx: master and workers).
procs() {
	local pid
	pid=$(eval echo "\$pid_$1")
	echo "$pid"
	if [[ $1 == nginx ]]; then pgrep -P "$pid" || true; fi
}
# cpu_ticks PIDS...: user+system clock ticks so far.
cpu_ticks() {
	local t=0 p f
	for p in "$@"; do
		read -r -a f <"/proc/$p/stat"
		t=$((t + f[13] + f[14]))
	done
	echo "$t"
}
# hwm_reset/hwm_kib PIDS...: reset and read peak RSS (VmHWM), summed.
hwm_reset() { local p; for p in "$@"; do echo 5 >"/proc/$p/clear_refs"; done; }
hwm_kib() {
	local p s=0 v
	for p in "$@"; do
		v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status")
		s=$((s + v))
	done
	echo "$s"
}
ims_exchanges() { curl -fsS "http://127.0.0.1:$1/bench/stats" | sed 's/.*"exchanges":\([0-9]*\).*/\1/'; }
# to_ms: wrk's "1.23ms", "456.00us", "1.02s" in milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }
# wrk_run URL SECONDS [HEADER]: prints "req_per_s p50_ms p99_ms max_ms requests errors".
wrk_run() {
	local out hdr=()
	[[ -n ${3:-} ]] && hdr=(-H "$3")
	out=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${2}s" --latency "${hdr[@]}" "$1")
	local rps p50 p99 max n errs
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
	p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
	max=$(to_ms "$(awk '$1 == "Latency" && $2 != "Distribution" {print $4}' <<<"$out")")
	n=$(awk '/requests in/ {print $1}' <<<"$out")
	errs=$(awk '/Non-2xx/ {s += $NF} /Socket errors/ {gsub(/,/, ""); s += $4 + $6 + $8 + $10} END {print s + 0}' <<<"$out")
	echo "$rps $p50 $p99 $max $n $errs"
}
median() { sort -g | awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
# verdict EXPR: "met" if the awk expression EXPR holds.
verdict() { [[ $1 == *-* ]] && { echo "no data"; return; }; awk "BEGIN { print ($1) ? \"met\" : \"NOT met\" }"; }

declare -A URL=(
	[direct]="http://127.0.0.1:$P_UP/json"
	[nginx]="http://127.0.0.1:$P_NGINX/json"
	[caddy]="http://127.0.0.1:$P_CADDY/json"
	[aemproxy]="http://127.0.0.1:$P_AEM/json"
)
HDR_direct="Authorization: $BEARER"
targets=(direct nginx caddy aemproxy)

# --- 1. streaming (first, so that peak RSS is the transfer's own) ------------
log "streaming: 1 GiB download and 256 MiB upload, $RUNS runs per target"
truncate -s "$UPLOAD_BYTES" "$tmp/upload.bin" # sparse: reading it costs no disk
cat "$tmp/upload.bin" >/dev/null                 # but the first read is slow
declare -A DL UL DL_HWM UL_HWM DL_CPU UL_CPU
stream_url() { case $1 in direct) echo "http://127.0.0.1:$P_UP" ;; nginx) echo "http://127.0.0.1:$P_NGINX" ;;
	caddy) echo "http://127.0.0.1:$P_CADDY" ;; aemproxy) echo "http://127.0.0.1:$P_AEM" ;; esac; }
# ms_per_gib TICKS BYTES
ms_per_gib() { awk -v t="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", t / hz * 1000 / (b / 2^30) }'; }
for t in "${targets[@]}"; do
	ps=("$pid_upstream")
	[[ $t != direct ]] && mapfile -t ps < <(procs "$t")
	hwm_reset "${ps[@]}"
	c0=$(cpu_ticks "${ps[@]}")
	for r in $(seq "$RUNS"); do
		DL[$t]+="$(curl -fsS -o /dev/null -H "Authorization: $BEARER" -w '%{speed_download}' --max-time 60 \
			"$(stream_url "$t")/bytes?n=$DOWNLOAD_BYTES") "
	done
	c1=$(cpu_ticks "${ps[@]}")
	DL_HWM[$t]=$(hwm_kib "${ps[@]}") DL_CPU[$t]=$(ms_per_gib $((c1 - c0)) $((RUNS * DOWNLOAD_BYTES)))
	hwm_reset "${ps[@]}"
	for r in $(seq "$RUNS"); do
		UL[$t]+="$(curl -fsS -o /dev/null -H "Authorization: $BEARER" -w '%{speed_upload}' --max-time 60 \
			-T "$tmp/upload.bin" "$(stream_url "$t")/upload") "
	done
	c2=$(cpu_ticks "${ps[@]}")
	UL_HWM[$t]=$(hwm_kib "${ps[@]}") UL_CPU[$t]=$(ms_per_gib $((c2 - c1)) $((RUNS * UPLOAD_BYTES)))
	log "  $t: download $(med "${DL[$t]}") B/s, upload $(med "${UL[$t]}") B/s"
done

# --- 2. throughput ----------------------------------------------------------
log "throughput: $RUNS x ${DURATION}s per target, wrk -t$WRK_THREADS -c$CONNS, interleaved"
declare -A RPS P50 P99 CPU HWM ERRS
for t in "${targets[@]}"; do # warm up connections and pools
	hdr=HDR_$t
	wrk_run "${URL[$t]}" 1 "${!hdr:-}" >/dev/null
done
for t in nginx caddy aemproxy; do
	# shellcheck disable=SC2046
	hwm_reset $(procs "$t")
done
ims_before=$(ims_exchanges "$P_IMS")
for r in $(seq "$RUNS"); do
	for t in "${targets[@]}"; do
		hdr=HDR_$t
		ps=()
		[[ $t != direct ]] && mapfile -t ps < <(procs "$t")
		c0=$( ((${#ps[@]})) && cpu_ticks "${ps[@]}" || echo 0)
		read -r rps p50 p99 _ n errs < <(wrk_run "${URL[$t]}" "$DURATION" "${!hdr:-}")
		c1=$( ((${#ps[@]})) && cpu_ticks "${ps[@]}" || echo 0)
		RPS[$t]+="$rps " P50[$t]+="$p50 " P99[$t]+="$p99 " ERRS[$t]=$((${ERRS[$t]:-0} + errs))
		CPU[$t]+="$(awk -v d=$((c1 - c0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", d / hz * 1e6 / n }') "
		log "  run $r $t: $rps req/s, p50 $p50 ms, p99 $p99 ms"
	done
done
ims_after=$(ims_exchanges "$P_IMS")
for t in nginx caddy aemproxy; do
	# shellcheck disable=SC2046
	HWM[$t]=$(hwm_kib $(procs "$t"))
done

# --- 3. rotation under load -------------------------------------------------
log "rotation: aemproxy with ${ROTATION_LIFETIME}s tokens, $RUNS steady and $RUNS rotation windows of ${DURATION}s"
start simims2 "$bin/simims" -listen "127.0.0.1:$P_IMS2" -credentials "$tmp/creds2.json" \
	-addr-file "$tmp/ims2.addr" -token-lifetime "${ROTATION_LIFETIME}s"
wait_http "http://127.0.0.1:$P_IMS2/bench/stats"
# shellcheck disable=SC2046
start aemproxy_rot "$bin/aemproxy" $(aemproxy_args "$P_ROT" "$P_ROT_ADMIN" "$tmp/creds2.json" "$P_IMS2")
wait_http "http://127.0.0.1:$P_ROT_ADMIN/readyz"
# The first token was fetched just now; each one is refreshed half its
# lifetime after it was fetched. Windows are placed against that clock.
period=$ROTATION_PERIOD
anchor=$(date +%s.%N)
sleep_until() { local d; d=$(awk -v t="$1" -v now="$(date +%s.%N)" 'BEGIN { d = t - now; printf "%.3f", (d > 0) ? d : 0 }'); sleep "$d"; }
ROT_URL="http://127.0.0.1:$P_ROT/json"
wrk_run "$ROT_URL" 1 >/dev/null
steady_p99="" rot_p99="" rot_max="" steady_max="" steady_ex=0 rot_ex=0
for r in $(seq "$RUNS"); do
	base=$(awk -v a="$anchor" -v k=$((r - 1)) -v p=$period 'BEGIN { printf "%.3f", a + k * p }')
	sleep_until "$(awk -v b="$base" 'BEGIN { printf "%.3f", b + 1.5 }')"
	e0=$(ims_exchanges "$P_IMS2")
	read -r _ _ p99 max _ _ < <(wrk_run "$ROT_URL" "$DURATION")
	e1=$(ims_exchanges "$P_IMS2")
	steady_p99+="$p99 " steady_max+="$max " steady_ex=$((steady_ex + e1 - e0))
	log "  cycle $r steady:   p99 $p99 ms, max $max ms, IMS exchanges $((e1 - e0))"
	# centre the next window on the refresh point base+period
	sleep_until "$(awk -v b="$base" -v p=$period -v d="$DURATION" 'BEGIN { printf "%.3f", b + p - d / 2 }')"
	e0=$(ims_exchanges "$P_IMS2")
	read -r _ _ p99 max _ _ < <(wrk_run "$ROT_URL" "$DURATION")
	e1=$(ims_exchanges "$P_IMS2")
	rot_p99+="$p99 " rot_max+="$max " rot_ex=$((rot_ex + e1 - e0))
	log "  cycle $r rotation: p99 $p99 ms, max $max ms, IMS exchanges $((e1 - e0))"
done
kill -TERM "$pid_aemproxy_rot" "$pid_simims2" 2>/dev/null || true

# --- 4. start-up and idle memory --------------------------------------------
# With a local development token (the goal's case: no IMS call before ready)
# and with service credentials (one JWT exchange with the simulated IMS).
printf 'bench-dev-token-%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$tmp/dev-token.txt"
chmod 600 "$tmp/dev-token.txt"
startup() { # credentials-file -> "ready_ms idle_kib"
	local out
	# shellcheck disable=SC2046
	out=$("$bin/startup" -url "http://127.0.0.1:$P_START_ADMIN/readyz" -runs "$((RUNS < 3 ? 3 : RUNS))" -- \
		"$bin/aemproxy" $(aemproxy_args "$P_START" "$P_START_ADMIN" "$1" "$P_IMS"))
	sed -n 's/^median: ready_ms=\([0-9.]*\) idle_rss_kib=\([0-9]*\).*/\1 \2/p' <<<"$out"
}
log "start-up: aemproxy $((RUNS < 3 ? 3 : RUNS)) times with a dev token, then with service credentials"
read -r ready_ms idle_kib < <(startup "$tmp/dev-token.txt")
read -r sc_ready_ms sc_idle_kib < <(startup "$tmp/creds.json")

unauthorized=$(curl -fsS "http://127.0.0.1:$P_UP/stats" | sed 's/.*"unauthorized":\([0-9]*\).*/\1/')

# --- report -----------------------------------------------------------------
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
mbs() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1e6 }'; }
n_rps=$(med "${RPS[nginx]}") c_rps=$(med "${RPS[caddy]}") a_rps=$(med "${RPS[aemproxy]}")
n_p99=$(med "${P99[nginx]}") a_p99=$(med "${P99[aemproxy]}")

cat <<EOF

aemproxy bench, $(date -u +%Y-%m-%dT%H:%MZ): $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(go env GOVERSION), $(nginx -v 2>&1 | sed 's/.*: //'), caddy $(caddy version | awk '{print $1}'), wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s x $RUNS runs (medians); load average before the run: $load_start

GET 1 KiB JSON
| target | req/s | p50 ms | p99 ms | vs nginx | vs Caddy | CPU µs/req | peak RSS MiB |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
EOF
for t in "${targets[@]}"; do
	rps=$(med "${RPS[$t]}")
	cpu=$( [[ $t == direct ]] && echo - || med "${CPU[$t]}")
	hwm=$( [[ $t == direct ]] && echo - || mib "${HWM[$t]}")
	name=$t
	[[ $t == direct ]] && name="upstream direct (no proxy)"
	printf '| %s | %.0f | %s | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$(med "${P50[$t]}")" "$(med "${P99[$t]}")" \
		"$(ratio "$rps" "$n_rps")" "$(ratio "$rps" "$c_rps")" "$cpu" "$hwm"
done
cat <<EOF

Token rotation under load (aemproxy, ${ROTATION_LIFETIME}s tokens, windows of ${DURATION}s)
| window | p99 ms | max ms | IMS exchanges |
| --- | ---: | ---: | ---: |
| steady (no refresh due) | $(med "$steady_p99") | $(med "$steady_max") | $steady_ex |
| containing a refresh | $(med "$rot_p99") | $(med "$rot_max") | $rot_ex |

Streaming (curl, one transfer at a time; CPU and RSS are the proxy's, or the upstream's for direct)
| target | 1 GiB download MB/s | vs direct | CPU ms/GiB | peak RSS MiB | 256 MiB upload MB/s | vs direct | CPU ms/GiB | peak RSS MiB |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
EOF
for t in "${targets[@]}"; do
	d=$(med "${DL[$t]}") u=$(med "${UL[$t]}")
	name=$t
	[[ $t == direct ]] && name="upstream direct (no proxy)"
	printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(mbs "$d")" "$(ratio "$d" "$(med "${DL[direct]}")")" \
		"${DL_CPU[$t]}" "$(mib "${DL_HWM[$t]}")" "$(mbs "$u")" "$(ratio "$u" "$(med "${UL[direct]}")")" \
		"${UL_CPU[$t]}" "$(mib "${UL_HWM[$t]}")"
done
dl_ratio=$(ratio "$(med "${DL[aemproxy]}")" "$(med "${DL[direct]}")")
ul_ratio=$(ratio "$(med "${UL[aemproxy]}")" "$(med "${UL[direct]}")")
cat <<EOF

Start-up (aemproxy; median of runs)
| credentials | start to /readyz 200 | idle RSS |
| --- | ---: | ---: |
| local development token | ${ready_ms} ms | $(mib "$idle_kib") MiB |
| service credentials (one exchange with the simulated IMS) | ${sc_ready_ms} ms | $(mib "$sc_idle_kib") MiB |

Goals
| goal | measured | |
| --- | --- | --- |
| throughput >= 0.5x nginx | $(ratio "$a_rps" "$n_rps")x | $(verdict "$(ratio "$a_rps" "$n_rps") >= 0.5") |
| throughput >= 2x Caddy | $(ratio "$a_rps" "$c_rps")x | $(verdict "$(ratio "$a_rps" "$c_rps") >= 2") |
| p99 <= 3x nginx p99 | $(ratio "$a_p99" "$n_p99")x | $(verdict "$(ratio "$a_p99" "$n_p99") <= 3") |
| no IMS exchange in steady state | $((ims_after - ims_before)) during the throughput runs, $steady_ex in steady windows | $(verdict "$((ims_after - ims_before + steady_ex)) == 0") |
| a rotation happened in each rotation window | $rot_ex exchanges in $RUNS windows | $(verdict "$rot_ex >= $RUNS") |
| p99 during rotation <= 1.5x steady p99 | $(ratio "$(med "$rot_p99")" "$(med "$steady_p99")")x | $(verdict "$(ratio "$(med "$rot_p99")" "$(med "$steady_p99")") <= 1.5") |
| 1 GiB download >= 0.7x direct, peak RSS <= 64 MiB | ${dl_ratio}x, $(mib "${DL_HWM[aemproxy]}") MiB | $(verdict "$dl_ratio >= 0.7 && ${DL_HWM[aemproxy]} <= 65536") |
| 256 MiB upload >= 0.7x direct, peak RSS <= 64 MiB | ${ul_ratio}x, $(mib "${UL_HWM[aemproxy]}") MiB | $(verdict "$ul_ratio >= 0.7 && ${UL_HWM[aemproxy]} <= 65536") |
| idle RSS <= 20 MiB | $(mib "$idle_kib") MiB | $(verdict "$idle_kib <= 20480") |
| start to ready <= 100 ms with a dev token | ${ready_ms} ms | $(verdict "$ready_ms <= 100") |

Errors: wrk non-2xx/socket errors: nginx ${ERRS[nginx]}, caddy ${ERRS[caddy]}, aemproxy ${ERRS[aemproxy]}, direct ${ERRS[direct]}; upstream saw $unauthorized requests without a bearer.
EOF
