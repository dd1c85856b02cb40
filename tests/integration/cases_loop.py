"""A loop that never waits, SIGTERM that does not linger, lag that is
loud (issue 13, SPEC section 5 "Robustness rules"):

- dns_hang: an output addressed by a host name that only a silent name
  server could answer (a private mount namespace whose resolv.conf names
  a loopback UDP port this test holds open and never answers) does not
  stall the loop: /metrics answers and the other outputs (a numeric
  address, and a name from /etc/hosts) deliver within their deadlines;
  the output's status shows the resolver problem; once the name server
  answers, the output resolves through it and connects.
- sigterm_outage: with the SIEM down and records spooled, SIGTERM exits
  0 at once; after a restart with the SIEM back every version arrives.
  With the SIEM up, a stop still delivers what is queued.
- lag_warning: a tenant whose API always fails is reported as lagging
  after [daemon] lag_warning, once, naming the tenant; the healthy one
  is not.
- rate_reload_storm: a tenant that spent its 100 calls of the minute
  stays within them through a storm of reloads, including one that
  removes it and one that adds it back (budgets are kept by name)."""

import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request

import harness
from harness import (Daemon, Fail, free_port, tail, wait_for,
                     wait_delivered)
from cases_ctl import ctl_ok, status_json
from cases_durability import ChaosProxy, spool_records, spool_segments

OCTET = {"name": "near", "transport": "tcp", "framing": "octet-counting",
         "format": "cef", "sink": "octet"}
FAR_HOST = "siem.alertrelay.test"       # only DNS could answer this
HOSTS_HOST = "siem-hosts.alertrelay.test"  # in the namespace's /etc/hosts


def two_tenants():
    return [{"name": "t1", "label": "Customer t1 Ltd"},
            {"name": "t2", "label": "Customer t2 Ltd"}]


def cannot(reason):
    """Skip when the harness knows how; else fail saying why."""
    skip = getattr(harness, "Skip", None)
    if skip is not None:
        raise skip(reason)
    raise Fail("cannot run: %s" % reason)


def silent_nameserver():
    """A UDP socket on port 53 of a random 127/8 address that is never
    read: queries to it get no answer and no ICMP error."""
    rnd = random.Random()
    for _ in range(20):
        addr = "127.%d.%d.%d" % (rnd.randrange(1, 255), rnd.randrange(0, 255),
                                 rnd.randrange(2, 255))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((addr, 53))
            return s, addr
        except OSError:
            s.close()
    cannot("cannot bind a UDP socket on port 53 of a loopback address "
           "(needs root)")


class NsDaemon(Daemon):
    """The daemon in a private mount namespace whose /etc/resolv.conf and
    /etc/hosts are the given files."""

    def __init__(self, suite, d, conf, resolv, hosts):
        super().__init__(suite, d, conf)
        self.resolv = resolv
        self.hosts = hosts

    def argv(self, *extra):
        script = ('mount --bind "$1" /etc/resolv.conf && '
                  'mount --bind "$2" /etc/hosts && shift 2 && exec "$@"')
        return ["unshare", "-m", "--propagation", "private", "sh", "-c",
                script, "sh", self.resolv, self.hosts] + \
            super().argv(*extra)


def check_namespaces():
    if os.geteuid() != 0:
        cannot("a private mount namespace needs root")
    if shutil.which("unshare") is None:
        cannot("unshare (util-linux) is not installed")
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh",
                        "-c", "mount --bind /etc/hosts /etc/hosts"],
                       capture_output=True)
    if r.returncode != 0:
        cannot("cannot bind-mount in a private mount namespace: %s"
               % r.stderr.decode(errors="replace").strip())


class MetricsProbe(threading.Thread):
    """GET /metrics every 200 ms; records each answer's latency and every
    request that got no answer within 1 s."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.url = "http://127.0.0.1:%d/metrics" % port
        self.stop_at = None
        self.lat = []
        self.late = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=1.0) as r:
                    r.read()
                self.lat.append(time.monotonic() - t0)
            except OSError as e:
                self.late.append("%.1fs: %s" % (time.monotonic() - t0, e))
            self.halt.wait(0.2)


def check_dns_hang(ctx):
    check_namespaces()
    sock, ns_addr = silent_nameserver()
    ns = NameServer(sock)
    try:
        dns_hang_run(ctx, ns_addr, ns)
    finally:
        ns.halt.set()
        sock.close()


class NameServer(threading.Thread):
    """Once started, answers the queries on the silent socket: A
    127.0.0.1 for FAR_HOST, no data for anything else."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock = sock
        self.halt = threading.Event()
        self.answered = 0

    def run(self):
        self.sock.settimeout(0.2)
        while not self.halt.is_set():
            try:
                q, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            r = self.reply(q)
            if r is not None:
                self.sock.sendto(r, peer)
                self.answered += 1

    @staticmethod
    def reply(q):
        if len(q) < 17:
            return None
        i, labels = 12, []
        while i < len(q) and q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        yes = name == FAR_HOST and qtype == 1
        head = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if yes else 0,
                                   0, 0)
        ans = b""
        if yes:
            ans = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + \
                socket.inet_aton("127.0.0.1")
        return head + question + ans


