"""Integration cases for the control socket (alertrelayctl) and the
Prometheus metrics endpoint: status against what syslog-ng really
received, reload, check-tenant diagnoses against the fake cloud's faults,
cursor show/set, backfill, and the socket's access rules.  Loaded by
harness.py next to cases.py (every cases_*.py exports CASES)."""

import json
import shutil
import os
import re
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from harness import (Daemon, Fail, compare, deliveries, iso_to_ms, log,
                     ms_to_iso, tail, wait_for, wait_delivered)

WRONG = "Wr0ng~Ctl.secret_Zq9"
EX_USAGE, EX_UNAVAILABLE = 64, 69


def ctl(ctx, *args, sock=None, timeout=60, user=None):
    """Run alertrelayctl; (status, stdout, stderr)."""
    exe = os.path.join(ctx.suite.build, "alertrelayctl")
    if not os.access(exe, os.X_OK):
        raise Fail("%s is not built" % exe)
    sock = sock or os.path.join(ctx.dir, "ctl.sock")
    pre = None
    copy_dir = None
    if user is not None:
        def pre():
            os.setgid(user)
            os.setuid(user)
        # The checkout may sit below a directory only root can enter:
        # run a copy the other user can reach.
        copy_dir = tempfile.mkdtemp(prefix="alertrelayctl.")
        os.chmod(copy_dir, 0o755)
        shutil.copy(exe, copy_dir)
        exe = os.path.join(copy_dir, "alertrelayctl")
        os.chmod(exe, 0o755)
    argv = [exe, "-s", sock] + list(args)
    log("ctl: %s" % " ".join(argv))
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout,
                           preexec_fn=pre)
    except subprocess.TimeoutExpired:
        raise Fail("alertrelayctl %s did not finish within %ds"
                   % (" ".join(args), timeout))
    finally:
        if copy_dir is not None:
            shutil.rmtree(copy_dir, ignore_errors=True)
    return (r.returncode, r.stdout.decode("utf-8", "replace"),
            r.stderr.decode("utf-8", "replace"))


def ctl_ok(ctx, *args, **kw):
    rc, out, err = ctl(ctx, *args, **kw)
    if rc != 0:
        raise Fail("alertrelayctl %s exited %d:\n%s"
                   % (" ".join(args), rc, tail(out + err)))
    return out


def status_json(ctx):
    out = ctl_ok(ctx, "status", "--json")
    try:
        return json.loads(out)
    except ValueError as e:
        raise Fail("status --json is not JSON (%s):\n%s" % (e, tail(out)))


def tenant_of(st, name):
    for t in st["tenants"]:
        if t["name"] == name:
            return t
    raise Fail("status --json has no tenant %s: %s"
               % (name, [t["name"] for t in st["tenants"]]))


def start(ctx, daemon=None, umask=0o022, metrics=False):
    """(Re)write the config with extra [daemon] keys and start; with
    metrics, on a metrics port of its own (ctx.metrics_port)."""
    ctx.metrics_port = ctx.start_daemon(daemon=daemon, umask=umask,
                                        metrics=metrics)
    sock = os.path.join(ctx.dir, "ctl.sock")
    wait_for(lambda: ctx.daemon.alive() and os.path.exists(sock) and
             ctl(ctx, "status")[0] == 0, 15,
             "the control socket %s to answer" % sock)
    return sock


def per_label(dels):
    c = {}
    for d in dels:
        c[d.label] = c.get(d.label, 0) + 1
    return c


def settle(ctx, source="octet"):
    marker = "harness-marker-%d" % time.monotonic_ns()
    ctx.sng.inject(source, marker)
    wait_for(lambda: any(r.get("MESSAGE", "").endswith(marker)
                         for r in ctx.sng.messages(source)),
             10, "syslog-ng to write a marker message")


def delivered(ctx, source="octet"):
    return deliveries(ctx.suite, ctx.sng.messages(source))


def no_secrets(what, text, secrets):
    for s in secrets:
        if s in text:
            raise Fail("%s shows a secret (%r)" % (what, s))
    m = re.search(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+", text)
    if m:
        raise Fail("%s shows what looks like an access token: %s..."
                   % (what, m.group(0)[:20]))


def scrape(port, path="/metrics"):
    url = "http://127.0.0.1:%d%s" % (port, path)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), \
                r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), ""


