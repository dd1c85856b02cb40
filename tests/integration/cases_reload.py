"""Integration cases for reload's all-or-nothing rule and the small
robustness rules of SPEC §5: a reload whose outputs or notifiers cannot be
built is rejected with the reason and changes nothing; the daemon is not
dumpable; remote text in logs stays one line; durations beyond 100 years
are configuration errors.  Loaded by harness.py (every cases_*.py exports
CASES)."""

import http.server
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from harness import (Daemon, Fail, compare, deliveries, tail, wait_for,
                     wait_delivered, write_config)
from cases_ctl import ctl, ctl_ok, settle, start, status_json

OCTET = {"name": "siem", "transport": "tcp", "framing": "octet-counting",
         "format": "cef", "sink": "octet"}
LF2 = {"name": "siem2", "transport": "tcp", "framing": "newline",
       "format": "cef", "sink": "lf"}
NOTIFY = ('\n[notify "mail"]\nsmtp_url = smtp://127.0.0.1:9\n'
          'from = relay@mssp.example\nto = soc@mssp.example\n'
          'min_severity = high\n')


def output_names(st):
    return sorted(o["name"] for o in st["outputs"])


def unchanged(ctx, what):
    """The running configuration is still the first one."""
    ctx.daemon.alive()
    st = status_json(ctx)
    if st["reloads"] != 0 or output_names(st) != ["siem"]:
        raise Fail("after %s the daemon shows %d reloads and outputs %s; "
                   "a rejected reload must change nothing"
                   % (what, st["reloads"], output_names(st)))


