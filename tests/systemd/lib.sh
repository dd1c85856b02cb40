# lib.sh: sourced by check_systemd.sh (which sets top, B, here, logs,
# suite, mirror, secmirror, pkgs, deb, fake_url, conf, creds and the ok/fail
# helpers).  The container's machinery first, then one function per check.

# ---- the root ----

# The cached minimal root: $cache, made with mmdebstrap when absent.  The
# key covers everything the root is made from, so a change makes a new one.
root_cache() {
	key=$(printf '%s\n' 1 "$suite" "$mirror" "$secmirror" "$pkgs" |
	    sha256sum | cut -c1-12)
	cache=$B/systemd-root-$key.tar
	if [ -s "$cache" ]; then
		cache_note="cached ${cache##*/}, $(du -m "$cache" | cut -f1) MB"
		return 0
	fi
	rm -f "$B"/systemd-root-*.tar "$B"/systemd-root-*.tar.part
	if ! mmdebstrap --variant=minbase --format=tar --include="$pkgs" \
	    "$suite" "$cache.part" "deb $mirror $suite main" \
	    "deb $mirror $suite-updates main" \
	    "deb $secmirror $suite-security main" \
	    </dev/null >"$logs/mmdebstrap.log" 2>&1; then
		tail -n 30 "$logs/mmdebstrap.log"
		fail "mmdebstrap --variant=minbase $suite (from $mirror)"
		rm -f "$cache.part"
		return 1
	fi
	mv "$cache.part" "$cache"
	cache_note="made with mmdebstrap, $(du -m "$cache" | cut -f1) MB,"
	cache_note="$cache_note cached as ${cache##*/}"
}

# What the test adds before boot: the package and the fake to install and
# run, the fake's unit (enabled), and syslog-ng's configuration.
root_prepare() {
	d=$root/srv/alertrelay-test
	install -d "$d" "$root/etc/systemd/system/multi-user.target.wants"
	cp "$B/tests/fakes/fakecloud" "$d/fakecloud"
	cp "$deb" "$d/alertrelay.deb"
	cp "$here/fakecloud.service" "$root/etc/systemd/system/"
	ln -sf ../fakecloud.service \
	    "$root/etc/systemd/system/multi-user.target.wants/fakecloud.service"
	cp "$here/syslog-ng.conf" "$root/etc/syslog-ng/syslog-ng.conf"
}

# ---- the container ----

# A command inside the booted container (its namespaces, root and
# binaries); CT seconds at most (default 60).
C() {
	timeout -k 5 "${CT:-60}" nsenter -t "$leader" -a -r -w \
	    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
	    SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 "$@" </dev/null
}

# A host program in the container's network namespace only (curl).
N() {
	timeout -k 5 20 nsenter -t "$leader" -n "$@" </dev/null
}

fake_get() { N curl -sf --max-time 10 "$fake_url$1"; }
fake_post() { N curl -sf --max-time 10 -X POST -d '' "$fake_url$1"; }

