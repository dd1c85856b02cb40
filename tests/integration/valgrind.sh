#!/bin/sh
# alertrelayd under valgrind memcheck: a --once run, then a long run with
# alerts arriving, RELOADS (default 100) SIGHUP reloads while API requests
# are in flight (the fake answers 1 s late), and SIGTERM.  From a quarter
# on, the configuration adds an output whose spool cannot be created (a
# file is in the way): those reloads must be rejected; half way the
# obstacle goes and the output arrives while another output changes
# (its spool changes hands); at three quarters it is removed again.  Any
# definite or indirect leak, or any memory error, fails (valgrind
# --error-exitcode).  Uses the fake cloud, a file output and TCP outputs to
# a small listener; needs valgrind and python3.
#   ALERTRELAY_BUILD=build tests/integration/valgrind.sh [-k]
# -k keeps the work directory.  Run from anywhere.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
B=${ALERTRELAY_BUILD:-build}
case $B in /*) ;; *) B=$top/$B ;; esac
RELOADS=${RELOADS:-100}
keep=0
[ "${1:-}" = "-k" ] && keep=1
for x in valgrind python3; do
	command -v $x >/dev/null || { echo "valgrind.sh: $x not installed"; exit 1; }
done
for x in "$B/alertrelayd" "$B/tests/fakes/fakecloud"; do
	[ -x "$x" ] || { echo "valgrind.sh: $x is not built"; exit 1; }
done

W=$(mktemp -d /tmp/alertrelay-vg.XXXXXX)
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [ $keep = 1 ] || [ "${failed:-0}" = 1 ]; then
		echo "work dir kept: $W"
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT INT TERM
fail() { echo "valgrind.sh: FAIL: $*"; failed=1; exit 1; }

VG="valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=1 --track-fds=no --num-callers=30"

# The fake cloud and a TCP sink.
"$B/tests/fakes/fakecloud" -p 0 --port-file "$W/fake.port" -t v1 -t v2 \
    --alerts 40 --seed 9 >"$W/fake.out" 2>"$W/fake.err" &
pids="$pids $!"
python3 - "$W/sink.port" "$W/sink.data" >/dev/null 2>&1 <<'EOF' &
import socket, sys, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
open(sys.argv[1] + ".tmp", "w").write("%d\n" % s.getsockname()[1])
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
out = open(sys.argv[2], "ab", buffering=0)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            return
        out.write(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
pids="$pids $!"
n=0
while [ ! -s "$W/fake.port" ] || [ ! -s "$W/sink.port" ]; do
	n=$((n + 1)); [ $n -gt 100 ] && fail "fake cloud or sink did not start"
	sleep 0.1
done
FP=$(cat "$W/fake.port"); SP=$(cat "$W/sink.port")
URL=http://127.0.0.1:$FP

mkdir -m 700 "$W/secrets"
for t in v1 v2; do
	(umask 077; echo "secret-$t" >"$W/secrets/$t")
done
conf() {	# $1: poll interval, $2: tcp's facility, $3: 1 adds output tcp2
	cat <<EOF
[daemon]
state_dir = $W/state
control_socket = $W/ctl.sock
poll_interval = $1
overlap = 2m
first_fetch = 2h

[output "file"]
transport = file
address = $W/out.cef

[output "tcp"]
transport = tcp
address = 127.0.0.1:$SP
framing = octet-counting
format = json
facility = $2
EOF
	[ "${3:-0}" = 1 ] && cat <<EOF

[output "tcp2"]
transport = tcp
address = 127.0.0.1:$SP
format = leef
EOF
	cat <<EOF

[tenant "v1"]
tenant_id = v1
client_id = 00000000-0000-0000-0000-0000000000c1
client_secret_file = $W/secrets/v1
api_url = $URL
login_url = $URL
label = Customer v1

[tenant "v2"]
tenant_id = v2
client_id = 00000000-0000-0000-0000-0000000000c1
client_secret_file = $W/secrets/v2
api_url = $URL
login_url = $URL
EOF
}
conf 1s local4 >"$W/alertrelay.conf"

summary() {	# valgrind's verdict lines from $1
	grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$1" |
	    sed 's/^==[0-9]*== *//' | tr '\n' ';'
}

