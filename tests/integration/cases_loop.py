"""A loop that never waits, SIGTERM that does not linger, lag that is
loud (issue 13, SPEC section 5 "Robustness rules"):

- dns_hang: an output addressed by a host name that only a silent name
  server could answer (a private mount namespace whose resolv.conf names
  a loopback UDP port this test holds open and never answers) does not
  stall the loop: /metrics answers and the other outputs (a numeric
  address, and a name from /etc/hosts) deliver within their deadlines;
  the output's status shows the resolver problem.
- sigterm_outage: with the SIEM down and records spooled, SIGTERM exits
  0 at once; after a restart with the SIEM back every version arrives.
  With the SIEM up, a stop still delivers what is queued.
- lag_warning: a tenant whose API always fails is reported as lagging
  after [daemon] lag_warning, once, naming the tenant; the healthy one
  is not."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import harness
from harness import (Daemon, Fail, free_port, tail, wait_for,
                     wait_delivered)
from cases_ctl import ctl_ok, status_json

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
    try:
        dns_hang_run(ctx, ns_addr)
    finally:
        sock.close()


def dns_hang_run(ctx, ns_addr):
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
    ctx.daemon.stop()
    ctx.note("backlog at both outputs in %.1fs, new alerts in %.1fs; "
             "%d scrapes over %.0fs, slowest %.0f ms; far: %s"
             % (first, fresh, len(probe.lat), elapsed,
                max(probe.lat) * 1000, far))


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
]
