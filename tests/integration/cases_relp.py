"""Integration cases for relp outputs against a real rsyslogd with imrelp.

Debian's rsyslog package conflicts with syslog-ng-core (which the other
cases need), so it is not installed: the case fetches the rsyslog and
rsyslog-relp packages with "apt-get download" once, unpacks them with
"dpkg -x" under the build directory (BUILD/rsyslog-relp) and runs that
rsyslogd in the foreground with its own configuration, module directory
and pid file, listening on loopback.  Its main queue is "Direct", so imrelp
answers "rsp 200" only after omfile has written the message: what rsyslogd
acknowledged survives its kill -9.

Loaded by harness.py next to cases.py (every cases_*.py exports CASES)."""

import os
import re
import shutil
import signal
import subprocess
import tempfile

import harness
from cases_ctl import ctl_ok
from harness import (Daemon, Delivery, Fail, Proc, cef_parse, free_port,
                     tail, wait_for)

# RELP over TLS: the client must present a certificate of our CA whose
# name is alertrelay-forwarder (mTLS).
RSYSLOG_TLS = """input(type="imrelp" address="127.0.0.1" port="{relptls}"
      ruleset="relptls" tls="on"
      tls.cacert="{pki}/ca.pem" tls.mycert="{pki}/server.pem"
      tls.myprivkey="{pki}/server.key" tls.authmode="name"
      tls.permittedpeer=["alertrelay-forwarder"])"""

RSYSLOG_CONF = """global(workDirectory="{dir}" maxMessageSize="64k")
main_queue(queue.type="Direct")
module(load="{mods}/imrelp.so")
module(load="{mods}/imtcp.so")
input(type="imrelp" address="127.0.0.1" port="{relp}" maxDataSize="128k"
      ruleset="relp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
{tls}
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="relp") {{
  action(type="omfile" file="{dir}/relp.log" template="raw")
}}
ruleset(name="relptls") {{
  action(type="omfile" file="{dir}/relptls.log" template="raw")
}}
ruleset(name="tcp") {{
  action(type="omfile" file="{dir}/tcp.log" template="raw")
}}
"""


def unavailable(msg):
    skip = getattr(harness, "Skip", None)
    if skip is not None:
        raise skip(msg)
    raise Fail(msg)


def rsyslog_root(build):
    """BUILD/rsyslog-relp: rsyslogd and its modules, unpacked from the
    Debian packages on first use."""
    root = os.path.join(build, "rsyslog-relp")
    exe = os.path.join(root, "usr", "sbin", "rsyslogd")
    mods = os.path.join(root, "usr", "lib", "x86_64-linux-gnu", "rsyslog")
    if os.access(exe, os.X_OK) and os.path.exists(
            os.path.join(mods, "imrelp.so")):
        return exe, mods
    tmp = tempfile.mkdtemp(prefix="rsyslog-deb.")
    try:
        r = subprocess.run(["apt-get", "download", "rsyslog",
                            "rsyslog-relp"], cwd=tmp, capture_output=True,
                           timeout=300)
        debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
        if r.returncode != 0 or len(debs) != 2:
            unavailable("cannot download rsyslog and rsyslog-relp: %s"
                        % r.stderr.decode(errors="replace")[-300:])
        unpack = os.path.join(tmp, "root")
        for d in debs:
            subprocess.run(["dpkg", "-x", os.path.join(tmp, d), unpack],
                           check=True)
        # Keep the daemon and its modules only (no *.d directories under
        # the build directory: the Makefile reads every *.d there).
        shutil.rmtree(root, ignore_errors=True)
        for sub in (("usr", "sbin"),
                    ("usr", "lib", "x86_64-linux-gnu", "rsyslog")):
            shutil.copytree(os.path.join(unpack, *sub),
                            os.path.join(root, *sub))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return exe, mods