def dns_hang_run(ctx, ns_addr, ns):
    resolv = os.path.join(ctx.dir, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver %s\n" % ns_addr)
    hosts = os.path.join(ctx.dir, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n127.0.0.1 %s\n" % HOSTS_HOST)
    lf_port = ctx.sng.ports["lf"]
    mport = free_port()
    outputs = [OCTET,
               {"name": "byhosts", "transport": "tcp", "framing": "newline",
                "format": "cef", "address": "%s:%d" % (HOSTS_HOST, lf_port)},
               {"name": "far", "transport": "tcp", "framing": "newline",
                "format": "cef", "address": "%s:%d" % (FAR_HOST, lf_port)}]
    ctx.conf = ctx.make_config(outputs=outputs, daemon={
        "metrics_listen": "127.0.0.1:%d" % mport})
    ctx.daemon = NsDaemon(ctx.suite, ctx.dir, ctx.conf, resolv, hosts)
    ctx.daemon.start()
    # The listener is bound before the loop runs; from then on every
    # scrape must be answered within 1 s.
    wait_for(lambda: ctx.daemon.alive() and harness.port_open(mport), 10,
             "the metrics listener")
    probe = MetricsProbe(mport)
    probe.start()
    try:
        t0 = time.monotonic()
        wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 4,
                       daemon=ctx.daemon,
                       what="the numeric output to deliver the backlog "
                            "while a name lookup hangs")
        wait_delivered(ctx.suite, ctx.sng, "lf", ctx.expected, 4,
                       daemon=ctx.daemon,
                       what="the output named in /etc/hosts to deliver")
        first = time.monotonic() - t0
        # New alerts while the lookup still hangs: a 1 s poll plus 1 s.
        ctx.fake.add_alerts("*", 3)
        t1 = time.monotonic()
        wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 2.5,
                       daemon=ctx.daemon,
                       what="new alerts at the numeric output within a "
                            "poll interval plus 1 s")
        fresh = time.monotonic() - t1
        # A reload that changes output far while its lookup is in flight
        # frees it mid-lookup (the lookup is cancelled); the new far
        # starts its own.
        outputs[2]["address"] = "%s:%d" % (FAR_HOST, ctx.sng.ports["octet"])
        ctx.make_config(outputs=outputs, daemon={
            "metrics_listen": "127.0.0.1:%d" % mport})
        out = ctl_ok(ctx, "reload")
        if "reload applied" not in out:
            raise Fail("reload: %s" % out.strip())
        ctx.daemon.alive()
        # The status names the resolver problem once the lookup gives up.
        far = wait_for(lambda: far_error(ctx), 20,
                       "status --json to show output far's resolver error")
        elapsed = time.monotonic() - t0
    finally:
        probe.halt.set()
        probe.join(3)
    if probe.late:
        raise Fail("/metrics did not answer within 1 s while a name lookup "
                   "hung (%d of %d scrapes): %s"
                   % (len(probe.late), len(probe.late) + len(probe.lat),
                      "; ".join(probe.late[:3])))
    if len(probe.lat) < 10:
        raise Fail("only %d scrapes answered in %.0fs"
                   % (len(probe.lat), elapsed))
    err = daemon_stderr(ctx)
    if not any(FAR_HOST in line and "resolve" in line
               for line in err.split("\n")):
        raise Fail("the log does not name the lookup of %s that failed:\n%s"
                   % (FAR_HOST, tail(err)))
    # The name server starts answering: output far resolves (through
    # evdns, not /etc/hosts) and connects on a later attempt.
    ns.start()
    t2 = time.monotonic()
    wait_for(lambda: far_connected(ctx), 40,
             "output far to connect once the name server answers")
    ctx.daemon.stop()
    ctx.note("backlog at both outputs in %.1fs, new alerts in %.1fs; "
             "%d scrapes over %.0fs, slowest %.0f ms; far: %s; connected "
             "%.1fs after the name server began to answer (%d answers)"
             % (first, fresh, len(probe.lat), elapsed,
                max(probe.lat) * 1000, far, time.monotonic() - t2,
                ns.answered))