# Boot the root; sets nspawn (its PID), leader (the container's init, as a
# host PID), pidns and boot_state.
container_boot() {
	keep=""
	# Without systemd on the host there is no bus to ask for a scope.
	[ -d /run/systemd/system ] || keep=--keep-unit
	systemd-nspawn --quiet --boot --register=no $keep --private-network \
	    --link-journal=no --resolv-conf=off --timezone=off \
	    --console=passive --machine="alertrelay-check-$$" -D "$root" \
	    </dev/null >"$logs/console.log" 2>&1 &
	nspawn=$!
	deadline=$(($(now) + 30))
	while [ -z "$leader" ] && [ "$(now)" -lt "$deadline" ]; do
		kill -0 "$nspawn" 2>/dev/null || break
		for c in $(cat /proc/"$nspawn"/task/*/children 2>/dev/null); do
			grep -Eq '^NSpid:.*[[:space:]]1$' /proc/"$c"/status \
			    2>/dev/null && leader=$c
		done
		[ -n "$leader" ] || sleep 0.1
	done
	if [ -z "$leader" ]; then
		tail -n 30 "$logs/console.log"
		fail "systemd-nspawn --boot: no container init appeared"
		return 1
	fi
	pidns=$(readlink /proc/"$leader"/ns/pid)
	# systemctl needs the manager's socket, there once PID 1 is set up.
	while ! C test -S /run/systemd/private && [ "$(now)" -lt "$deadline" ]
	do
		sleep 0.1
	done
	boot_state=$(CT=120 C systemctl is-system-running --wait)
	case $boot_state in
	running) ;;
	degraded)
		C systemctl --failed --no-legend | sed 's/^/       failed: /' ;;
	*)
		tail -n 30 "$logs/console.log"
		fail "the container did not boot: is-system-running said" \
		    "\"$boot_state\""
		return 1 ;;
	esac
	CT=30 C systemctl is-active --quiet fakecloud syslog-ng || {
		C systemctl status --no-pager fakecloud syslog-ng
		fail "fakecloud.service and syslog-ng.service active"
		return 1
	}
}

# Host PIDs of every process in the container's PID namespace.
ns_procs() {
	[ -n "${pidns:-}" ] || return 0
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$pidns" ] &&
		    echo "${p#/proc/}"
	done | tr '\n' ' '
}

# Power the container off (SIGTERM to nspawn), or kill it after 30 s;
# then kill, by PID, anything left in its PID namespace.  Idempotent.
container_stop() {
	nspawn_done=${nspawn:-}
	if [ -n "${nspawn:-}" ]; then
		kill -TERM "$nspawn" 2>/dev/null
		deadline=$(($(now) + 30))
		while kill -0 "$nspawn" 2>/dev/null &&
		    [ "$(now)" -lt "$deadline" ]; do
			sleep 0.2
		done
		if kill -0 "$nspawn" 2>/dev/null; then
			echo "check-systemd: the container did not power off" \
			    "in 30s; killing it" >&2
			kill -KILL "$nspawn" 2>/dev/null
			[ -n "$leader" ] && kill -KILL "$leader" 2>/dev/null
		fi
		wait "$nspawn" 2>/dev/null
		nspawn=""
	fi
	for p in $(ns_procs); do
		kill -KILL "$p" 2>/dev/null
	done
	if [ -n "$root" ] && [ "${ALERTRELAY_KEEP:-0}" != 1 ]; then
		rm -rf "$root"
		root=""
	fi
}

# ---- the service ----

show=""
prop() { printf '%s\n' "$show" | sed -n "s/^$1=//p"; }
main_pid() { C systemctl show -p MainPID --value alertrelayd; }
# The UID a (container) PID runs as.
pid_uid() {
	C sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status"
}

# The last line of alertrelayd's journal (journalctl -u alertrelayd $2...)
# holding the fixed string $1; journald takes lines asynchronously, so wait
# up to 10 s for one.
journal_wait() {
	pat=$1
	shift
	jdeadline=$(($(now) + 10))
	while :; do
		line=$(C journalctl -u alertrelayd "$@" -o cat | grep -F -- "$pat" |
		    tail -n 1)
		[ -n "$line" ] && break
		[ "$(now)" -ge "$jdeadline" ] && break
		sleep 0.2
	done
	printf '%s\n' "$line"
}

# The test configuration, for tenants $@; POLL overrides poll_interval.
write_conf() {
	{
		echo "# check-systemd: tenants $*"
		echo "[daemon]"
		echo "poll_interval = ${POLL:-2s}"
		echo "first_fetch = 2h"
		echo "overlap = 5m"
		echo
		echo "[output \"siem\"]"
		echo "transport = tcp"
		echo "address = 127.0.0.1:5514"
		for t in "$@"; do
			echo
			echo "[tenant \"$t\"]"
			echo "label = $t"
			echo "tenant_id = $t"
			echo "client_id = 00000000-0000-0000-0000-0000000000c1"
			echo "client_secret_file = $creds/$t"
			echo "api_url = $fake_url"
			echo "login_url = $fake_url"
		done
	} >"$root$conf.new"
	mv "$root$conf.new" "$root$conf"
}

# Secrets root-only in /etc/alertrelay/secrets, handed over with
# LoadCredential= in a drop-in (with a short watchdog and restart delay
# for the watchdog check), and the configuration for tenants $@.
service_configure() {
	install -d -m 0700 "$root/etc/alertrelay/secrets"
	dd=$root/etc/systemd/system/alertrelayd.service.d
	install -d "$dd"
	echo "[Service]" >"$dd/check-systemd.conf"
	for t in contoso fabrikam tailspin; do
		(umask 077; printf 'secret-%s\n' "$t" \
		    >"$root/etc/alertrelay/secrets/$t")
		echo "LoadCredential=$t:/etc/alertrelay/secrets/$t" \
		    >>"$dd/check-systemd.conf"
	done
	printf 'WatchdogSec=5s\nRestartSec=1s\n' >>"$dd/check-systemd.conf"
	write_conf "$@"
	C systemctl daemon-reload
}

# Wait up to $1 s until every version the fake has made visible (now) for
# tenants $2... reached syslog-ng; sets dl_have, dl_want, dl_dups, dl_secs.
wait_delivered() {
	secs=$1
	shift
	args=""
	for tn in "$@"; do
		fake_get "/_control/versions?tenant=$tn" \
		    >"$logs/versions-$tn.json" || {
			dl_have=0 dl_want="?" dl_dups="?" dl_secs=0
			note "the fake's /_control/versions?tenant=$tn failed"
			return 1
		}
		args="$args $tn=$logs/versions-$tn.json"
	done
	t0=$(now)
	while :; do
		res=$(python3 "$here/delivered.py" \
		    "$root/var/log/siem/alerts.log" $args 2>/dev/null)
		rc=$?
		# shellcheck disable=SC2086
		set -- $res
		dl_have=${1:-0} dl_want=${2:-?} dl_dups=${3:-?}
		dl_secs=$(since "$t0")
		[ $rc -eq 0 ] && return 0
		[ "$dl_secs" -ge "$secs" ] && return 1
		sleep 0.5
	done
}

# ---- the checks ----

check_credentials() {
	uid=$(pid_uid "$mainpid")
	out=$(C stat -c '%a %u' "$creds/contoso" "$creds/fabrikam" | sort -u)
	if [ "$out" = "400 $uid" ]; then
		ok "LoadCredential=: $creds/{contoso,fabrikam} mode 0400," \
		    "owned by the service's UID $uid, and used (alerts above)"
	else
		fail "credentials in $creds: \"$out\" (expected 400 $uid)"
	fi
	n=$(C journalctl -u alertrelayd -o cat | grep -c 'secret-[a-z]')
	[ "$n" -eq 0 ] && ok "no secret value in alertrelayd's journal" ||
	    fail "$n journal lines of alertrelayd hold a secret value"
}

check_state_dir() {
	uid=$(pid_uid "$mainpid")
	out=$(C stat -L -c '%u %a' /var/lib/alertrelay)
	link=$(C readlink /var/lib/alertrelay)
	if [ "$out" = "$uid 700" ] && [ "$uid" -ge 61184 ] &&
	    [ "$uid" -le 65519 ]; then
		ok "the dynamic user (UID $uid, the daemon's) owns" \
		    "/var/lib/alertrelay (-> $link), mode 0700"
	else
		fail "/var/lib/alertrelay: owner and mode \"$out\"; the" \
		    "daemon runs as UID $uid (expected a dynamic UID, 0700)"
	fi
}

# A healthy tenant logs little: make both fail a few calls (the fake's
# 500 fault), so each has entries of its own, then filter.
check_journal_tenant() {
	fake_post "/_control/fault?tenant=contoso&kind=500&arg=2" >/dev/null
	fake_post "/_control/fault?tenant=fabrikam&kind=500&arg=1" >/dev/null
	f=$logs/journal-contoso.export
	deadline=$(($(now) + 30))
	while :; do
		C journalctl -u alertrelayd TENANT=contoso -o export \
		    --output-fields=TENANT >"$f"
		nf=$(C journalctl -u alertrelayd TENANT=fabrikam -o export \
		    --output-fields=TENANT | grep -c '^TENANT=fabrikam$')
		n=$(grep -c '^__CURSOR=' "$f")
		[ "$n" -gt 0 ] && [ "$nf" -gt 0 ] && break
		[ "$(now)" -ge "$deadline" ] && break
		sleep 0.5
	done
	m=$(grep -c '^TENANT=contoso$' "$f")
	all=$(C journalctl -u alertrelayd -o export --output-fields=TENANT |
	    grep -c '^__CURSOR=')
	if [ "$n" -gt 0 ] && [ "$m" -eq "$n" ] && [ "$nf" -gt 0 ] &&
	    [ "$all" -gt "$n" ]; then
		ok "journalctl -u alertrelayd TENANT=contoso: $n entries, all" \
		    "contoso's (fabrikam has $nf, the unit $all)"
	else
		fail "journalctl TENANT=contoso: $n entries, $m with" \
		    "TENANT=contoso; fabrikam $nf; all $all"
	fi
}

check_reload_good() {
	write_conf contoso fabrikam tailspin
	t=$(now)
	if ! C systemctl reload alertrelayd >"$logs/reload-good.out" 2>&1
	then
		cat "$logs/reload-good.out"
		C journalctl -u alertrelayd -n 20 --no-pager
		fail "systemctl reload with a good configuration"
		return
	fi
	said=$(journal_wait "reload applied" SYSLOG_IDENTIFIER=alertrelayctl)
	pid=$(main_pid)
	if [ "$pid" = "$mainpid" ] && [ "$said" = "reload applied" ]; then
		ok "systemctl reload (good configuration): applied in" \
		    "$(since "$t")s, same PID, alertrelayctl said \"$said\""
	else
		fail "systemctl reload: PID $mainpid -> $pid, alertrelayctl" \
		    "said \"$said\""
	fi
	if wait_delivered 60 tailspin; then
		ok "tenant tailspin, added by the reload: $dl_have of" \
		    "$dl_want versions delivered ($dl_secs s)"
	else
		fail "tailspin after the reload: $dl_have of $dl_want" \
		    "delivered after $dl_secs s"
	fi
}

check_reload_broken() {
	POLL=whenever write_conf contoso fabrikam tailspin
	line=$(grep -n '^poll_interval = whenever' "$root$conf" | cut -d: -f1)
	where="$conf:$line:"
	if C systemctl reload alertrelayd >"$logs/reload-bad.out" 2>&1; then
		fail "systemctl reload of a broken configuration succeeded"
	else
		ok "systemctl reload of a broken configuration fails:" \
		    "$(head -n 1 "$logs/reload-bad.out")"
	fi
	d=$(journal_wait "$where" SYSLOG_IDENTIFIER=alertrelayd)
	c=$(journal_wait "$where" SYSLOG_IDENTIFIER=alertrelayctl)
	if [ -n "$d" ] && [ -n "$c" ]; then
		ok "the journal shows the error from the daemon and from" \
		    "alertrelayctl: $c"
	else
		C journalctl -u alertrelayd -n 20 --no-pager
		fail "no \"$where\" error in the journal (daemon: \"$d\"," \
		    "alertrelayctl: \"$c\")"
	fi
	show=$(C systemctl show -p ActiveState -p MainPID alertrelayd)
	if [ "$(prop ActiveState)" = active ] &&
	    [ "$(prop MainPID)" = "$mainpid" ]; then
		ok "after the rejected reload the daemon runs on (PID $mainpid)"
	else
		fail "after the rejected reload: $(prop ActiveState)," \
		    "PID $(prop MainPID) (was $mainpid)"
	fi
	fake_post "/_control/alerts?tenant=contoso&n=3" >/dev/null
	fake_post "/_control/alerts?tenant=tailspin&n=3" >/dev/null
	if wait_delivered 60 contoso tailspin; then
		ok "the old configuration keeps delivering: new alerts in," \
		    "$dl_have of $dl_want versions ($dl_secs s)"
	else
		fail "after the rejected reload: $dl_have of $dl_want" \
		    "delivered after $dl_secs s"
	fi
	write_conf contoso fabrikam tailspin
}

check_security() {
	C systemd-analyze security alertrelayd.service --no-pager \
	    >"$logs/security.out" 2>&1
	exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' \
	    "$logs/security.out")
	if [ -n "$exposure" ] && awk -v e="$exposure" -v m="$max_exposure" \
	    'BEGIN { exit !(e <= m) }'; then
		ok "systemd-analyze security (online, the running unit):" \
		    "exposure $exposure <= $max_exposure"
	else
		grep "✗" "$logs/security.out"
		tail -n 3 "$logs/security.out"
		fail "exposure ${exposure:-unknown} > $max_exposure"
	fi
}

check_watchdog() {
	show=$(C systemctl show -p NRestarts -p MainPID alertrelayd)
	n0=$(prop NRestarts)
	pid0=$(prop MainPID)
	t=$(now)
	C systemctl kill --kill-who=main --signal=SIGSTOP alertrelayd
	while :; do
		show=$(C systemctl show -p NRestarts -p MainPID -p ActiveState \
		    -p SubState alertrelayd)
		[ "$(prop NRestarts)" -gt "$n0" ] &&
		    [ "$(prop ActiveState)/$(prop SubState)" = active/running ] &&
		    break
		[ "$(since "$t")" -ge 60 ] && break
		sleep 0.2
	done
	pid1=$(prop MainPID)
	secs=$(since "$t")
	why=$(journal_wait "Watchdog timeout")
	if [ "$(prop NRestarts)" -gt "$n0" ] && [ "$pid1" != "$pid0" ] &&
	    [ "$(prop ActiveState)" = active ] && [ -n "$why" ]; then
		ok "WatchdogSec=5s: the SIGSTOPped daemon (PID $pid0) timed" \
		    "out and was restarted (PID $pid1) in ${secs}s: $why"
	else
		fail "watchdog: NRestarts $n0 -> $(prop NRestarts), PID" \
		    "$pid0 -> $pid1, $(prop ActiveState), logged: \"$why\""
		return
	fi
	mainpid=$pid1
	fake_post "/_control/alerts?tenant=fabrikam&n=2" >/dev/null
	if wait_delivered 60 contoso fabrikam tailspin; then
		ok "after the restart: every version delivered," \
		    "$dl_have of $dl_want"
	else
		fail "after the restart: $dl_have of $dl_want delivered"
	fi
}

check_stop() {
	t=$(date +%s%3N)
	C systemctl stop alertrelayd >"$logs/stop.out" 2>&1
	rc=$?
	ms=$(($(date +%s%3N) - t))
	show=$(C systemctl show -p ActiveState -p Result -p ExecMainStatus \
	    alertrelayd)
	if [ $rc -eq 0 ] && [ "$(prop ActiveState)" = inactive ] &&
	    [ "$(prop Result)" = success ] &&
	    [ "$(prop ExecMainStatus)" = 0 ] &&
	    [ "$ms" -le $((stop_deadline * 1000)) ]; then
		ok "systemctl stop: exit 0 in ${ms}ms (deadline" \
		    "${stop_deadline}s)"
	else
		fail "systemctl stop: rc $rc, $(prop ActiveState), result" \
		    "$(prop Result), status $(prop ExecMainStatus), ${ms}ms"
	fi
}