def obstacle(path):
    """A regular file where a spool directory must go."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "w") as f:
        f.write("not a directory\n")


def rejected_count(d):
    return len(re.findall(r"reload rejected", d.proc.stderr()))


def facility(rec):
    return int(rec.get("PRI", "-8")) >> 3


# --------------------------------------------------------------------------
# reload_obstacle

def check_reload_obstacle(ctx):
    start(ctx)
    d = ctx.daemon
    state = os.path.join(ctx.dir, "state")
    wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 30,
                   daemon=d, what="t1's first alerts")
    first = set(ctx.expected())
    # 1. A new output whose spool cannot be created; the existing output
    # changes too (facility), so its spool would have to change hands.
    spool_block = os.path.join(state, "spool", "siem2")
    obstacle(spool_block)
    changed = [dict(OCTET, facility="local5"), LF2]
    ctx.make_config(outputs=changed)
    rc, out, err = ctl(ctx, "reload")
    if not d.proc.running():
        raise Fail("the daemon died on a reload whose new output cannot "
                   "open its spool (status %s):\n%s"
                   % (d.proc.p.returncode, tail(d.proc.stderr(), 8)))
    if rc == 0 or "reload rejected" not in err or "siem2" not in err or \
            spool_block not in err:
        raise Fail("alertrelayctl reload with an unusable spool for output "
                   "siem2: exit %d, %r (want non-zero and the reason "
                   "naming siem2 and %s)" % (rc, out + err, spool_block))
    unchanged(ctx, "a reload with an unusable output spool")
    # 2. The same for a new notifier, by SIGHUP: rejected in the log.
    os.unlink(spool_block)
    notify_block = os.path.join(state, "notify", "mail")
    obstacle(notify_block)
    ctx.make_config(outputs=changed, extra=NOTIFY)
    before = rejected_count(d)
    os.kill(d.proc.pid, signal.SIGHUP)
    wait_for(lambda: d.alive() and rejected_count(d) > before, 15,
             "the SIGHUP reload to be rejected")
    err = d.proc.stderr()
    if not re.search(r"notify mail: .*%s" % re.escape(notify_block), err):
        raise Fail("the rejected SIGHUP reload does not name notify mail "
                   "and %s:\n%s" % (notify_block, tail(err, 8)))
    unchanged(ctx, "a reload with an unusable notifier spool")
    # Alerts keep flowing to the old output, exactly once, old facility.
    ctx.fake.add_alerts("t1", 4)
    wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 30, daemon=d,
                   what="alerts after two rejected reloads")
    settle(ctx)
    compare(ctx.expected(), deliveries(ctx.suite, ctx.sng.messages("octet")))
    if ctx.sng.messages("lf"):
        raise Fail("output siem2 of a rejected reload sent messages")
    middle = set(ctx.expected())
    # 3. Obstacle gone: the same reload is applied.
    os.unlink(notify_block)
    out = ctl_ok(ctx, "reload")
    if "reload applied" not in out:
        raise Fail("reload after fixing the obstacle answered %r" % out)
    st = status_json(ctx)
    if st["reloads"] != 1 or output_names(st) != ["siem", "siem2"]:
        raise Fail("after the applied reload: %d reloads, outputs %s"
                   % (st["reloads"], output_names(st)))
    ctx.fake.add_alerts("t1", 4)
    late = set(ctx.expected()) - middle
    wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 30, daemon=d,
                   what="alerts after the applied reload")
    wait_delivered(ctx.suite, ctx.sng, "lf", lambda: late, 30, daemon=d,
                   what="the new output's alerts")
    d.stop()
    settle(ctx)
    recs = ctx.sng.messages("octet")
    compare(ctx.expected(), deliveries(ctx.suite, recs))
    compare(late, deliveries(ctx.suite, ctx.sng.messages("lf")))
    for r, dl in zip([r for r in recs if r.get("PROGRAM") != "harness"],
                     deliveries(ctx.suite, recs)):
        want = 21 if dl.key() in late else 20
        if facility(r) != want:
            raise Fail("version %s came with facility %d, want %d (%s)"
                       % (dl.key(), facility(r), want,
                          "after" if want == 21 else "before"))
    ctx.note("2 reloads rejected (output spool, notifier spool), daemon "
             "alive; %d versions before, %d after the applied reload, "
             "exactly once" % (len(first | middle), len(late)))


# --------------------------------------------------------------------------
# reload_keeps_outputs

def output_of(st, name):
    for o in st["outputs"]:
        if o["name"] == name:
            return o
    raise Fail("status has no output %s" % name)


def check_reload_keeps_outputs(ctx):
    # The TLS output's CA file is a copy this case may spoil.
    ca = os.path.join(ctx.dir, "ca-copy.pem")
    shutil.copy(os.path.join(ctx.suite.pki, "ca.pem"), ca)
    outs = [dict(o) for o in ctx.case["outputs"]]
    outs[1]["ca_file"] = ca
    ctx.case = dict(ctx.case, outputs=outs)
    start(ctx)
    d = ctx.daemon
    exp1 = ctx.expected(only=("t1",))
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp1, 30, daemon=d,
                   what="t1's alerts on tcp")
    wait_delivered(ctx.suite, ctx.sng, "tls", lambda: exp1, 30, daemon=d,
                   what="t1's alerts on tls")
    before = wait_for(lambda: (lambda st: st if all(
        o["messages_sent"] >= len(exp1) for o in st["outputs"]) else None)(
            status_json(ctx)), 15, "both outputs to count their messages")
    # Add a tenant: both outputs unchanged, the TLS one included.
    t2 = {"name": "t2", "label": "Customer t2 Ltd"}
    ctx.case = dict(ctx.case, tenants=ctx.case["tenants"] + [t2])
    ctx.make_config()
    ctl_ok(ctx, "reload")
    after = status_json(ctx)
    for name in ("siem", "siemtls"):
        b, a = output_of(before, name), output_of(after, name)
        if not a["connected"] or a["messages_sent"] < b["messages_sent"] \
                or a["reconnects"] != b["reconnects"]:
            raise Fail("output %s was not kept by a reload that did not "
                       "change it: before %s, after %s" % (name, b, a))
    exp = ctx.expected()
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30, daemon=d,
                   what="t2's alerts on tcp")
    # A CA file that no longer loads: the reload is rejected, the TLS
    # output keeps running on the context it has.
    with open(ca) as f:
        good = f.read()
    with open(ca, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n"
                "-----END CERTIFICATE-----\n")
    rc, out, err = ctl(ctx, "reload")
    if rc == 0 or "siemtls" not in err or "ca_file" not in err:
        raise Fail("reload with a broken ca_file: exit %d, %r" % (rc,
                                                                out + err))
    st = status_json(ctx)
    if st["reloads"] != 1 or not output_of(st, "siemtls")["connected"]:
        raise Fail("a reload rejected for a broken ca_file changed the "
                   "running state: %s" % st["outputs"])
    with open(ca, "w") as f:
        f.write(good)
    # SIEM down, alerts queue; the tcp output changes and must take its
    # spool along.
    ctx.sng.stop()
    ctx.fake.add_alerts("*", 5)
    wait_for(lambda: output_of(status_json(ctx), "siem")["spool_records"]
             >= 10, 30, "the alerts to queue in siem's spool")
    outs = [dict(OCTET, facility="local6"), ctx.case["outputs"][1]]
    ctx.make_config(outputs=outs)
    ctl_ok(ctx, "reload")
    ctx.sng.start()
    exp = ctx.expected()
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 60, daemon=d,
                   what="the queued alerts after the reload")
    d.stop()
    settle(ctx)
    compare(ctx.expected(), deliveries(ctx.suite, ctx.sng.messages("octet")),
            allow_dups=True)
    ctx.note("unchanged tcp and tls outputs kept their connection (%s); "
             "a broken ca_file rejected the reload; a changed output sent "
             "its queued spool after the reload"
             % ", ".join("%s sent %d then %d" % (n, output_of(before, n)[
                 "messages_sent"], output_of(after, n)["messages_sent"])
                 for n in ("siem", "siemtls")))


# --------------------------------------------------------------------------
# nondumpable

def check_nondumpable(ctx):
    """Run as another user than root (nobody when the tests run as root):
    a non-dumpable process's /proc/PID files belong to root (proc(5)), a
    dumpable one's to its own user."""
    if os.geteuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            raise Fail("no user nobody to run the daemon as")
    else:
        nobody = pwd.getpwuid(os.geteuid())
    top = tempfile.mkdtemp(prefix="alertrelay-dump.")
    try:
        os.chmod(top, 0o755)
        exe = os.path.join(top, "alertrelayd")
        shutil.copy(os.path.join(ctx.suite.build, "alertrelayd"), exe)
        os.chmod(exe, 0o755)
        state = os.path.join(top, "state")
        os.mkdir(state, 0o700)
        if os.geteuid() == 0:
            os.chown(state, nobody.pw_uid, nobody.pw_gid)
        conf = os.path.join(top, "alertrelay.conf")
        with open(conf, "w") as f:
            f.write("[daemon]\nstate_dir = %s\ncontrol_socket = %s/ctl.sock\n"
                    '[output "f"]\ntransport = file\naddress = %s/out.log\n'
                    % (state, state, state))
        os.chmod(conf, 0o644)

        def drop():
            if os.geteuid() == 0:
                os.setgid(nobody.pw_gid)
                os.setgroups([])
                os.setuid(nobody.pw_uid)
        p = subprocess.Popen([exe, "-c", conf, "--log-target", "stderr"],
                             cwd=top, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, preexec_fn=drop,
                             start_new_session=True)
        try:
            sock = os.path.join(state, "ctl.sock")
            wait_for(lambda: p.poll() is not None or os.path.exists(sock),
                     15, "the daemon to open its control socket")
            if p.poll() is not None:
                raise Fail("alertrelayd as nobody exited %d:\n%s"
                           % (p.returncode,
                              p.stderr.read().decode(errors="replace")))
            uid = os.stat("/proc/%d/status" % p.pid).st_uid
            real = None
            with open("/proc/%d/status" % p.pid) as f:
                for line in f:
                    if line.startswith("Uid:"):
                        real = int(line.split()[1])
            if real != nobody.pw_uid:
                raise Fail("the daemon runs as uid %s, not %s"
                           % (real, nobody.pw_name))
            if uid != 0:
                raise Fail("/proc/%d/status belongs to uid %d: the daemon "
                           "is dumpable (a crash would write its secrets "
                           "to a core file)" % (p.pid, uid))
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                _, err = p.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            ctx.suite.check_sanitizer(_Text(err))
    finally:
        shutil.rmtree(top, ignore_errors=True)
    ctx.note("running as %s, /proc/PID is root's: not dumpable"
             % nobody.pw_name)