def far_connected(ctx):
    ctx.daemon.alive()
    for o in status_json(ctx).get("outputs", []):
        if o.get("name") == "far" and o.get("connected") and \
                o.get("messages_sent", 0) > 0:
            if o.get("last_error"):
                raise Fail("output far connected but still shows an "
                           "error: %s" % o["last_error"])
            return True
    return False


def far_error(ctx):
    """Output far's last error from status --json, when it names the
    host and the failed lookup."""
    st = status_json(ctx)
    for o in st.get("outputs", []):
        if o.get("name") != "far":
            continue
        if o.get("connected"):
            raise Fail("output far shows connected; it cannot be")
        e = o.get("last_error") or ""
        if FAR_HOST in e and "resolve" in e:
            return e
    return None


def daemon_stderr(ctx):
    out = []
    for i in range(1, ctx.daemon.runs + 1):
        p = os.path.join(ctx.dir, "alertrelayd.%d.stderr" % i)
        try:
            with open(p, "rb") as f:
                out.append(f.read().decode("utf-8", "replace"))
        except FileNotFoundError:
            pass
    return "".join(out)


def output_stats(ctx, name="near"):
    for o in status_json(ctx).get("outputs", []):
        if o.get("name") == name:
            return o
    raise Fail("status --json shows no output %s" % name)


def sigterm(ctx, limit):
    """SIGTERM the daemon; its exit status and how long it took.  Fails
    when it is still running after limit seconds (then SIGKILLed)."""
    p = ctx.daemon.proc
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGTERM)
    rc = p.wait(limit)
    dt = time.monotonic() - t0
    if rc is None:
        p.stop(signal.SIGKILL)
        raise Fail("alertrelayd still running %.0fs after SIGTERM; stderr:"
                   "\n%s" % (limit, tail(p.stderr())))
    p.close()
    ctx.suite.check_sanitizer(p)
    return rc, dt


def check_sigterm_outage(ctx):
    exp = ctx.expected()
    # The SIEM is down: everything read goes to the spool.
    ctx.sng.stop()
    start_daemon(ctx)
    wait_for(lambda: output_stats(ctx)["spool_records"] >= len(exp), 15,
             "all %d versions in output near's spool" % len(exp))
    rc, dt = sigterm(ctx, 5)
    if rc != 0 or dt > 1.0:
        raise Fail("SIGTERM with the SIEM down: exit status %s after %.1fs "
                   "(expected 0 within 1 s: no output holding alerts is "
                   "connected)" % (rc, dt))
    note = "SIEM down: SIGTERM exit in %.2fs" % dt
    # The SIEM is back: the next start delivers everything.
    ctx.sng.start()
    start_daemon(ctx)
    dels = wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30,
                          daemon=ctx.daemon,
                          what="the spooled versions after a restart")
    _, dups = harness.compare(exp, dels, allow_dups=True)
    rc, dt = sigterm(ctx, 15)
    if rc != 0:
        raise Fail("SIGTERM with the SIEM up: exit status %s" % rc)
    note += "; after the restart all %d versions, %d duplicates" % (
        len(exp), sum(dups.values()) - len(dups))
    ctx.note(note + "; " + drain_connected(ctx))


def start_daemon(ctx):
    ctx.daemon.start()
    sock = os.path.join(ctx.dir, "ctl.sock")
    wait_for(lambda: ctx.daemon.alive() and os.path.exists(sock) and
             harness_ctl_ok(ctx), 15, "the control socket to answer")


def harness_ctl_ok(ctx):
    try:
        status_json(ctx)
        return True
    except Fail:
        return False


