#!/bin/sh
# make demo: a local fake cloud with three demo tenants producing alerts
# and incidents over time; alertrelayd polls them and prints CEF on this
# terminal.
# DEMO_SECONDS=N stops after N seconds (default 60; 0 runs until Ctrl-C).
set -e
B=${1:-build}
SECS=${DEMO_SECONDS:-60}
D=$(mktemp -d /tmp/alertrelay-demo.XXXXXX)
FAKE_PID=""
cleanup() {
	[ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT INT TERM

"$B/tests/fakes/fakecloud" -p 0 --port-file "$D/port" \
    -t contoso -t fabrikam -t tailspin --alerts 4 --spread 30m \
    --rate 0.5 --update-rate 0.2 --incident-rate 0.2 --seed 7 >"$D/fake.out" 2>"$D/fake.err" &
FAKE_PID=$!
i=0
while [ ! -s "$D/port" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
PORT=$(cat "$D/port")
[ -n "$PORT" ] || { echo "demo: the fake cloud did not start" >&2; exit 1; }

umask 077
for t in contoso fabrikam tailspin; do
	printf 'secret-%s\n' "$t" >"$D/$t.secret"
done
cat >"$D/alertrelay.conf" <<CONF
# Demo: three customer tenants served by a local fake of Entra ID and
# Defender for Endpoint on 127.0.0.1:$PORT.
[daemon]
state_dir = $D/state
poll_interval = 5s
overlap = 2m
first_fetch = 1h
control_socket = $D/control.sock

[output "terminal"]
transport = stdout
format = cef
syslog_header = none

# Contoso is read through Microsoft Graph, with its incidents.
[tenant "contoso"]
label = Contoso Ltd
tenant_id = contoso
client_id = 00000000-0000-0000-0000-0000000000c1
client_secret_file = $D/contoso.secret
source = graph
incidents = yes
api_url = http://127.0.0.1:$PORT
login_url = http://127.0.0.1:$PORT

[tenant "fabrikam"]
label = Fabrikam Inc
tenant_id = fabrikam
client_id = 00000000-0000-0000-0000-0000000000c1
client_secret_file = $D/fabrikam.secret
api_url = http://127.0.0.1:$PORT
login_url = http://127.0.0.1:$PORT

[tenant "tailspin"]
label = Tailspin Toys
tenant_id = tailspin
client_id = 00000000-0000-0000-0000-0000000000c1
client_secret_file = $D/tailspin.secret
api_url = http://127.0.0.1:$PORT
login_url = http://127.0.0.1:$PORT
CONF

echo "demo: fake cloud on 127.0.0.1:$PORT with tenants contoso, fabrikam," \
    "tailspin; CEF follows (log on stderr)." >&2
[ "$SECS" -gt 0 ] && echo "demo: stopping after ${SECS}s" \
    "(DEMO_SECONDS=0 runs until Ctrl-C)" >&2
"$B/alertrelayd" -c "$D/alertrelay.conf" --log-target stderr &
PID=$!
if [ "$SECS" -gt 0 ]; then
	( sleep "$SECS"; kill -TERM "$PID" 2>/dev/null ) &
fi
wait "$PID" || true