class _Text:
    """Enough of a Proc for Suite.check_sanitizer."""

    def __init__(self, err):
        self.name = "alertrelayd (not root)"
        self.err = (err or b"").decode("utf-8", "replace")

    def stderr(self):
        return self.err


# --------------------------------------------------------------------------
# remote_text_one_line

FORGED = "alertrelayd: info: tenant t1: all caught up, nothing to see"
EVIL_MESSAGE = "Bad filter.\n" + FORGED + "\x1b[2J\x1b]0;pwned\x07\r\x7f"


class EvilApi(http.server.BaseHTTPRequestHandler):
    """Tokens for t1, an API error whose message holds a newline, a
    forged log line and terminal escapes; t2's token request fails with
    the same text as its error (and error_description)."""

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        self.server.hits += 1
        if self.path.startswith("/t2/"):
            self.reply(401, {"error": EVIL_MESSAGE,
                             "error_description": "AADSTS7000215: " +
                             EVIL_MESSAGE, "error_codes": [7000215]})
            return
        self.reply(200, {"token_type": "Bearer", "expires_in": 3599,
                         "access_token": "eyJhbGciOiJub25lIn0.e30.c2ln"})

    def do_GET(self):
        self.server.hits += 1
        self.reply(400, {"error": {"code": "BadRequest",
                                   "message": EVIL_MESSAGE,
                                   "target": "0f8fad5b"}})