def drain_connected(ctx):
    """A stop with a connected SIEM still delivers what is queued: a
    backlog through a rate-limited proxy, SIGTERM while the output is
    connected and holds records; they all arrive before the exit."""
    ctx.fake.add_alerts("*", 1500)
    proxy = ChaosProxy(ctx.sng.ports["octet"], 0, random.Random(1), 0,
                       rate=1 << 20)
    try:
        out = dict(OCTET)
        del out["sink"]
        out["address"] = proxy.address()
        ctx.conf = ctx.make_config(outputs=[out])
        ctx.daemon.start()

        def backlog():
            ctx.daemon.alive()
            try:
                o = output_stats(ctx)
            except Fail:
                return None
            return o if o["connected"] and o["spool_records"] >= 200 \
                else None
        wait_for(backlog, 30, "output near connected with 200 records "
                 "queued", interval=0.05)
        before = len(ctx.sng.messages("octet"))
        queued = output_stats(ctx)["spool_records"]
        rc, dt = sigterm(ctx, 15)
        if rc != 0:
            raise Fail("SIGTERM while delivering: exit status %s" % rc)
        err = ctx.daemon.proc.stderr()
        if "stop deadline reached" in err:
            raise Fail("the stop gave up at the deadline:\n%s" % tail(err))
        # Everything in the spool is delivered: each record the daemon
        # spooled (segments keep acknowledged records until they are
        # full) is at syslog-ng, once the proxy has passed it on.
        spooled = spooled_keys(ctx)
        try:
            wait_for(lambda: spooled <= syslog_keys(ctx), 20,
                     "every spooled record at syslog-ng")
        except Fail:
            miss = spooled - syslog_keys(ctx)
            raise Fail("SIGTERM with a connected SIEM: %d of %d spooled "
                       "records never arrived, e.g. %s"
                       % (len(miss), len(spooled), sorted(miss)[:3]))
    finally:
        proxy.close()
    during = len(ctx.sng.messages("octet")) - before
    if during <= 0:
        raise Fail("nothing arrived after SIGTERM although %d records "
                   "were queued" % queued)
    return ("SIEM up: %d records queued at SIGTERM, %d arrived during "
            "the %.1fs stop, all %d spooled delivered"
            % (queued, during, dt, len(spooled)))


ID_RE = re.compile(r"\bexternalId=(\S+)")
RT_RE = re.compile(r"\brt=(\d+)")


def record_key(text):
    """(externalId, rt) of a CEF message, or None."""
    i, r = ID_RE.search(text), RT_RE.search(text)
    return (i.group(1), r.group(1)) if i and r else None


def spooled_keys(ctx):
    """(externalId, rt) of every record in output near's spool files."""
    d = os.path.join(ctx.dir, "state", "spool", "near")
    out = set()
    for seg in spool_segments(d):
        for _, payload in spool_records(seg):
            k = record_key(payload.decode("utf-8", "replace"))
            if k is None:
                raise Fail("spooled record without externalId/rt: %r"
                           % payload[:200])
            out.add(k)
    if not out:
        raise Fail("output near's spool %s holds no record" % d)
    return out


def syslog_keys(ctx):
    out = set()
    for r in ctx.sng.messages("octet"):
        k = record_key(r.get("MESSAGE", ""))
        if k is not None:
            out.add(k)
    return out


def lag_lines(ctx, tenant):
    return [line for line in ctx.daemon.proc.stderr().split("\n")
            if "tenant %s is lagging" % tenant in line]


def check_lag_warning(ctx):
    ctx.daemon.start()
    # t2's API answers 500 to every call: it never completes a catch-up.
    line = wait_for(lambda: ctx.daemon.alive() and
                    (lag_lines(ctx, "t2") or [None])[0], 8,
                    "a lag warning naming tenant t2")
    for want in ("warning", "lag_warning 2s", "no catch-up completed for",
                 "alertrelayctl status", "500"):
        if want not in line:
            raise Fail("the lag warning does not say %r: %s" % (want, line))
    st = {t["name"]: t for t in status_json(ctx)["tenants"]}
    if not st["t2"]["lagging"] or st["t1"]["lagging"]:
        raise Fail("alertrelayctl status --json: t2 lagging=%s, t1 "
                   "lagging=%s" % (st["t2"]["lagging"], st["t1"]["lagging"]))
    text = ctl_ok(ctx, "status")
    if not re.search(r"^t2 .*/lagging", text, re.M):
        raise Fail("alertrelayctl status does not show t2 as lagging:\n%s"
                   % text)
    wait_delivered(ctx.suite, ctx.sng, "octet",
                   lambda: ctx.expected(only=["t1"]), 15, daemon=ctx.daemon,
                   what="tenant t1's versions")
    # Several more checks pass (one per second): still one warning.
    time.sleep(3)
    if len(lag_lines(ctx, "t2")) != 1:
        raise Fail("%d lag warnings for one streak of t2:\n%s"
                   % (len(lag_lines(ctx, "t2")),
                      "\n".join(lag_lines(ctx, "t2"))))
    if lag_lines(ctx, "t1"):
        raise Fail("healthy tenant t1 reported lagging: %s"
                   % lag_lines(ctx, "t1")[0])
    # The API recovers: one info line says so.
    ctx.fake.fault("t2", "clear")
    wait_for(lambda: ctx.daemon.alive() and
             "tenant t2 caught up again" in ctx.daemon.proc.stderr(), 15,
             "the line saying t2 caught up again")
    wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 15,
                   daemon=ctx.daemon, what="every version once t2 recovers")
    ctx.daemon.stop()
    ctx.note(line.strip())