class Rsyslog:
    def __init__(self, ctx, tls=False):
        self.ctx = ctx
        self.tls = tls
        self.exe, self.mods = rsyslog_root(ctx.suite.build)
        self.dir = os.path.join(ctx.dir, "rsyslog")
        os.makedirs(self.dir, exist_ok=True)
        self.ports = None
        self.proc = None
        self.starts = 0

    def start(self, timeout=15):
        """Start rsyslogd; the first start picks free ports and tries
        again with others when they are taken meanwhile."""
        for attempt in range(5):
            if self.ports is None or (attempt > 0 and self.starts == 1):
                self.ports = {"relp": free_port(), "tcp": free_port()}
                if self.tls:
                    self.ports["relptls"] = free_port()
            tls = RSYSLOG_TLS.format(pki=self.ctx.suite.pki, **self.ports) \
                if self.tls else ""
            with open(os.path.join(self.dir, "rsyslog.conf"), "w") as f:
                f.write(RSYSLOG_CONF.format(dir=self.dir, mods=self.mods,
                                            tls=tls, **self.ports))
            self.starts += 1
            pid = os.path.join(self.dir, "pid")
            if os.path.exists(pid):
                os.unlink(pid)
            self.proc = Proc(self.ctx.suite, "rsyslogd.%d" % self.starts,
                             [self.exe, "-n", "-f",
                              os.path.join(self.dir, "rsyslog.conf"),
                              "-i", pid, "-M", self.mods], cwd=self.dir)

            def ready():
                if not self.proc.running():
                    return "exited"
                return all(harness.port_open(p)
                           for p in self.ports.values())
            if wait_for(ready, timeout, "rsyslogd to listen") is True:
                return
            err = self.proc.stderr()
            if "in use" not in err and "bind" not in err.lower():
                raise Fail("rsyslogd exited:\n%s" % tail(err, 10))
        raise Fail("rsyslogd could not listen on loopback ports")

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.p.wait()
        self.proc.close()

    def size(self, name):
        try:
            return os.path.getsize(os.path.join(self.dir, name + ".log"))
        except FileNotFoundError:
            return 0

    def lines(self, name):
        try:
            with open(os.path.join(self.dir, name + ".log"), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        return [x.decode("utf-8", "replace")
                for x in data.split(b"\n")[:-1]]


def parse(ctx, lines, torn=None):
    """Syslog lines as rsyslog wrote them -> Deliveries (CEF body).
    With a list for torn, events lognormalizer rejects are collected there
    instead of failing the case: a receiver killed with -9 while its file
    writer flushed leaves a record cut short, and the next start appends
    after it on the same line (so each "CEF:0|" begins an event)."""
    msgs = []
    for x in lines:
        i = x.find("CEF:")
        if i < 0:
            raise Fail("rsyslogd wrote a line without a CEF event: %r"
                       % x[:300])
        if torn is None:
            msgs.append(x[i:])
            continue
        msgs += ["CEF:0|" + p for p in x[i:].split("CEF:0|") if p]
    out = []
    for m, c in zip(msgs, cef_parse(ctx.suite, msgs)):
        if c is None and torn is not None:
            torn.append(m)
            continue
        if c is None:
            raise Fail("lognormalizer rejected an event: %r" % m[:300])
        out.append(Delivery({"MESSAGE": m}, c))
    return out


def tally(expected, later, dels):
    """(missing, extra copies, unexpected) against the versions visible
    before (expected) and after (later) the deliveries were read."""
    got = {}
    for d in dels:
        got[d.key()] = got.get(d.key(), 0) + 1
    missing = sorted(k for k in expected if k not in got)
    extra = sum(n - 1 for n in got.values())
    unexpected = sorted((k for k in got if k not in later), key=str)
    return missing, extra, unexpected


def config(ctx, rs, relp=True, tcp=False, tls=None):
    outs = []
    if tls is not None:
        o = {"name": "relptls", "transport": "relp", "tls": "yes",
             "address": "127.0.0.1:%d" % rs.ports["relptls"],
             "ca_file": os.path.join(ctx.suite.pki, tls)}
        if tls == "ca.pem":
            o["cert_file"] = os.path.join(ctx.suite.pki, "client.pem")
            o["key_file"] = os.path.join(ctx.suite.pki, "client.key")
        outs.append(o)
    if relp:
        outs.append({"name": "relp", "transport": "relp",
                     "address": "127.0.0.1:%d" % rs.ports["relp"]})
    if tcp:
        outs.append({"name": "tcp", "transport": "tcp",
                     "address": "127.0.0.1:%d" % rs.ports["tcp"]})
    ctx.conf = ctx.make_config(outputs=outs)
    ctx.daemon = Daemon(ctx.suite, ctx.dir, ctx.conf)


def check_once(ctx):
    rs = Rsyslog(ctx)
    rs.start()
    config(ctx, rs)
    rc, out, err = ctx.daemon.run("--once", timeout=120)
    if rc != 0:
        raise Fail("alertrelayd --once exited %d; stderr:\n%s"
                   % (rc, tail(err)))
    exp = ctx.expected()
    dels = parse(ctx, rs.lines("relp"))
    harness.compare(exp, dels)
    ctx.note("%d versions over RELP to rsyslogd, each once" % len(exp))


def check_tls(ctx):
    """RELP over TLS with mTLS: everything once; a server certificate of
    another CA is refused (nothing sent, the reason in the journal)."""
    ctx.suite.setup_pki()
    rs = Rsyslog(ctx, tls=True)
    rs.start()
    config(ctx, rs, relp=False, tls="ca.pem")
    rc, out, err = ctx.daemon.run("--once", timeout=120)
    if rc != 0:
        raise Fail("alertrelayd --once exited %d; stderr:\n%s"
                   % (rc, tail(err)))
    exp = ctx.expected()
    harness.compare(exp, parse(ctx, rs.lines("relptls")))
    n = len(rs.lines("relptls"))
    config(ctx, rs, relp=False, tls="otherca.pem")
    ctx.daemon.start()
    wait_for(lambda: "certificate verify failed" in
             ctx.daemon.proc.stderr(), 30,
             "the daemon to refuse the server certificate")
    ctx.daemon.stop()
    if len(rs.lines("relptls")) != n:
        raise Fail("records arrived over an unverified TLS session")
    ctx.note("%d versions over RELP/TLS with a client certificate, each "
             "once; a server of another CA refused" % len(exp))


def check_kill9(ctx):
    rs = Rsyslog(ctx)
    rs.start()
    config(ctx, rs, relp=True, tcp=True)
    ctx.daemon.start()
    kills = 0
    while kills < 10:
        # Kill as soon as a burst (one poll's new alerts) starts arriving
        # over RELP, so that records are in flight on both outputs.
        base = rs.size("relp")

        def grew():
            ctx.daemon.alive()
            return rs.size("relp") > base
        try:
            wait_for(grew, 60, "the outputs to deliver to rsyslogd (after "
                     "%d kills)" % kills, interval=0.002)
        except Fail as e:
            raise Fail("%s\n    daemon stderr (tail):\n%s"
                       % (e, tail(ctx.daemon.proc.stderr(), 12)))
        rs.kill9()
        kills += 1
        rs.start()
    snap = ctx.expected()

    def caught_up():
        ctx.daemon.alive()
        keys = set(d.key() for d in parse(ctx, rs.lines("relp"), []))
        return snap <= keys
    try:
        wait_for(caught_up, 60, "every version over RELP", interval=1)
    except Fail as e:
        dels = parse(ctx, rs.lines("relp"), [])
        tdels = parse(ctx, rs.lines("tcp"), [])
        m, x, u = tally(snap, ctx.expected(), dels)
        tk = set(d.key() for d in tdels)
        raise Fail("%s: %d of %d missing (%d of those also missing over "
                   "tcp), e.g. %s\n    daemon stderr (tail):\n%s"
                   % (e, len(m), len(snap), sum(k not in tk for k in m),
                      m[:3], tail(ctx.daemon.proc.stderr(), 8)))
    rtorn, ttorn = [], []
    relp = parse(ctx, rs.lines("relp"), rtorn)
    tcp = parse(ctx, rs.lines("tcp"), ttorn)
    for name, t in (("relp", rtorn), ("tcp", ttorn)):
        if len(t) > kills:
            raise Fail("%d events cut short in rsyslogd's %s file: more "
                       "than one per kill -9 (%d), e.g. %r"
                       % (len(t), name, kills, t[0][:200]))
    later = ctx.expected()
    rm, rx, ru = tally(snap, later, relp)
    tm, tx, tu = tally(snap, later, tcp)
    ctx.note("kill -9 of rsyslogd x%d mid-stream, %d versions: relp %d "
             "lost, %d duplicates; tcp %d lost, %d duplicates; events cut "
             "short by the kills in rsyslogd's files: relp %d, tcp %d"
             % (kills, len(snap), len(rm), rx, len(tm), tx, len(rtorn),
                len(ttorn)))
    if rm:
        raise Fail("%d versions lost over RELP, e.g. %s" % (len(rm), rm[:3]))
    if ru or tu:
        raise Fail("versions the cloud never showed: %s" % (ru or tu)[:3])
    if rx > kills * 1024:
        raise Fail("%d duplicates over RELP: more than the window (1024) "
                   "per kill" % rx)
    check_status_table(ctx, kills)


def check_status_table(ctx, kills):
    """alertrelayctl status shows, per output, the records in flight and
    the resends: numbers for RELP (resends after the kills), "-" for
    plain TCP, which has no receipts."""
    out = ctl_ok(ctx, "status")
    lines = out.splitlines()
    try:
        i = next(n for n, ln in enumerate(lines) if ln.startswith("OUTPUT"))
    except StopIteration:
        raise Fail("status has no output table:\n%s" % out)
    head = re.split(r"  +", lines[i].strip())
    rows = {}
    for ln in lines[i + 1:]:
        if not ln.strip():
            break
        cells = re.split(r"  +", ln.strip())
        rows[cells[0]] = dict(zip(head, cells))
    for col in ("IN FLIGHT", "RESENDS"):
        if col not in head:
            raise Fail("status output table has no %s column: %s"
                       % (col, head))
    relp, tcp = rows.get("relp", {}), rows.get("tcp", {})
    if not relp.get("RESENDS", "").isdigit() or \
            not relp.get("IN FLIGHT", "").isdigit():
        raise Fail("status: relp row %r lacks in-flight/resend counts" % relp)
    if int(relp["RESENDS"]) == 0:
        raise Fail("status: no resends counted over RELP after %d kills"
                   % kills)
    if tcp.get("IN FLIGHT") != "-" or tcp.get("RESENDS") != "-":
        raise Fail("status: tcp row %r should show - (no receipts)" % tcp)
    ctx.note("status: relp %s in flight, %s resends; tcp - -"
             % (relp["IN FLIGHT"], relp["RESENDS"]))


T3 = [{"name": "r%d" % i, "label": "Relp customer %d" % i}
      for i in range(1, 4)]


def fake_args(ts, *extra):
    args = []
    for t in ts:
        args += ["-t", t["name"]]
    return args + list(extra)


CASES = [
    {
        "name": "relp_once",
        "doc": "relp output to a real rsyslogd (imrelp), --once: every "
               "version exactly once",
        "fake": fake_args(T3, "--alerts", "100", "--seed", "31"),
        "tenants": T3,
        "syslog_ng": False,
        "check": check_once,
    },
    {
        "name": "relp_tls",
        "doc": "relp with tls = yes and a client certificate to rsyslogd: "
               "every version once; a server of another CA refused",
        "fake": fake_args(T3, "--alerts", "50", "--seed", "33"),
        "tenants": T3,
        "syslog_ng": False,
        "check": check_tls,
    },
    {
        "name": "relp_kill9",
        "doc": "relp and tcp side by side to rsyslogd, kill -9 of "
               "rsyslogd 10 times mid-stream: relp loses nothing",
        "fake": fake_args(T3, "--alerts", "200", "--rate", "150",
                          "--no-rate-limit", "--seed", "32"),
        "tenants": T3,
        "syslog_ng": False,
        "check": check_kill9,
    },
]