def check_remote_text_one_line(ctx):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EvilApi)
    srv.hits = 0
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        url = "http://127.0.0.1:%d" % srv.server_address[1]
        tenants = [{"name": n, "api_url": url, "login_url": url}
                   for n in ("t1", "t2")]
        conf = write_config(os.path.join(ctx.dir, "alertrelay.conf"),
                            ctx.dir, {"state_dir": os.path.join(ctx.dir,
                                                                "state"),
                                      "poll_interval": "1s",
                                      "control_socket":
                                      os.path.join(ctx.dir, "ctl.sock")},
                            [{"name": "f", "transport": "file",
                              "address": os.path.join(ctx.dir, "out.log")}],
                            tenants)
        d = Daemon(ctx.suite, ctx.dir, conf)
        d.start()
        wait_for(lambda: d.alive() and
                 "alerts request failed" in d.proc.stderr() and
                 "AADSTS7000215" in d.proc.stderr(), 30,
                 "both remote errors to be logged")
        d.stop()
    finally:
        srv.shutdown()
        srv.server_close()
    err = d.proc.stderr()
    lines = err.split("\n")
    bad = [x for x in lines if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", x)]
    if bad:
        raise Fail("control characters from the network reached the log: "
                   "%r" % bad[0][:300])
    forged = [x for x in lines if x.startswith(FORGED)]
    if forged:
        raise Fail("a remote error message forged a log line: %r"
                   % forged[0])
    for what in ("alerts request failed", "AADSTS7000215"):
        one = [x for x in lines if what in x and "Bad filter." in x and
               "all caught up" in x]
        if not one:
            raise Fail("the %s message is not one line holding the whole "
                       "remote text:\n%s" % (what, tail(err, 10)))
    ctx.note("API error message and token error with LF, CR, "
             "ESC, BEL, DEL: logged on one line, controls replaced")


# --------------------------------------------------------------------------
# duration_bound

def check_duration_bound(ctx):
    base = {"state_dir": os.path.join(ctx.dir, "state"),
            "control_socket": os.path.join(ctx.dir, "ctl.sock")}
    outs = [{"name": "f", "transport": "file",
             "address": os.path.join(ctx.dir, "out.log")}]
    tenants = [{"name": "t1", "api_url": "http://127.0.0.1:9",
                "login_url": "http://127.0.0.1:9"}]
    bad = [("daemon", "first_fetch", "1000000000d"),
           ("daemon", "overlap", "36600d"),
           ("daemon", "poll_interval", "9223372036854775807d"),
           ("cluster", "lease_ttl", "1000000000d"),
           ("tenant", "secret_expires", "2999-01-01")]
    for section, key, val in bad:
        dk = dict(base)
        ts = [dict(t) for t in tenants]
        extra = ""
        if section == "daemon":
            dk[key] = val
        elif section == "tenant":
            ts[0][key] = val
        else:
            extra = ("\n[cluster]\netcd_endpoints = http://127.0.0.1:2379\n"
                     "%s = %s\n" % (key, val))
        conf = write_config(os.path.join(ctx.dir, "c.conf"), ctx.dir, dk,
                            outs, ts, extra=extra)
        rc, out, err = Daemon(ctx.suite, ctx.dir, conf).run("--check-config")
        if rc != 78:
            raise Fail("%s = %s: --check-config exited %d, want 78:\n%s"
                       % (key, val, rc, tail(out + err, 5)))
        with open(conf) as f:
            line = [i + 1 for i, x in enumerate(f.read().split("\n"))
                    if x.startswith(key + " =")][0]
        want = "%s:%d: %s: " % (conf, line, key)
        if want not in err or "100 years" not in err:
            raise Fail("%s = %s: the error does not read %r...100 years:\n%s"
                       % (key, val, want, tail(err, 5)))
    ctx.note("%d durations and dates beyond 100 years: exit 78 with "
             "FILE:LINE naming the key" % len(bad))


CASES = [
    {
        "name": "reload_obstacle",
        "doc": "a reload whose new output or notifier cannot open its spool "
               "is rejected with the reason (ctl exit 1, log); nothing "
               "changes, alerts flow once; fixed, the reload applies",
        "fake": ["-t", "t1", "--alerts", "10", "--seed", "41"],
        "tenants": [{"name": "t1", "label": "Customer t1 Ltd"}],
        "outputs": [OCTET],
        "check": check_reload_obstacle,
    },
    {
        "name": "reload_keeps_outputs",
        "doc": "unchanged tcp and tls outputs keep their connection over a "
               "reload; a broken ca_file rejects it; a changed output "
               "hands its queued spool over",
        "fake": ["-t", "t1", "-t", "t2", "--alerts", "10", "--seed", "42"],
        "tenants": [{"name": "t1", "label": "Customer t1 Ltd"}],
        "outputs": [OCTET,
                    {"name": "siemtls", "transport": "tls", "sink": "tls",
                     "ca_file": "ca.pem", "cert_file": "client.pem",
                     "key_file": "client.key",
                     "tls_server_name": "localhost"}],
        "check": check_reload_keeps_outputs,
    },
    {
        "name": "nondumpable",
        "doc": "the daemon marks itself non-dumpable (no core file with "
               "secrets)",
        "syslog_ng": False,
        "check": check_nondumpable,
    },
    {
        "name": "remote_text_one_line",
        "doc": "API and token error texts with newlines and escapes are "
               "logged as one line without control characters",
        "syslog_ng": False,
        "check": check_remote_text_one_line,
    },
    {
        "name": "duration_bound",
        "doc": "durations and dates beyond 100 years are FILE:LINE "
               "configuration errors naming the key",
        "syslog_ng": False,
        "check": check_duration_bound,
    },
]
