#!/usr/bin/env bash
# Instructions per ingested line, counted by callgrind: exact on a noisy machine, so two builds
# can be compared to the instruction. Runs the release chatd under valgrind, sends it a fixed
# ingest (LINES lines of 64 bytes from one client, over bash's /dev/tcp), waits until the last
# line is reported in the log file, stops it, and prints total instructions / lines.
#
# usage: bash benches/callgrind.sh [LINES]        (needs valgrind; default 200000 lines)
#        CHATD_ARGS="--log-time clock" bash benches/callgrind.sh   passes more arguments to chatd
#        CALLGRIND_OUT=cg.out bash benches/callgrind.sh   keeps the profile, for
#        `callgrind_annotate --inclusive=no cg.out` (where the instructions go, per function)
set -euo pipefail
keep=${CALLGRIND_OUT:+$(realpath -m "$CALLGRIND_OUT")}
cd "$(dirname "$0")/.."
lines=${1:-200000}
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }
cargo build --release --quiet
dir=$(mktemp -d)
pid= holder=
trap 'kill $pid $holder 2>/dev/null || true; if [ -n "$keep" ]; then cp "$dir/callgrind.out" "$keep"; fi; rm -rf "$dir"' EXIT

mkfifo "$dir/console"
sleep 600 > "$dir/console" &   # keeps the console open (and bounds the run)
holder=$!
valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
  target/release/chatd --listen 127.0.0.1:0 --log-file "$dir/chatd.log" ${CHATD_ARGS:-} \
  < "$dir/console" > "$dir/stdout.log" 2> "$dir/valgrind.log" &
pid=$!
for _ in $(seq 600); do grep -q 'listening on' "$dir/stdout.log" 2>/dev/null && break; sleep 0.1; done
port=$(grep -o 'listening on [^ "]*' "$dir/stdout.log" | head -n 1 | sed 's/.*://' || true)
if [ -z "$port" ]; then
  echo "callgrind.sh: chatd did not start; its output:" >&2
  cat "$dir/stdout.log" "$dir/valgrind.log" >&2
  exit 1
fi

line=$(printf 'x%.0s' $(seq 63))
# `yes` ends on SIGPIPE when `head` has enough, which pipefail would count as a failure.
(yes "$line" || true) | head -n "$((lines - 1))" > "$dir/input"
echo "END" >> "$dir/input"
exec 3<>"/dev/tcp/127.0.0.1/$port"
# Read the greeting first: closing a socket with unread input sends a reset, not a FIN, and the
# server would lose the lines it had not read yet.
read -r _greeting <&3
cat "$dir/input" >&3
exec 3>&-
for _ in $(seq 1200); do grep -qE ': END$|"text":"END"' "$dir/chatd.log" && break; sleep 0.5; done
grep -qE ': END$|"text":"END"' "$dir/chatd.log" || { echo "callgrind.sh: the last line was never reported" >&2; exit 1; }

kill -TERM "$pid"
wait "$pid" || true
total=$(grep -m1 '^summary:' "$dir/callgrind.out" | awk '{print $2}')
echo "callgrind: $total instructions for $lines lines of 64 B: $((total / lines)) instructions per line"
echo "(whole run: start, $lines lines from one client, shutdown; $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