# 1. --once
$VG --log-file="$W/vg.once.log" "$B/alertrelayd" -c "$W/alertrelay.conf" \
    --log-target stderr --once >"$W/once.out" 2>"$W/once.err"
rc=$?
[ $rc = 0 ] || { tail -20 "$W/once.err"; tail -40 "$W/vg.once.log";
    fail "--once under valgrind exited $rc"; }
n=$(grep -c 'CEF:0' "$W/out.cef" 2>/dev/null || echo 0)
[ "$n" -ge 80 ] || fail "--once forwarded $n alerts to the file, expected 80"
echo "valgrind --once: $n alerts; $(summary "$W/vg.once.log")"

# 2. long run: new alerts, RELOADS reloads (one changes the config), SIGTERM
$VG --log-file="$W/vg.long.log" "$B/alertrelayd" -c "$W/alertrelay.conf" \
    --log-target stderr >"$W/long.out" 2>"$W/long.err" &
vgpid=$!
pids="$pids $vgpid"
ctl() { python3 -c "import sys, urllib.request as u
u.urlopen(u.Request(sys.argv[1], data=b'', method='POST'), timeout=10).read()" "$URL/_control/$1"; }
sleep 5
kill -0 $vgpid 2>/dev/null || fail "the daemon died under valgrind"
ctl "alerts?tenant=*&n=5"
ctl "fault?tenant=v2&kind=500&arg=2"
ctl "fault?tenant=*&kind=slow&arg=1000"
newconf() {
	conf "$@" >"$W/alertrelay.conf.new" &&
	    mv "$W/alertrelay.conf.new" "$W/alertrelay.conf"
}
i=0
while [ $i -lt "$RELOADS" ]; do
	i=$((i + 1))
	case $i in
	$((RELOADS / 4)))
		echo "not a directory" >"$W/state/spool/tcp2"
		newconf 1s local4 1 ;;
	$((RELOADS / 2)))
		rm -f "$W/state/spool/tcp2"
		newconf 2s local5 1 ;;
	$((RELOADS * 3 / 4)))
		newconf 2s local5 0 ;;
	esac
	kill -HUP $vgpid 2>/dev/null || fail "the daemon died during reload $i"
	sleep 0.2
done
ctl "fault?tenant=*&kind=slow&arg=0"
ctl "alerts?tenant=*&n=5"
sleep 6
kill -TERM $vgpid
n=0
while kill -0 $vgpid 2>/dev/null; do
	n=$((n + 1)); [ $n -gt 600 ] && { kill -KILL $vgpid; fail "no exit after SIGTERM"; }
	sleep 0.1
done
wait $vgpid
rc=$?
pids=$(echo "$pids" | sed "s/ $vgpid//")
if grep -qiE "reload (is )?(not |un)available|not supported" "$W/long.err"; then
	echo "valgrind: the daemon says reload is unavailable:"
	grep -iE "reload" "$W/long.err" | head -3
fi
reloads=$(grep -c "reload applied" "$W/long.err")
rejected=$(grep -c "reload rejected" "$W/long.err")
[ $rc = 0 ] || { tail -20 "$W/long.err"; grep -A30 "definitely lost in\|indirectly lost in\|Invalid\|uninitialised" "$W/vg.long.log" | head -80;
    fail "long run under valgrind exited $rc"; }
n=$(grep -c 'CEF:0' "$W/out.cef")
[ "$n" -ge 100 ] || fail "only $n alerts reached the file output, expected 100"
[ "$rejected" -ge 1 ] && [ "$reloads" -ge 1 ] ||
    fail "$reloads reloads applied, $rejected rejected: expected both"
grep -q "output tcp2: cannot open its spool" "$W/long.err" ||
    fail "the rejected reloads do not name output tcp2's spool"
reqs=$(python3 -c "import json, sys, urllib.request as u
print(json.load(u.urlopen(sys.argv[1], timeout=10))['api_requests'])" \
    "$URL/_control/stats")
echo "valgrind long run: $RELOADS SIGHUPs ($reloads applied, $rejected rejected), $reqs API requests (1 s late during the reloads), $n alerts in the file; $(summary "$W/vg.long.log")"
echo "valgrind: ok"