def api_calls(ctx, tenant):
    """[(status, uri)] of the alert API calls the fake logged for tenant."""
    out = []
    for line in (ctx.fake.log() or "").split("\n"):
        f = line.split(" ")
        if len(f) >= 5 and f[1] == tenant and "/oauth2/" not in f[3]:
            out.append((int(f[-1]), f[3]))
    return out


def check_rate_reload_storm(ctx):
    ctx.fake.add_alerts("t1", 3000)
    ctx.daemon.start()
    # 3,000 alerts in pages of 10: t1 spends its budget at once.
    wait_for(lambda: ctx.daemon.alive() and
             len(api_calls(ctx, "t1")) >= 100, 30,
             "t1 to make its 100 calls of the minute")
    t0 = time.monotonic()
    conf = ctx.daemon.conf
    without = ctx.make_config(name="without-t1.conf",
                              tenants=[two_tenants()[1]])
    with open(conf) as f:
        full = f.read()
    with open(without) as f:
        partial = f.read()
    for text in (full, full, partial, full, full, full):
        with open(conf, "w") as f:
            f.write(text)
        os.kill(ctx.daemon.proc.pid, signal.SIGHUP)
        time.sleep(0.4)
    time.sleep(2)
    if not ctx.daemon.alive():
        raise Fail("the daemon died during the reload storm:\n%s"
                   % tail(ctx.daemon.proc.stderr()))
    if time.monotonic() - t0 > 50:
        raise Fail("the storm took too long to say anything about one "
                   "minute's budget")
    calls = api_calls(ctx, "t1")
    throttled = [u for st, u in calls if st == 429]
    if len(calls) > 100 or throttled:
        raise Fail("t1 made %d API calls within a minute (%d answered 429) "
                   "through 6 reloads; the API allows 100"
                   % (len(calls), len(throttled)))
    if "reload" not in ctx.daemon.proc.stderr():
        raise Fail("no reload was logged")
    wait_delivered(ctx.suite, ctx.sng, "octet",
                   lambda: ctx.expected(only=["t2"]), 20, daemon=ctx.daemon,
                   what="tenant t2's versions")
    ctx.daemon.stop()
    ctx.note("t1: %d calls in its first minute through 6 reloads (one "
             "removing it, one adding it back), no 429" % len(calls))


CASES = [
    {
        "name": "dns_hang",
        "doc": "a silent name server (private mount namespace) does not "
               "stall the loop: /metrics answers within 1 s, outputs with "
               "a numeric address or an /etc/hosts name deliver; the "
               "output's status shows the resolver error",
        "fake": ["-t", "t1", "-t", "t2", "--alerts", "20", "--seed", "131"],
        "tenants": two_tenants(),
        "outputs": [OCTET],
        "check": check_dns_hang,
    },
    {
        "name": "sigterm_outage",
        "doc": "SIGTERM with the SIEM down and alerts spooled exits 0 within "
               "1 s; after a restart with the SIEM back every version "
               "arrives; with a connected SIEM a stop still delivers what "
               "is queued",
        "fake": ["-t", "t1", "-t", "t2", "--alerts", "20", "--seed", "132"],
        "tenants": two_tenants(),
        "outputs": [OCTET],
        "check": check_sigterm_outage,
    },
    {
        "name": "lag_warning",
        "doc": "lag_warning = 2s: a tenant whose API always answers 500 is "
               "reported lagging once, naming it; the healthy tenant is "
               "not; an info line when it catches up again",
        "fake": ["-t", "t1", "-t", "t2", "--alerts", "5", "--seed", "133",
                 "--fault", "t2:500:1000000"],
        "tenants": two_tenants(),
        "outputs": [OCTET],
        "daemon": {"lag_warning": "2s"},
        "check": check_lag_warning,
    },
    {
        "name": "rate_reload_storm",
        "doc": "a tenant that spent its 100 calls/min stays within them "
               "through 6 reloads, one removing it and one adding it "
               "back: no 429 from the API",
        "fake": ["-t", "t1", "-t", "t2", "--alerts", "20", "--seed", "134"],
        "tenants": two_tenants(),
        "daemon": {"page_size": "10"},
        "outputs": [OCTET],
        "check": check_rate_reload_storm,
    },
]