SAMPLE_RE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, frozenset(labels)): value}, {name: type}; fails on lines
    the text format does not allow or samples without HELP/TYPE."""
    samples, types, helps = {}, {}, set()
    for line in text.split("\n"):
        if not line:
            continue
        if line.startswith("# HELP "):
            helps.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            f = line.split(" ")
            types[f[2]] = f[3]
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise Fail("metrics line not in the text format: %r" % line)
        name = m.group(1)
        fam = re.sub(r"_(bucket|sum|count)$", "", name)
        if types.get(fam) != "histogram":
            fam = name
        if fam not in types or fam not in helps:
            raise Fail("metric %s has no HELP/TYPE lines" % name)
        labels = frozenset(LABEL_RE.findall(m.group(3) or ""))
        samples[(name, labels)] = float(m.group(4))
    return samples, types


def metric(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    if key not in samples:
        raise Fail("metrics have no %s%r" % (name, labels))
    return samples[key]


# --------------------------------------------------------------------------
# ctl_status: status (table and JSON) and metrics against reality.

def check_ctl_status(ctx):
    start(ctx, metrics=True)
    mport = ctx.metrics_port
    good = [("t1", "Customer t1 Ltd"), ("t2", "Customer t2 Ltd")]
    exp = ctx.expected(only=("t1", "t2"))
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30,
                   daemon=ctx.daemon, what="t1 and t2's alerts")
    # Let t3 (wrong secret) fail at least once, and everything drain.
    wait_for(lambda: tenant_of(status_json(ctx), "t3")["failing"], 20,
             "t3 to be reported failing")
    wait_for(lambda: all(o["spool_records"] == 0
                         for o in status_json(ctx)["outputs"]), 20,
             "the spool to drain")
    settle(ctx)
    got = per_label(delivered(ctx))
    st = status_json(ctx)
    now_ms = time.time() * 1000
    total = 0
    for name, label in good:
        t = tenant_of(st, name)
        if t["alerts_forwarded"] != got.get(label, 0):
            raise Fail("status says %s forwarded %d alerts, syslog-ng "
                       "received %d" % (name, t["alerts_forwarded"],
                                        got.get(label, 0)))
        total += t["alerts_forwarded"]
        newest = max(rt for _, rt in ctx.fake.versions(name))
        if t["cursor"] is None or iso_to_ms(t["cursor"]) != newest:
            raise Fail("status cursor of %s is %s, the newest version "
                       "forwarded is %s" % (name, t["cursor"],
                                            ms_to_iso(newest)))
        lag = (now_ms - newest) / 1000
        if abs(t["lag_seconds"] - lag) > 5:
            raise Fail("status lag of %s is %ss, expected about %.0fs"
                       % (name, t["lag_seconds"], lag))
        if t["failing"] or t["last_success"] is None or t["last_error"]:
            raise Fail("healthy tenant %s shown as failing=%s, "
                       "last_success=%s, last_error=%s"
                       % (name, t["failing"], t["last_success"],
                          t["last_error"]))
        exp_in = (iso_to_ms(t["token_expires"]) - now_ms) / 1000
        if not 3000 < exp_in <= 3600:
            raise Fail("token of %s expires in %.0fs; the fake grants 3599s"
                       % (name, exp_in))
    t3 = tenant_of(st, "t3")
    if not t3["failing"] or "AADSTS7000215" not in (t3["last_error"] or ""):
        raise Fail("t3 (wrong secret) not failing with AADSTS7000215: %r"
                   % t3)
    if t3["alerts_forwarded"] != 0 or t3["token_expires"] is not None:
        raise Fail("t3 shows %d forwarded and token %s"
                   % (t3["alerts_forwarded"], t3["token_expires"]))
    if st["alerts_forwarded"] != total:
        raise Fail("daemon total %d != sum of tenants %d"
                   % (st["alerts_forwarded"], total))
    out = st["outputs"][0]
    if not out["connected"] or out["messages_sent"] != total:
        raise Fail("output siem: connected=%s sent=%d, syslog-ng received "
                   "%d" % (out["connected"], out["messages_sent"], total))

    # The table: aligned columns, one row per tenant with its figures.
    text = ctl_ok(ctx, "status")
    lines = text.split("\n")
    try:
        i = next(i for i, x in enumerate(lines) if x.startswith("TENANT"))
    except StopIteration:
        raise Fail("status has no TENANT table:\n%s" % tail(text))
    table = lines[i:i + 4]
    if len(set(len(x) for x in table)) != 1:
        raise Fail("status tenant table is not aligned:\n%s"
                   % "\n".join(table))
    for name, label in good:
        row = next((x for x in table if x.split()[0] == name), None)
        if row is None or row.split()[-1] != str(got[label]) or \
                row.split()[1] != "idle":
            raise Fail("status row for %s does not show state idle and "
                       "%d forwarded: %r" % (name, got[label], row))
    row3 = next(x for x in table if x.split()[0] == "t3")
    if "failing" not in row3.split()[1]:
        raise Fail("status row for t3 does not say failing: %r" % row3)
    if not re.search(r"^OUTPUT\s+STATE", text, re.M) or \
            not re.search(r"^siem\s+connected\s+0\s+0\s+%d\s" % total,
                          text, re.M):
        raise Fail("status output table does not show siem connected, "
                   "spool 0, sent %d:\n%s" % (total, tail(text)))
    if not re.search(r"^  t3: .*AADSTS7000215", text, re.M):
        raise Fail("status does not show t3's last error:\n%s"
                   % tail(text))

    # Metrics: the same figures.
    code, ctype, body = scrape(mport)
    if code != 200 or not ctype.startswith("text/plain; version=0.0.4"):
        raise Fail("GET /metrics: %s %s" % (code, ctype))
    m, types = parse_metrics(body)
    st = status_json(ctx)
    for name, label in good:
        t = tenant_of(st, name)
        fw = metric(m, "alertrelay_alerts_forwarded_total", tenant=name)
        if fw != t["alerts_forwarded"]:
            raise Fail("metrics: %s forwarded %s, status %s"
                       % (name, fw, t["alerts_forwarded"]))
        if metric(m, "alertrelay_up", tenant=name) != 1:
            raise Fail("metrics: alertrelay_up of healthy %s is not 1" % name)
        if metric(m, "alertrelay_polls_total", tenant=name,
                  result="ok") < 1 or \
                metric(m, "alertrelay_http_responses_total", tenant=name,
                       **{"class": "2xx"}) < 1:
            raise Fail("metrics: no successful polls/2xx for %s" % name)
        te = metric(m, "alertrelay_token_expiry_timestamp_seconds",
                    tenant=name)
        if abs(te * 1000 - iso_to_ms(t["token_expires"])) > 1500:
            raise Fail("metrics token expiry %s != status %s"
                       % (te, t["token_expires"]))
        lag = metric(m, "alertrelay_lag_seconds", tenant=name)
        if abs(lag - t["lag_seconds"]) > 3:
            raise Fail("metrics lag %s != status %s"
                       % (lag, t["lag_seconds"]))
    if metric(m, "alertrelay_up", tenant="t3") != 0 or \
            metric(m, "alertrelay_polls_total", tenant="t3",
                   result="error") < 1:
        raise Fail("metrics: t3 not down / no failed polls")
    if metric(m, "alertrelay_output_messages_sent_total",
              output="siem") != total or \
            metric(m, "alertrelay_output_connected", output="siem") != 1 or \
            metric(m, "alertrelay_output_spool_records", output="siem") != 0:
        raise Fail("metrics for output siem disagree with status")
    if metric(m, "alertrelay_daemon_alerts_forwarded_total") != total:
        raise Fail("metrics daemon total != %d" % total)
    for fam, typ in (("alertrelay_polls_total", "counter"),
                     ("alertrelay_lag_seconds", "gauge"),
                     ("alertrelay_output_reconnects_total", "counter"),
                     ("alertrelay_reloads_total", "counter")):
        if types.get(fam) != typ:
            raise Fail("metric %s has TYPE %s, expected %s"
                       % (fam, types.get(fam), typ))
    start_s = metric(m, "alertrelay_start_time_seconds")
    if abs(start_s * 1000 - iso_to_ms(st["started"])) > 1500:
        raise Fail("start_time_seconds %s != status started %s"
                   % (start_s, st["started"]))
    if not any(k[0] == "alertrelay_build_info" for k in m):
        raise Fail("metrics have no alertrelay_build_info")
    code, _, _ = scrape(mport, "/")
    if code != 404:
        raise Fail("GET / on the metrics port answered %d, expected 404"
                   % code)
    secrets = [WRONG, "secret-t1", "secret-t2"]
    no_secrets("status", text, secrets)
    no_secrets("status --json", json.dumps(st), secrets)
    no_secrets("metrics", body, secrets)
    ctx.daemon.stop()
    ctx.note("status/--json/metrics agree with syslog-ng: %d forwarded"
             % total)


# --------------------------------------------------------------------------
# ctl_socket: permissions, stale and live owners, exit codes.

def make_stale_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()           # the file stays: a daemon killed with -9


def check_ctl_socket(ctx):
    sock = os.path.join(ctx.dir, "ctl.sock")
    rc, out, err = ctl(ctx, "status", sock=sock)
    if rc != EX_UNAVAILABLE or "is alertrelayd running?" not in err:
        raise Fail("alertrelayctl without a daemon: exit %d (expected 69), "
                   "stderr %r" % (rc, err))
    rc, out, err = ctl(ctx, "cursor", "show")
    if rc != EX_USAGE or "usage" not in err:
        raise Fail("a bad command line: exit %d (expected 64)" % rc)
    make_stale_socket(sock)
    start(ctx, umask=0o000)     # a permissive umask must not matter
    mode = stat.S_IMODE(os.stat(sock).st_mode)
    if mode != 0o600:
        raise Fail("control socket mode %o, expected 600" % mode)
    ctl_ok(ctx, "status")       # the stale file was replaced
    if "stale" not in ctx.daemon.proc.stderr():
        raise Fail("the daemon did not say it replaced a stale socket")
    # A second daemon (its own state_dir) must not take the socket.
    conf2 = ctx.make_config("second.conf", daemon={
        "state_dir": os.path.join(ctx.dir, "state2")})
    d2 = Daemon(ctx.suite, ctx.dir, conf2, name="alertrelayd-second")
    p2 = d2.start()
    rc = p2.wait(15)
    if rc is None:
        p2.stop()
        raise Fail("a second daemon on the same control socket kept "
                   "running")
    ctx.suite.check_sanitizer(p2)
    if rc == 0 or "another alertrelayd" not in p2.stderr():
        raise Fail("second daemon: exit %d, stderr:\n%s"
                   % (rc, tail(p2.stderr())))
    ctl_ok(ctx, "status")       # still ours
    # Peer credentials: even with the file opened up, another uid is
    # refused by SO_PEERCRED.
    if os.geteuid() == 0:
        dirs = [ctx.suite.root, ctx.dir]
        modes = [stat.S_IMODE(os.stat(d).st_mode) for d in dirs]
        for d in dirs:
            os.chmod(d, 0o711)
        os.chmod(sock, 0o666)
        try:
            rc, out, err = ctl(ctx, "status", user=65534)
        finally:
            os.chmod(sock, 0o600)
            for d, m in zip(dirs, modes):
                os.chmod(d, m)
        if rc == 0 or "permission denied" not in err:
            raise Fail("uid 65534 got exit %d from status: %r"
                       % (rc, out + err))
        if "t1" in out:
            raise Fail("another user saw the status: %r" % out)
    else:
        ctx.skip("another uid refused (SO_PEERCRED): running alertrelayctl "
                 "as uid 65534 needs root")
    # Oversized and unknown requests are refused, the daemon lives on.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b"x" * 10000)
        ans = b""
        while not ans.endswith(b"\n") or b"\nx " not in b"\n" + ans:
            chunk = s.recv(4096)
            if not chunk:
                break
            ans += chunk
    if b"x 64" not in ans:
        raise Fail("a 10000-byte request got %r" % ans[:200])
    ctx.daemon.alive()
    ctx.daemon.stop()
    if os.path.exists(sock):
        raise Fail("the control socket remains after the daemon stopped")
    ctx.note("0600 under umask 000; stale replaced; live owner refused; "
             "exit 69/64")


# --------------------------------------------------------------------------
# ctl_reload

def check_ctl_reload(ctx):
    start(ctx)
    exp1 = ctx.expected(only=("t1",))
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp1, 30,
                   daemon=ctx.daemon, what="t1's alerts")
    # Add t2 to the configuration and ask for a reload.
    t2 = {"name": "t2", "label": "Customer t2 Ltd"}
    ctx.case = dict(ctx.case, tenants=ctx.case["tenants"] + [t2])
    ctx.make_config()
    out = ctl_ok(ctx, "reload")
    if "reload applied" not in out:
        raise Fail("reload answered %r" % out)
    exp = ctx.expected()
    dels = wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30,
                          daemon=ctx.daemon, what="t2's alerts after reload")
    st = status_json(ctx)
    if st["reloads"] != 1 or len(st["tenants"]) != 2:
        raise Fail("after reload status shows %d reloads, tenants %s"
                   % (st["reloads"], [t["name"] for t in st["tenants"]]))
    # A broken configuration is rejected; the running one stays.
    with open(ctx.conf, "a") as f:
        f.write("\n[daemon]\npoll_interval = whenever\n")
    rc, out, err = ctl(ctx, "reload")
    if rc != 1 or "reload rejected" not in err:
        raise Fail("reload of a broken config: exit %d, %r" % (rc,
                                                              out + err))
    ctx.daemon.alive()
    st = status_json(ctx)
    if st["reloads"] != 1 or len(st["tenants"]) != 2:
        raise Fail("a rejected reload changed the running state")
    ctx.fake.add_alerts("t2", 3)
    exp = ctx.expected()
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30,
                   daemon=ctx.daemon, what="new t2 alerts after a "
                   "rejected reload")
    ctx.daemon.stop()
    settle(ctx)
    compare(ctx.expected(), delivered(ctx))
    ctx.note("t2 added by reload: %d versions in all, exactly once"
             % len(exp))


# --------------------------------------------------------------------------
# ctl_check_tenant

def check_tenant_case(ctx, name, want_rc, *needles, fault=None, arg=None):
    if fault is not None:
        ctx.fake.fault(name, fault, arg)
    rc, out, err = ctl(ctx, "check-tenant", name)
    if fault is not None:
        ctx.fake.fault("t1", "clear")
    both = out + err
    if rc != want_rc:
        raise Fail("check-tenant %s%s exited %d, expected %d:\n%s"
                   % (name, " with fault %s" % fault if fault else "", rc,
                      want_rc, tail(both)))
    for n in needles:
        if n.lower() not in both.lower():
            raise Fail("check-tenant %s%s does not say %r:\n%s"
                       % (name, " with fault %s" % fault if fault else "",
                          n, tail(both)))
    no_secrets("check-tenant", both, [WRONG, "secret-t1"])
    return both


def check_ctl_check_tenant(ctx):
    start(ctx)
    wait_for(lambda: tenant_of(status_json(ctx), "t1")["token_expires"],
             20, "t1 to hold a token")
    tok_before = tenant_of(status_json(ctx), "t1")["token_expires"]
    check_tenant_case(ctx, "t1", 0, "roles: Alert.Read.All", "tid: t1",
                      "all checks passed")
    check_tenant_case(ctx, "bad", 1, "AADSTS7000215", "bad client secret",
                      "client_secret_file")
    check_tenant_case(ctx, "lost", 1, "AADSTS90002", "wrong cloud")
    check_tenant_case(ctx, "t1", 1, "AADSTS700016", "consent missing",
                      "adminconsent", fault="unconsented")
    out = check_tenant_case(ctx, "t1", 1, "permission missing",
                            "Alert.Read.All", "roles: (none)",
                            fault="no-roles")
    if out.count("diagnosis:") != 1:
        raise Fail("no-roles: expected one diagnosis:\n%s" % tail(out))
    check_tenant_case(ctx, "t1", 1, "AADSTS7000222", "expired",
                      fault="expired-secret")
    check_tenant_case(ctx, "t1", 1, "HTTP 403", "permission missing",
                      fault="403")
    check_tenant_case(ctx, "t1", 1, "HTTP 429", "throttled",
                      "Retry-After", fault="429", arg="3")
    rc, _, err = ctl(ctx, "check-tenant", "nosuch")
    if rc != 1 or "nosuch" not in err:
        raise Fail("check-tenant of an unknown tenant: exit %d %r"
                   % (rc, err))
    time.sleep(3)
    out = check_tenant_case(ctx, "t1", 0, "all checks passed")
    # The tenant's own token cache was left alone.
    tok_after = tenant_of(status_json(ctx), "t1")["token_expires"]
    if tok_after != tok_before:
        raise Fail("check-tenant replaced the tenant's cached token "
                   "(%s -> %s)" % (tok_before, tok_after))
    ctx.daemon.stop()
    ctx.note("diagnoses: bad secret, wrong cloud, consent, permission "
             "(roles and 403), expired secret, throttled")


# --------------------------------------------------------------------------
# ctl_check_credentials: check-tenant signs in with every credential the
# daemon supports (a federated client_assertion_file, a certificate with
# certificate_thumbprint = sha256 against a PS256-only fake) and tells
# which API (Defender for Endpoint, Graph alerts, Graph incidents) the
# consent covers and what to ask the customer for.

CRED_T = [{"name": "f1", "label": "Federated", "source": "graph",
           "incidents": "yes"},
          {"name": "p1", "label": "PS256 cert"}]
MDE_OK = ("consent: Defender for Endpoint alerts (WindowsDefenderATP "
          "Alert.Read.All): granted")
GRAPH_OK = ("consent: Graph alerts (Microsoft Graph SecurityAlert.Read.All): "
            "granted")
INC = "consent: Graph incidents (Microsoft Graph SecurityIncident.Read.All): "


def check_credentials_case(ctx, name, want_rc, *needles):
    rc, out, err = ctl(ctx, "check-tenant", name)
    both = out + err
    if rc != want_rc:
        raise Fail("check-tenant %s exited %d, expected %d:\n%s"
                   % (name, rc, want_rc, tail(both)))
    for n in needles:
        if n not in both:
            raise Fail("check-tenant %s does not say %r:\n%s"
                       % (name, n, tail(both)))
    for j in ctx.case["_jwts"]:
        if j in both or j.split(".")[2] in both:
            raise Fail("check-tenant %s printed the federated assertion"
                       % name)
    return both


def _check_credentials(ctx):
    ctx.daemon.start()
    sock = os.path.join(ctx.dir, "ctl.sock")
    wait_for(lambda: ctx.daemon.alive() and os.path.exists(sock) and
             ctl(ctx, "status")[0] == 0, 15,
             "the control socket %s to answer" % sock)
    check_credentials_case(ctx, "f1", 0, "credential: federated assertion",
                           "token: ok", GRAPH_OK, INC + "granted", MDE_OK,
                           "all checks passed")
    out = check_credentials_case(ctx, "p1", 0, "credential: certificate "
                                 "(PS256, x5t#S256)", "token: ok", MDE_OK,
                                 GRAPH_OK, "all checks passed")
    if "Graph incidents" in out:
        raise Fail("check-tenant p1 (mde, no incidents) probed incidents:"
                   "\n%s" % tail(out))
    # Graph refuses alerts and incidents (the next two API calls answer
    # 403); Defender for Endpoint still answers.
    ctx.fake.fault("f1", "403", "2")
    check_credentials_case(
        ctx, "f1", 1, "consent: Graph alerts (Microsoft Graph "
        "SecurityAlert.Read.All): NOT granted (HTTP 403)",
        INC + "NOT granted (HTTP 403)", MDE_OK,
        "ask the customer to grant Microsoft Graph "
        "SecurityIncident.Read.All", "adminconsent?client_id=",
        "incidents = yes needs", "2 problems found")
    ctx.fake.fault("f1", "clear")
    ctx.daemon.stop()
    err = ctx.daemon.proc.stderr()
    for j in ctx.case["_jwts"]:
        if j in err or j.split(".")[2] in err:
            raise Fail("a federated assertion appeared in the log")
    ctx.note("federated and PS256 check-tenant pass; consent report: "
             "mde/graph/incidents granted, then graph refused with the "
             "grant to ask for")


def check_ctl_check_credentials(ctx):
    from cases_graph import setup_secretless
    from cases_workflows import with_setup
    # Write the configuration with the control socket, then give the
    # tenants their secretless credentials (the fake restarts with them).
    start(ctx)
    ctx.daemon.stop()
    with_setup(setup_secretless, _check_credentials)(ctx)


# --------------------------------------------------------------------------
# ctl_flood: with a low descriptor limit, many idle control connections.
# The daemon caps its control clients (32), refuses the rest with a log
# line naming the control socket, keeps descriptors for its own work (it
# goes on delivering), does not spin on accept(), and answers a fresh
# alertrelayctl once the flood ends.

CTL_MAX_CLIENTS = 32
FLOOD = 200


def proc_cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood_open(sock, n):
    """Open up to n idle (request-less) connections; those the daemon
    does not take stay in its backlog or are refused: both count."""
    conns = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(sock)
        except OSError:
            pass
        conns.append(s)
    return conns


def flood_seen(conns, seen):
    """Read what the daemon sent each connection; seen[i] becomes the
    bytes read, or ends with b"<EOF>" once it closed."""
    for i, c in enumerate(conns):
        if seen[i].endswith((b"<EOF>", b"<ERR>")):
            continue
        try:
            d = c.recv(4096)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:		# its connect() failed: not a client
            seen[i] += b"<ERR>"
            continue
        seen[i] += d if d else b"<EOF>"
    return seen


def check_ctl_flood(ctx):
    import resource
    sock = start(ctx)
    wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 30,
                   daemon=ctx.daemon, what="the first alerts")
    pid = ctx.daemon.proc.pid
    nfd = len(os.listdir("/proc/%d/fd" % pid))
    # Room for the capped control clients and the daemon's own work; a
    # daemon without a cap runs out at once.
    limit = nfd + CTL_MAX_CLIENTS + 24
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    cpu0, t0 = proc_cpu_s(pid), time.monotonic()
    conns = flood_open(sock, FLOOD)
    try:
        # More connections while the first ones are held: still capped.
        conns += flood_open(sock, FLOOD)
        used = len(os.listdir("/proc/%d/fd" % pid))
        if used >= limit:
            raise Fail("the daemon uses %d of %d descriptors under the "
                       "flood: none left for its own work" % (used, limit))
        ctx.fake.add_alerts("t1", 6)
        exp = ctx.expected()
        wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30,
                       daemon=ctx.daemon, what="alerts during the flood")
        # Held until the daemon drops idle clients (request timeout,
        # 10 s): closed without a word, while the refused ones were told.
        seen = [b""] * len(conns)
        wait_for(lambda: any(x == b"<EOF>" for x in
                             flood_seen(conns, seen)), 30,
                 "the daemon to drop an idle control client")
        told = sum(1 for x in seen if b"control socket busy" in x)
        if told == 0:
            raise Fail("no refused client was told why")
        cpu = proc_cpu_s(pid) - cpu0
        wall = time.monotonic() - t0
        if cpu > 0.5 * wall + 0.5:
            raise Fail("the daemon used %.1f s of CPU in %.1f s of flood: "
                       "it spins" % (cpu, wall))
        wait_for(lambda: "refusing connections" in
                 ctx.daemon.proc.stderr(), 15,
                 "the daemon to log that it refuses control connections")
    finally:
        for c in conns:
            c.close()
    err = ctx.daemon.proc.stderr()
    line = [x for x in err.split("\n") if "refusing connections" in x]
    if not line or "control socket" not in line[0]:
        raise Fail("no log line names the refused control connections:\n%s"
                   % tail(err))
    if err.count("refusing connections") > 3:
        raise Fail("the refusal was logged %d times (once per busy spell "
                   "expected)" % err.count("refusing connections"))
    wait_for(lambda: ctl(ctx, "status")[0] == 0, 15,
             "alertrelayctl status to answer after the flood")
    ctx.fake.add_alerts("t1", 3)
    exp = ctx.expected()
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30,
                   daemon=ctx.daemon, what="alerts after the flood")
    ctx.daemon.stop()
    settle(ctx)
    compare(ctx.expected(), delivered(ctx))
    ctx.note("%d+%d idle control connections under nofile=%d: capped at "
             "%d (%d refused clients told why), refusal logged once, idle "
             "ones dropped, %.2f s CPU in %.1f s, alerts delivered during "
             "and after, status answers after"
             % (FLOOD, FLOOD, limit, CTL_MAX_CLIENTS, told, cpu, wall))


# --------------------------------------------------------------------------
# ctl_cursor_backfill

OLD_ALERTS = 4


def check_ctl_cursor_backfill(ctx):
    # Alerts from 3 h ago: older than first_fetch (2 h), so the live
    # poller never reads them.
    old_ms = int(time.time() * 1000) - 3 * 3600 * 1000
    old = ms_to_iso(old_ms)
    ctx.fake.add_alerts("t1", OLD_ALERTS, {"lastUpdateTime": old,
                                           "alertCreationTime": old,
                                           "title": "Old alert"})
    start(ctx)
    recent = set(k for k in ctx.expected() if k[2] > old_ms + 1000)
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: recent, 30,
                   daemon=ctx.daemon, what="the recent alerts")
    cur = ctl_ok(ctx, "cursor", "show", "t1").strip()
    newest = max(k[2] for k in recent)
    if iso_to_ms(cur) != newest:
        raise Fail("cursor show t1 = %s, newest forwarded %s"
                   % (cur, ms_to_iso(newest)))
    settle(ctx)
    n0 = len(delivered(ctx))

    # 1. A range the live poller already forwarded: nothing again.
    now = time.time() * 1000
    rc, out, err = ctl(ctx, "backfill", "t1", ms_to_iso(int(now) - 90 * 60000),
                       ms_to_iso(int(now) + 1000))
    if rc != 0 or not re.search(r"done: .* 0 forwarded", out):
        raise Fail("backfill over forwarded alerts: exit %d:\n%s"
                   % (rc, tail(out + err)))
    if not re.search(r"^backfill t1: ", out, re.M):
        raise Fail("backfill printed no progress lines:\n%s" % tail(out))
    settle(ctx)
    if len(delivered(ctx)) != n0:
        raise Fail("backfill over an already forwarded range delivered "
                   "%d messages again" % (len(delivered(ctx)) - n0))

    # 2. The range before first_fetch: the old alerts, exactly once.
    frm, to = ms_to_iso(old_ms - 3600000), ms_to_iso(old_ms + 60000)
    rc, out, err = ctl(ctx, "backfill", "t1", frm, to)
    if rc != 0 or not re.search(r"done: .* %d forwarded" % OLD_ALERTS, out):
        raise Fail("backfill of the old range: exit %d:\n%s"
                   % (rc, tail(out + err)))
    settle(ctx)
    dels = delivered(ctx)
    compare(ctx.expected(), dels)
    olds = [d for d in dels if d.rt == iso_to_ms(old)]
    if len(olds) != OLD_ALERTS or any(d.act != "created" for d in olds):
        raise Fail("old alerts arrived %d times (acts %s), expected %d "
                   "created" % (len(olds), [d.act for d in olds],
                                OLD_ALERTS))
    if ctl_ok(ctx, "cursor", "show", "t1").strip() != cur:
        raise Fail("backfill moved the live cursor")

    # 3. The same range again: dedupe holds.
    rc, out, err = ctl(ctx, "backfill", "t1", frm, to)
    settle(ctx)
    if rc != 0 or len(delivered(ctx)) != len(dels):
        raise Fail("a second backfill of the same range: exit %d, %d "
                   "messages again:\n%s" % (rc, len(delivered(ctx)) -
                                            len(dels), tail(out + err)))

    # 4. The client goes away: the backfill is cancelled.
    ctx.fake.fault("t1", "slow", "3000")
    exe = os.path.join(ctx.suite.build, "alertrelayctl")
    p = subprocess.Popen([exe, "-s", os.path.join(ctx.dir, "ctl.sock"),
                          "backfill", "t1", frm, to],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: tenant_of(status_json(ctx), "t1")["backfill_running"],
             10, "the backfill to start")
    p.kill()
    p.wait()
    p.stdout.close()
    p.stderr.close()
    wait_for(lambda: not tenant_of(status_json(ctx),
                                   "t1")["backfill_running"],
             10, "the backfill to be cancelled when alertrelayctl exits")
    ctx.fake.fault("t1", "slow", "0")
    rc, out, err = ctl(ctx, "backfill", "t1", frm, to)
    if rc != 0:
        raise Fail("a backfill after a cancelled one failed:\n%s"
                   % tail(out + err))

    # 5. cursor set: bad input, then a real move.
    rc, _, err = ctl(ctx, "cursor", "set", "t1", "yesterday")
    if rc != EX_USAGE or "ISO 8601" not in err:
        raise Fail("cursor set with a bad time: exit %d %r" % (rc, err))
    rc, _, err = ctl(ctx, "cursor", "set", "t1", "2999-01-01T00:00:00Z")
    if rc != 1 or "future" not in err:
        raise Fail("cursor set in the future: exit %d %r" % (rc, err))
    new = ms_to_iso(newest + 1000)
    out = ctl_ok(ctx, "cursor", "set", "t1", new)
    shown = ctl_ok(ctx, "cursor", "show", "t1").strip()
    if iso_to_ms(shown) != newest + 1000:
        raise Fail("cursor set %s, cursor show says %s" % (new, shown))
    ctx.fake.add_alerts("t1", 2)
    exp = ctx.expected()
    dels = wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30,
                          daemon=ctx.daemon, what="new alerts after "
                          "cursor set")
    ctx.daemon.stop()
    settle(ctx)
    compare(ctx.expected(), delivered(ctx))
    ctx.note("backfill: 0 again over the live range, %d old alerts once; "
             "cancel on disconnect; cursor set/show" % OLD_ALERTS)


# --------------------------------------------------------------------------

def _tenants(n):
    return [{"name": "t%d" % i, "label": "Customer t%d Ltd" % i}
            for i in range(1, n + 1)]


OCTET = [{"name": "siem", "transport": "tcp", "framing": "octet-counting",
          "format": "cef", "sink": "octet"}]

CASES = [
    {
        "name": "ctl_status",
        "doc": "status table/--json and /metrics agree with what syslog-ng "
               "received; failing tenant shown; no secrets anywhere",
        "fake": ["-t", "t1", "-t", "t2", "-t", "t3", "--alerts", "25",
                 "--seed", "21"],
        "tenants": _tenants(2) + [{"name": "t3", "label": "Customer t3 Ltd",
                                   "secret": WRONG}],
        "outputs": OCTET,
        "check": check_ctl_status,
    },
    {
        "name": "ctl_socket", "quick": True,
        "doc": "control socket 0600, stale file replaced, live owner "
               "refused, other uid refused, exit 69/64, removed at exit",
        "fake": ["-t", "t1", "--alerts", "5", "--seed", "22"],
        "tenants": _tenants(1),
        "outputs": OCTET,
        "check": check_ctl_socket,
    },
    {
        "name": "ctl_reload",
        "doc": "alertrelayctl reload adds a tenant (its alerts arrive once); "
               "a broken config is rejected with exit 1",
        "fake": ["-t", "t1", "-t", "t2", "--alerts", "15", "--seed", "23"],
        "tenants": _tenants(1),
        "outputs": OCTET,
        "check": check_ctl_reload,
    },
    {
        "name": "ctl_check_tenant",
        "doc": "check-tenant diagnoses bad/expired secret, consent, "
               "permission, wrong cloud, throttling; token cache untouched",
        "fake": ["-t", "t1", "-t", "bad", "--alerts", "3", "--seed", "24"],
        "tenants": _tenants(1) + [
            {"name": "bad", "secret": WRONG},
            {"name": "lost", "tenant_id": "no-such-tenant",
             "secret": "secret-t1"}],
        "outputs": OCTET,
        "check": check_ctl_check_tenant,
    },
    {
        "name": "ctl_check_credentials",
        "doc": "check-tenant signs in with client_assertion_file and "
               "certificate_thumbprint = sha256 (PS256-only fake); tells "
               "which of mde/graph alerts/graph incidents the consent "
               "covers and what to ask the customer to grant",
        "fake": ["-t", "f1", "-t", "p1", "--alerts", "3", "--seed", "26"],
        "tenants": CRED_T,
        "outputs": OCTET,
        "check": check_ctl_check_credentials,
    },
    {
        "name": "ctl_flood",
        "doc": "idle control connections under a low nofile limit: "
               "capped and refused with one log line, no accept() spin, "
               "alerts delivered during the flood, status answers after",
        "fake": ["-t", "t1", "--alerts", "10", "--seed", "27"],
        "tenants": _tenants(1),
        "outputs": OCTET,
        "check": check_ctl_flood,
    },
    {
        "name": "ctl_cursor_backfill",
        "doc": "backfill: forwarded range -> 0, range before first_fetch "
               "-> once, cancelled on disconnect; cursor show/set",
        "fake": ["-t", "t1", "--alerts", "20", "--spread", "30m",
                 "--seed", "25"],
        "tenants": _tenants(1),
        "outputs": OCTET,
        "check": check_ctl_cursor_backfill,
    },
]
