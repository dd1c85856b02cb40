"""Integration case for a descriptor flood (issue 13, "Listener
exhaustion"): alertrelayd runs with a low open-files limit (prlimit
--nofile) and /metrics reachable; a client opens hundreds of idle
connections to it and holds them while syslog-ng restarts (the daemon
needs a new connection to it) and new alerts are made.  The listener must neither spin (the
daemon's CPU stays small) nor take the descriptors the daemon's own work
needs: new alerts keep arriving at syslog-ng during the flood, every
version once, and /metrics answers again as soon as the flood ends.
Loaded by harness.py next to cases.py (every cases_*.py exports CASES)."""

import os
import socket
import time
import urllib.request

import harness
from harness import Daemon, Fail, wait_delivered, wait_for

NOFILE = 64             # the limit the daemon runs with
FLOOD = 400             # idle connections the client tries to hold
OCTET = {"name": "near", "transport": "tcp", "framing": "octet-counting",
         "format": "cef", "sink": "octet"}


class LimitedDaemon(Daemon):
    """alertrelayd under prlimit --nofile=N:N."""

    def argv(self, *extra):
        return ["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--"] + \
            super().argv(*extra)


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metrics_ok(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                    timeout=1) as r:
            return r.status == 200 and b"alertrelay_" in r.read()
    except OSError:
        return False


def flood(port):
    """Open up to FLOOD connections (the kernel completes them from the
    listen queue whether or not the daemon accepts); keep them open."""
    socks = []
    for _ in range(FLOOD):
        s = socket.socket()
        s.settimeout(0.2)
        try:
            s.connect(("127.0.0.1", port))
            socks.append(s)
        except OSError:
            s.close()
    return socks


def check_fd_flood(ctx):
    d = LimitedDaemon(ctx.suite, ctx.dir, None)
    mport = harness.free_port()
    ctx.conf = d.conf = ctx.make_config(
        daemon={"metrics_listen": "127.0.0.1:%d" % mport})
    ctx.daemon = d
    d.start()
    wait_for(lambda: d.alive() and metrics_ok(mport), 15,
             "/metrics to answer")
    wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 20, daemon=d,
                   what="the first versions")
    pid = d.proc.pid        # prlimit execs alertrelayd
    socks = flood(mport)
    try:
        cpu0, t0 = cpu_s(pid), time.monotonic()
        # The daemon's own work during the flood needs new descriptors:
        # the SIEM restarts (a new connection to it), new alerts are read,
        # spooled and the state saved.
        ctx.sng.stop()
        ctx.fake.add_alerts("*", 5)
        ctx.sng.start()
        dels = wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected,
                              20, daemon=d,
                              what="the versions made during the flood")
        took = time.monotonic() - t0
        _, dups = harness.compare(ctx.expected(), dels, allow_dups=True)
        if dups:
            raise Fail("%d versions delivered twice during the flood"
                       % len(dups))
        time.sleep(max(0.0, 3.0 - took))    # a window to measure CPU in
        cpu = cpu_s(pid) - cpu0
        span = time.monotonic() - t0
        if cpu > 0.3 * span:
            raise Fail("the daemon used %.2f s CPU in %.1f s of flood "
                       "(spinning on accept?)" % (cpu, span))
        held = len(socks)
        nfd = len(os.listdir("/proc/%d/fd" % pid))
    finally:
        for s in socks:
            s.close()
    wait_for(lambda: metrics_ok(mport), 5,
             "/metrics to answer once the flood ended")
    err = d.proc.stderr()
    own = [ln for ln in err.splitlines() if "Too many open files" in ln and
           "metrics on" not in ln]
    if own:
        raise Fail("the daemon's own work ran out of descriptors during "
                   "the flood: %s" % own[0])
    warns = err.count("metrics on 127.0.0.1:%d: cannot accept" % mport)
    if warns > 1:
        raise Fail("the listener's descriptor shortage was logged %d times "
                   "(once a minute at most)" % warns)
    d.stop()
    ctx.note("nofile %d, %d idle connections held (the daemon had %d "
             "descriptors open): new versions arrived in %.1f s, daemon "
             "CPU %.2f s in %.1f s; /metrics answered after the flood" % (
                 NOFILE, held, nfd, took, cpu, span))


CASES = [
    {
        "name": "fd_flood",
        "doc": "nofile = 64 and 400 idle /metrics connections held: no "
               "spinning (CPU < 30 %), new versions still arrive once each "
               "within 20 s, /metrics answers once the flood ends",
        "fake": ["-t", "t1", "-t", "t2", "--alerts", "10", "--seed", "141"],
        "tenants": [{"name": "t1", "label": "Customer t1 Ltd"},
                    {"name": "t2", "label": "Customer t2 Ltd"}],
        "outputs": [OCTET],
        "check": check_fd_flood,
    },
]
