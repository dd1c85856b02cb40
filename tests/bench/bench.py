#!/usr/bin/env python3
"""End-to-end benchmarks of alertrelayd against the fake cloud and the
counting TCP sink, all on loopback: backfill, fleet (+ reload), latency.

Usage: bench.py [--build DIR] [--short] [--json FILE] [--ref DIR]
                [--slow-sync MS] BENCH...
  BENCH: backfill | commit | fleet | latency | reload | fleet+reload
Each bench prints human-readable lines and one "RESULT name k=v ..." line.
Figures are printed, never asserted (the exit status is 0 unless a bench
could not run at all).
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
RUNNING = []            # every child started, to stop them on errors
CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"

# An LD_PRELOAD shim that pins the daemon's poll jitter at its midpoint
# (arc4random() = 2^31, so jitter_ms(P, 10, r) = P exactly) while
# arc4random_uniform() stays random (first-poll spread).  With it, the
# interval between two polls of a tenant is poll_interval + lateness.
PIN_SHIM = r"""
#include <stdint.h>
#include <stdlib.h>
uint32_t arc4random(void) { return 0x80000000u; }
uint32_t arc4random_uniform(uint32_t n) {
	return n == 0 ? 0 : (uint32_t)(((uint64_t)random() << 31 ^ random())
	    % n);
}
"""


def loadavg():
    return "%.2f/%.2f/%.2f" % os.getloadavg()


def mono():
    return time.monotonic()


def log(*a):
    print(*a, flush=True)


def pct(xs, p):
    """Nearest-rank percentile of a list (p in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def proc_cpu(pid):
    """utime + stime of a live process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_runq(pid):
    """Seconds this process spent runnable but waiting for a CPU."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_mem(pid):
    """(VmRSS, VmHWM) in MB."""
    rss = hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024.0
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024.0
    return rss, hwm


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    return "%d CPUs (%s), %.1f GB RAM" % (os.cpu_count(), model, mem)


def pinned(role):
    """BENCH_PIN=1 (2 CPUs or more): the daemon gets CPU 0 to itself; the
    fake cloud, the sink and this driver share the others, as the real
    cloud and SIEM are other machines.  A preexec_fn for Popen, or None."""
    if os.environ.get("BENCH_PIN", "") in ("", "0") or os.cpu_count() < 2:
        return None
    cpus = {0} if role == "daemon" else set(range(1, os.cpu_count()))
    return lambda: os.sched_setaffinity(0, cpus)


class Proc:
    """A child process whose stdout lines are read by a thread."""

    def __init__(self, argv, name, workdir, env=None, stdout_cb=None,
                 preexec=None):
        self.name = name
        self.workdir = workdir
        self.lines = []
        self.cb = stdout_cb
        self.err_path = os.path.join(workdir, name + ".err")
        self.err = open(self.err_path, "wb")
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                  stderr=self.err, env=env,
                                  preexec_fn=preexec)
        self.pid = self.p.pid
        self.rusage = None
        RUNNING.append(self)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if self.cb is not None:
                self.cb(line)
            else:
                self.lines.append(line)

    def wait_line(self, prefix, timeout):
        end = mono() + timeout
        while mono() < end:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if not self.alive():
                break
            time.sleep(0.05)
        raise RuntimeError("%s: no %r line (see %s)" %
                           (self.name, prefix, self.err_path))

    def cpu(self):
        return proc_cpu(self.pid)

    def alive(self):
        return self.wait(0) is None

    def wait(self, timeout=None):
        """Wait for exit, keeping its rusage; returns the exit status."""
        end = None if timeout is None else mono() + timeout
        while True:
            if self.p.returncode is not None:
                return self.p.returncode
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.rusage = ru
                self.p.returncode = os.waitstatus_to_exitcode(status)
                self.err.close()
                return self.p.returncode
            if end is not None and mono() > end:
                return None
            time.sleep(0.02)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.p.returncode is not None:
            return self.p.returncode
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        rc = self.wait(timeout)
        if rc is None:
            os.kill(self.pid, signal.SIGKILL)
            rc = self.wait()
        return rc


class Sink:
    def __init__(self, build, workdir, ids=False):
        self.stats = {}
        self.ids = {}
        self.lock = threading.Lock()
        argv = [os.path.join(build, "sink"), "--interval", "200"]
        if ids:
            argv.append("--ids")
        self.proc = Proc(argv, "sink", workdir, stdout_cb=self._line,
                         preexec=pinned("sink"))
        end = mono() + 10
        while "port" not in self.stats and mono() < end:
            time.sleep(0.02)
        if "port" not in self.stats:
            raise RuntimeError("sink did not start")
        self.port = self.stats["port"]

    def _line(self, line):
        with self.lock:
            if line.startswith("port="):
                self.stats["port"] = int(line[5:])
            elif line.startswith("stats "):
                kv = dict(x.split("=", 1) for x in line.split()[1:])
                self.stats.update({k: float(v) for k, v in kv.items()})
            elif line.startswith("id "):
                _, t, aid = line.split(" ", 2)
                self.ids.setdefault(aid, float(t))

    def get(self, key, default=0.0):
        with self.lock:
            return self.stats.get(key, default)

    def wait_count(self, n, timeout, quiet=1.0):
        """Wait until n messages arrived (or the count is stable)."""
        end = mono() + timeout
        while mono() < end:
            if self.get("msgs") >= n:
                return True
            time.sleep(0.1)
        return False

    def stop(self):
        self.proc.stop()
        time.sleep(0.1)


class Fake:
    def __init__(self, build, workdir, args, startup_timeout):
        argv = [os.path.join(build, "fakecloud"), "-p", "0"]
        argv += args
        t0 = mono()
        self.proc = Proc(argv, "fake", workdir, preexec=pinned("fake"))
        line = self.proc.wait_line("port=", startup_timeout)
        self.port = int(line[5:])
        self.startup_s = mono() - t0
        self.base = "http://127.0.0.1:%d" % self.port

    def get(self, path, timeout=60):
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return r.read()

    def post(self, path, body=b"", timeout=30):
        req = urllib.request.Request(self.base + path, data=body,
                                     method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def stats(self):
        return json.loads(self.get("/_control/stats"))

    def log_lines(self):
        return self.get("/_control/log").decode().splitlines()

    def stop(self):
        self.proc.stop()


class Notify:
    """A NOTIFY_SOCKET datagram socket recording (time, message)."""

    def __init__(self, workdir):
        self.path = os.path.join(workdir, "notify.sock")
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(self.path)
        self.s.settimeout(0.2)
        self.msgs = []
        self.done = False
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        while not self.done:
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.msgs.append((mono(), data.decode("utf-8", "replace")))

    def first(self, key, after=0.0):
        for t, m in list(self.msgs):
            if t >= after and key in m.split("\n"):
                return t
        return None

    def close(self):
        self.done = True
        self.t.join(1)
        self.s.close()


def ticks_of(ts):
    """'2026-01-02T03:04:05.1234567Z' -> seconds since the epoch (float)."""
    import calendar
    date, frac = ts.rstrip("Z"), 0.0
    if "." in date:
        date, f = date.split(".")
        frac = float("0." + f)
    return calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%S")) + frac


def write_config(d, fake_port, sink_port, tenants, daemon_keys):
    """Write alertrelay.conf with one secret file per tenant."""
    sec = os.path.join(d, "secrets")
    os.makedirs(sec, mode=0o700, exist_ok=True)
    lines = ["[daemon]", "state_dir = %s/state" % d,
             "control_socket = %s/control.sock" % d]
    lines += ["%s = %s" % kv for kv in daemon_keys.items()]
    lines += ["", '[output "sink"]', "transport = tcp",
              "address = 127.0.0.1:%d" % sink_port, "format = cef",
              "syslog_header = rfc5424", ""]
    url = "http://127.0.0.1:%d" % fake_port
    for t in tenants:
        p = os.path.join(sec, t)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, ("secret-%s\n" % t).encode())
        os.close(fd)
        lines += ['[tenant "%s"]' % t, "tenant_id = %s" % t,
                  "client_id = %s" % CLIENT_ID,
                  "client_secret_file = %s" % p,
                  "api_url = %s" % url, "login_url = %s" % url, ""]
    path = os.path.join(d, "alertrelay.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    os.makedirs(os.path.join(d, "state"), mode=0o700, exist_ok=True)
    return path


def tenant_names(n):
    return ["tenant-%04d" % (i + 1) for i in range(n)]


PROGRAMS = ("alertrelayd", "tests/fakes/fakecloud", "tests/bench/sink")
OPTIONAL = ("tests/bench/slowsync.so", "tests/bench/turns.so")


def snapshot(build, programs=PROGRAMS):
    """Copy the programs once: others may relink them while we run."""
    d = tempfile.mkdtemp(prefix="alertrelay-bench-bin.")
    for rel in OPTIONAL:
        if programs is PROGRAMS and os.path.exists(os.path.join(build, rel)):
            shutil.copy2(os.path.join(build, rel), d)
    for rel in programs:
        src = os.path.join(build, rel)
        for i in range(600):
            try:
                shutil.copy2(src, os.path.join(d, os.path.basename(rel)))
                break
            except OSError:
                if i == 0:
                    log("waiting for %s (being rebuilt?)" % src)
                time.sleep(0.5)
        else:
            raise RuntimeError("%s missing: run make" % src)
    return d


def start_daemon(build, workdir, conf, once=False, env_extra=None):
    # BENCH_DAEMON_WRAP="valgrind --tool=massif ..." runs it under a tool.
    argv = os.environ.get("BENCH_DAEMON_WRAP", "").split()
    argv += [os.path.join(build, "alertrelayd"), "-c", conf,
             "--log-target", "stderr"]
    if once:
        argv.append("--once")
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    env.update(env_extra or {})
    return Proc(argv, "alertrelayd", workdir, env=env,
                preexec=pinned("daemon"))


def pin_shim(workdir):
    src = os.path.join(workdir, "pin.c")
    so = os.path.join(workdir, "pin.so")
    with open(src, "w") as f:
        f.write(PIN_SHIM)
    subprocess.check_call(["cc", "-shared", "-fPIC", "-O2", "-o", so, src])
    return so


def result(name, d):
    d["loadavg"] = loadavg()
    log("RESULT %s %s" % (name, " ".join(
        "%s=%s" % (k, ("%.4g" % v) if isinstance(v, float) else v)
        for k, v in d.items())))


# ---------------------------------------------------------------- backfill

def start_profile(a, workdir, pid):
    """--profile: sample the daemon with perf (cpu-clock, call graphs)."""
    if not a.profile:
        return None
    out = os.path.join(workdir, "perf.data")
    return subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock",
                             "-F", "499", "--call-graph", "dwarf,8192",
                             "-p", str(pid), "-o", out],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_profile(prof, workdir):
    if prof is None:
        return
    prof.send_signal(signal.SIGINT)
    prof.wait()
    data = os.path.join(workdir, "perf.data")
    for args, title in ((["--no-children", "--sort", "dso,symbol"],
                         "self time"),
                        (["--children", "--sort", "symbol"],
                         "with callees")):
        for _ in range(3):
            r = subprocess.run(["perf", "report", "-i", data, "--stdio",
                                "-g", "none", "--percent-limit", "1.5"] +
                               args, capture_output=True, text=True)
            rows = [x.strip() for x in r.stdout.splitlines()
                    if x.strip() and not x.startswith("#")]
            if rows:
                break
            time.sleep(1)
        log("  profile of the daemon (%s):" % title)
        for row in rows or r.stderr.splitlines()[-3:]:
            log("    " + row)
    log("  perf data: %s (kept with --keep)" % data)



# ------------------------------------------------------------ loop lag

def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopLag:
    """The daemon's alertrelay_loop_lag_seconds histogram, scraped from its
    /metrics (issue 13's probe: a timer due every 100 ms, its lateness).
    poll() keeps the last good scrape (a --once daemon vanishes at exit);
    figures() gives p99 and max as bucket upper bounds, over the scrapes
    since mark()."""

    def __init__(self, port):
        self.port = port
        self.base = None
        self.last = None

    def scrape(self):
        url = "http://127.0.0.1:%d/metrics" % self.port
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        b = []
        for line in text.splitlines():
            if line.startswith("alertrelay_loop_lag_seconds_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                b.append((float("inf") if le == "+Inf" else float(le),
                          int(float(line.rsplit(" ", 1)[1]))))
        return b or None

    def poll(self):
        b = self.scrape()
        if b is not None:
            self.last = b
        return b

    def mark(self):
        self.base = self.poll()

    def figures(self):
        """(samples, p99 bound s, max bound s) or None without a scrape."""
        if self.last is None:
            return None
        base = self.base or [(le, 0) for le, _ in self.last]
        cum = [(le, n - n0) for (le, n), (_, n0) in zip(self.last, base)]
        total = cum[-1][1]
        if total == 0:
            return (0, 0.0, 0.0)
        p99 = next(le for le, n in cum if n >= 0.99 * total)
        mx = next(le for le, n in cum if n >= total)
        return (total, p99, mx)

    def report(self, what):
        f = self.figures()
        if f is None:
            log("  loop lag (%s): no /metrics scrape succeeded" % what)
            return {}
        n, p99, mx = f
        ok = p99 <= 0.005 and mx <= 0.05
        log("  loop lag (%s): %d probes, p99 <= %g ms, max <= %g ms "
            "(target p99 <= 5 ms, max <= 50 ms: %s)" % (
                what, n, p99 * 1e3, mx * 1e3, "met" if ok else "NOT-MET"))
        return {"lag_probes": n, "lag_p99_ms": p99 * 1e3,
                "lag_max_ms": mx * 1e3,
                "lag_status": "met" if ok else "NOT-MET"}


def bench_backfill(a, workdir, name="backfill", shape=None, build=None):
    """--once over every tenant's history: (tenants, alerts, page_size)."""
    ntenants, nalerts = (10, 2000) if a.short else (100, 10000)
    page_size = 10000
    if shape is not None:
        ntenants, nalerts, page_size = shape
    if a.tenants:
        ntenants = a.tenants
    if a.alerts:
        nalerts = a.alerts
    build = build or a.build
    total = ntenants * nalerts
    log("%s: %d tenants x %d alerts = %d, page_size = %d, --once%s" % (
        name, ntenants, nalerts, total, page_size,
        "" if build == a.build else " (reference binary)"))
    fake = Fake(a.build, workdir, ["--tenants", str(ntenants), "--alerts",
                str(nalerts), "--spread", "1h", "--no-rate-limit",
                "--seed", "1"], startup_timeout=30 + total / 20000)
    log("  fake started in %.1f s (rss %.0f MB)" %
        (fake.startup_s, proc_mem(fake.proc.pid)[0]))
    sink = Sink(a.build, workdir)
    lag = LoopLag(free_tcp_port())
    conf = write_config(workdir, fake.port, sink.port,
                        tenant_names(ntenants),
                        {"page_size": page_size, "first_fetch": "2h",
                         "poll_interval": "60s",
                         "metrics_listen": "127.0.0.1:%d" % lag.port})
    fake_cpu0, sink_cpu0 = fake.proc.cpu(), sink.proc.cpu()
    hwm = 0.0
    t0 = mono()
    turns_out = os.path.join(workdir, "turns.txt")
    d = start_daemon(build, workdir, conf, once=True,
                     env_extra=preload_env(a, turns_out))
    prof = start_profile(a, workdir, d.pid)
    rc = None
    limit = 120 + total / 2000.0
    runq = 0.0
    while rc is None:
        try:
            hwm = max(hwm, proc_mem(d.pid)[1])
            runq = max(runq, proc_runq(d.pid))
        except (FileNotFoundError, ProcessLookupError):
            pass
        lag.poll()
        rc = d.wait(0.5)
        if rc is None and mono() - t0 > limit:
            log("  daemon did not finish in %.0f s: stopping it" % limit)
            rc = d.stop()
    t_exit = mono() - t0
    stop_profile(prof, workdir)
    sink.wait_count(total, 10)
    fake_cpu = fake.proc.cpu() - fake_cpu0
    sink_cpu = sink.proc.cpu() - sink_cpu0
    got = int(sink.get("msgs"))
    t_last = sink.get("last") - t0 if got else float("nan")
    t_first = sink.get("first") - t0 if got else float("nan")
    ru = d.rusage
    cpu = ru.ru_utime + ru.ru_stime
    wall = max(t_exit, t_last)
    rate = got / wall if wall > 0 else 0
    peak = max(hwm, ru.ru_maxrss / 1024.0)
    st = fake.stats()
    log("  daemon exit %d after %.2f s; sink got %d/%d (first at %.2f s, "
        "last at %.2f s)" % (rc, t_exit, got, total, t_first, t_last))
    log("  end to end: %.0f alerts/s (%.2f s wall)" % (rate, wall))
    log("  daemon CPU %.2f s (user %.2f, sys %.2f) = %.3f s per 10,000 "
        "alerts (%.0f alerts per CPU second); peak RSS %.1f MB" % (
            cpu, ru.ru_utime, ru.ru_stime, cpu / (got / 1e4) if got else 0,
            got / cpu if cpu else 0, peak))
    log("  the daemon waited %.2f s for a CPU (runnable, other processes "
        "running): the machine's load, not the daemon's" % runq)
    log("  fake CPU %.2f s (%.0f%% of the wall time), sink CPU %.2f s; "
        "%d API requests" % (fake_cpu, 100 * fake_cpu / wall, sink_cpu,
                              st["api_requests"]))
    lagres = lag.report("backfill; scraped every 0.5 s, the last "
                        "scrape before exit")
    lagres.update(turns_report(a, turns_out))
    sink.stop()
    fake.stop()
    met = rate >= 25000 and peak <= 64 and got == total
    if name != "backfill":
        met = peak <= 64 and got == total
    res = dict(lagres)
    res.update({"alerts": got, "expected": total, "wall_s": wall,
           "alerts_per_s": rate, "cpu_s": cpu,
           "cpu_s_per_10k": cpu / (got / 1e4) if got else 0,
           "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
           "peak_rss_mb": peak, "runq_wait_s": runq,
           "alerts_per_cpu_s": got / cpu if cpu else 0,
           "fake_cpu_s": fake_cpu,
           "sink_cpu_s": sink_cpu, "exit": rc,
           "target": "alerts_per_s>=25000,peak_rss_mb<=64"
           if name == "backfill" else "peak_rss_mb<=64",
           "status": "met" if met else "NOT-MET"})
    if build != a.build:
        res["binary"] = "reference"
    result(name, res)
    return res


def preload_env(a, turns_out):
    """slowsync_env, plus the turn profiler (turns.so) writing to
    turns_out when it was built."""
    env = dict(slowsync_env(a) or {})
    so = os.path.join(a.build, "turns.so")
    if os.path.exists(so):
        env["LD_PRELOAD"] = " ".join(x for x in (env.get("LD_PRELOAD"), so)
                                     if x)
        env["TURNS_OUT"] = turns_out
    return env or None


def turns_report(a, path):
    """Print the loop's turns (turns.so): its own CPU per turn, and the
    wall time, whose excess is time spent waiting for a CPU."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return {}
    hist = {"turns_wall": [], "turns_cpu": []}
    head = {}
    for line in lines:
        f = line.split()
        if len(f) == 3 and f[0] in hist:
            hist[f[0]].append((float(f[1]), int(f[2])))
        elif f and f[0] == "turns":
            head = dict(x.split("=", 1) for x in f[1:])
    if not head:
        return {}

    def p99(h):
        total, cum = sum(n for _, n in h), 0
        for le, n in h:
            cum += n
            if cum >= 0.99 * total:
                return le
        return float("inf")
    n = int(head["n"])
    cpu_max = int(head["cpu_max_us"]) / 1e3
    wall_max = int(head["wall_max_us"]) / 1e3
    cp99, wp99 = p99(hist["turns_cpu"]), p99(hist["turns_wall"])
    long_cpu = sum(n for le, n in hist["turns_cpu"] if le > 4)
    long_wall = sum(n for le, n in hist["turns_wall"] if le > 4)
    log("  loop turns (turns.so): %d; the loop's own CPU per turn p99 <= "
        "%g ms, max %.1f ms; wall per turn p99 <= %g ms, max %.1f ms (the "
        "rest: runnable, waiting for a CPU); over 4 ms: %d by CPU, %d by "
        "wall" % (n, cp99, cpu_max, wp99, wall_max, long_cpu, long_wall))
    return {"turns": n, "turns_cpu_over_4ms": long_cpu,
            "turns_wall_over_4ms": long_wall,
            "turn_cpu_p99_ms": cp99, "turn_cpu_max_ms": cpu_max,
            "turn_wall_p99_ms": wp99, "turn_wall_max_ms": wall_max}


def slowsync_env(a):
    """--slow-sync MS: the daemon's fsync/fdatasync take MS longer."""
    if not a.slow_sync:
        return None
    return {"LD_PRELOAD": os.path.join(a.build, "slowsync.so"),
            "SLOWSYNC_MS": str(a.slow_sync)}


def bench_commit(a, workdir):
    """Many small pages: 20 tenants x 5,000 alerts at page_size = 1000,
    a page commit (spool syncs, state save) every 1,000 alerts.  With
    --ref DIR, the reference build (e.g. main's) runs alternately with
    this one, a.runs times each, and the ratio of medians is printed."""
    shape = (20, 5000, 1000)
    if not a.ref:
        return bench_backfill(a, workdir, "commit", shape)
    runs = {"new": [], "ref": []}
    for i in range(a.runs):
        for which, build in (("ref", a.ref), ("new", a.build)):
            w = tempfile.mkdtemp(prefix="alertrelay-bench-commit.",
                                 dir=workdir)
            try:
                runs[which].append(bench_backfill(
                    a, w, "commit", shape, build))
            finally:
                for p in RUNNING:
                    p.stop(signal.SIGKILL)
                del RUNNING[:]

    def med(which, k):
        xs = sorted(r[k] for r in runs[which])
        return xs[len(xs) // 2]
    ratio = med("new", "alerts_per_s") / max(med("ref", "alerts_per_s"), 1)
    log("  commit, %d alternating runs each: this build %.0f alerts/s "
        "(median), reference %.0f alerts/s: %.2fx" % (
            a.runs, med("new", "alerts_per_s"), med("ref", "alerts_per_s"),
            ratio))
    res = {"runs": a.runs, "alerts_per_s": med("new", "alerts_per_s"),
           "ref_alerts_per_s": med("ref", "alerts_per_s"), "ratio": ratio,
           "wall_s": med("new", "wall_s"), "ref_wall_s": med("ref", "wall_s"),
           "cpu_s": med("new", "cpu_s"), "ref_cpu_s": med("ref", "cpu_s"),
           "peak_rss_mb": max(r["peak_rss_mb"] for r in runs["new"]),
           "target": "ratio>=1.5,peak_rss_mb<=64",
           "status": "met" if ratio >= 1.5 and all(
               r["status"] == "met" for r in runs["new"]) else "NOT-MET"}
    result("commit-vs-ref", res)
    return res


# ------------------------------------------------------------ fleet/reload

def alert_request_times(lines, t_offset):
    """{tenant: [mono times of GET /api/alerts]} from the fake's log."""
    per = {}
    for line in lines:
        parts = line.split(" ")
        if len(parts) < 5 or parts[2] != "GET" or \
                not parts[3].startswith("/api/alerts"):
            continue
        per.setdefault(parts[1], []).append(ticks_of(parts[0]) - t_offset)
    for v in per.values():
        v.sort()
    return per


def lateness(per, interval, lo, hi):
    """Poll intervals minus poll_interval for polls in [lo, hi)."""
    late = []
    for ts in per.values():
        for x, y in zip(ts, ts[1:]):
            if lo <= y < hi:
                late.append(y - x - interval)
    return late


class LogCollector:
    """Fetch the fake's request log now and then (it keeps 100,000)."""

    def __init__(self, fake):
        self.fake = fake
        self.seen = set()
        self.lines = []

    def fetch(self):
        for line in self.fake.log_lines():
            if line not in self.seen:
                self.seen.add(line)
                self.lines.append(line)


def run_fleet(a, workdir, ntenants, measure_s, reload_after):
    interval = 60.0
    warmup = 75.0
    log("fleet: %d tenants, poll_interval = 60s, warm-up %.0f s, measured "
        "%.0f s%s; jitter %s" % (ntenants, warmup, measure_s,
                                 ", then SIGHUP" if reload_after else "",
                                 a.jitter))
    fake = Fake(a.build, workdir, ["--tenants", str(ntenants), "--alerts",
                "2", "--spread", "10m", "--rate", "0.05", "--seed", "2"],
                startup_timeout=120)
    # Wall clock vs monotonic, to read the fake's log time stamps.
    t_offset = time.time() - mono()
    sink = Sink(a.build, workdir)
    notify = Notify(workdir)
    lag = LoopLag(free_tcp_port())
    conf = write_config(workdir, fake.port, sink.port, tenant_names(ntenants),
                        {"poll_interval": "60s", "first_fetch": "1h",
                         "metrics_listen": "127.0.0.1:%d" % lag.port})
    env = {"NOTIFY_SOCKET": notify.path}
    if a.jitter == "pinned":
        env["LD_PRELOAD"] = pin_shim(workdir)
    coll = LogCollector(fake)
    t0 = mono()
    d = start_daemon(a.build, workdir, conf, env_extra=env)
    ready = None
    while mono() - t0 < warmup:
        if ready is None:
            ready = notify.first("READY=1")
        if not d.alive():
            raise RuntimeError("daemon exited: see %s" % d.err_path)
        time.sleep(0.5)
    ready_s = (ready - t0) if ready else float("nan")
    coll.fetch()
    # The measured window.
    w0 = mono()
    cpu0 = {"d": proc_cpu(d.pid), "f": fake.proc.cpu(),
            "s": sink.proc.cpu()}
    st0 = fake.stats()
    runq0 = proc_runq(d.pid)
    lag.mark()
    rss_max = 0.0
    next_fetch = w0 + 60
    while mono() - w0 < measure_s:
        rss_max = max(rss_max, proc_mem(d.pid)[0])
        if mono() > next_fetch:
            coll.fetch()
            next_fetch += 60
        time.sleep(1)
    w1 = mono()
    span = w1 - w0
    cpu = {"d": proc_cpu(d.pid) - cpu0["d"],
           "f": fake.proc.cpu() - cpu0["f"],
           "s": sink.proc.cpu() - cpu0["s"]}
    rss, hwm = proc_mem(d.pid)
    runq = proc_runq(d.pid) - runq0
    st1 = fake.stats()
    lag.poll()
    coll.fetch()
    per = alert_request_times(coll.lines, t_offset)
    late = lateness(per, interval, w0, w1)
    polled = sum(1 for ts in per.values() if any(w0 <= x < w1 for x in ts))
    reqs = (st1["requests"] - st0["requests"]) / span
    api = (st1["api_requests"] - st0["api_requests"]) / span
    cpu_pct = 100 * cpu["d"] / span
    log("  READY=1 %.2f s after start; %d of %d tenants polled in the "
        "window" % (ready_s, polled, ntenants))
    log("  daemon CPU %.2f%% of one core (%.2f s in %.0f s); RSS %.1f MB "
        "(max in window %.1f, VmHWM %.1f)" % (cpu_pct, cpu["d"], span, rss,
                                             rss_max, hwm))
    log("  the daemon waited %.2f s for a CPU in the window (machine "
        "load)" % runq)
    log("  requests %.1f/s (API %.1f/s); statuses %s" % (
        reqs, api, json.dumps(st1.get("status", {}))))
    if late:
        log("  poll lateness (interval - 60 s) over %d polls: p50 %.3f s, "
            "p99 %.3f s, max %.3f s, min %.3f s; > 1 s: %d" % (
                len(late), pct(late, 50), pct(late, 99), max(late),
                min(late), sum(1 for x in late if x > 1.0)))
        if a.jitter == "real":
            ex = [x - 0.1 * interval for x in late]
            log("  (real jitter of +-10%%: excess over +6 s p99 %.3f s, "
                "> 0: %d)" % (pct(ex, 99), sum(1 for x in ex if x > 0)))
    log("  fake CPU %.2f%%, sink CPU %.2f%% of one core" % (
        100 * cpu["f"] / span, 100 * cpu["s"] / span))
    lagres = lag.report("fleet, the measured window")
    met = cpu_pct <= 5 and max(rss_max, rss) <= 150 and late and \
        pct(late, 99) <= 1.0
    fleet = dict(lagres)
    fleet.update({"tenants": ntenants, "window_s": span, "cpu_pct": cpu_pct,
             "rss_mb": rss, "rss_max_mb": rss_max, "hwm_mb": hwm,
             "late_p50_s": pct(late, 50), "late_p99_s": pct(late, 99),
             "late_max_s": max(late) if late else float("nan"),
             "polls": len(late), "requests_per_s": reqs,
             "runq_wait_s": runq,
             "api_requests_per_s": api, "fake_cpu_pct": 100 * cpu["f"] / span,
             "sink_cpu_pct": 100 * cpu["s"] / span, "jitter": a.jitter,
             "target": "cpu_pct<=5,rss_mb<=150,late_p99_s<=1",
             "status": "met" if met else "NOT-MET"})
    result("fleet", fleet)

    rel = None
    if reload_after:
        rel = do_reload(a, d, notify, fake, coll, t_offset, interval,
                        ntenants)
    d.stop()
    notify.close()
    sink.stop()
    fake.stop()
    return fleet, rel


def do_reload(a, d, notify, fake, coll, t_offset, interval, ntenants):
    log("reload: SIGHUP with %d tenants configured" % ntenants)
    err0 = os.path.getsize(d.err_path)
    cpu0 = proc_cpu(d.pid)
    prof = start_profile(a, d.workdir, d.pid)
    if prof is not None:
        time.sleep(1)
    th = mono()
    os.kill(d.pid, signal.SIGHUP)
    ready = None
    while mono() - th < 30:
        ready = notify.first("READY=1", after=th)
        if ready is not None:
            break
        time.sleep(0.01)
    if prof is not None:
        time.sleep(0.5)
        stop_profile(prof, d.workdir)
    reloading = notify.first("RELOADING=1", after=th - 0.001)
    with open(d.err_path, "rb") as f:
        f.seek(err0)
        tail = f.read().decode("utf-8", "replace")
    unavailable = "reload is not available" in tail
    if "reload rejected" in tail:
        log("  the daemon rejected the reload: see %s" % d.err_path)
    # Watch every tenant's next poll after the signal.
    watch = interval + 8
    end = th + watch
    next_fetch = th + 30
    while mono() < end:
        if mono() > next_fetch:
            coll.fetch()
            next_fetch += 30
        time.sleep(0.5)
    coll.fetch()
    cpu = proc_cpu(d.pid) - cpu0
    per = alert_request_times(coll.lines, t_offset)
    late = lateness(per, interval, th, end)
    before = lateness(per, interval, th - watch, th)
    ready_s = ready - th if ready else float("nan")
    if unavailable:
        log("  the daemon says: %s" % next(
            (l for l in tail.splitlines() if "reload" in l), "").strip())
    log("  RELOADING=1 %s, READY=1 %s after SIGHUP" % (
        "seen" if reloading else "not seen",
        "%.3f s" % ready_s if ready else "never (30 s)"))
    if late:
        log("  polls in the %.0f s after SIGHUP: %d, lateness p50 %.3f s, "
            "p99 %.3f s, max %.3f s; delayed > 1 s: %d" % (
                watch, len(late), pct(late, 50), pct(late, 99), max(late),
                sum(1 for x in late if x > 1.0)))
    if before:
        log("  for comparison, the %.0f s before SIGHUP: %d polls, p99 "
            "%.3f s, delayed > 1 s: %d" % (watch, len(before),
                                         pct(before, 99),
                                         sum(1 for x in before if x > 1.0)))
    log("  daemon CPU during the reload window: %.2f s" % cpu)
    delayed = sum(1 for x in late if x > 1.0)
    met = ready is not None and delayed == 0 and not unavailable
    res = {"tenants": ntenants, "reload_available": not unavailable,
           "reloading_seen": reloading is not None, "ready_after_s": ready_s,
           "polls": len(late), "delayed_gt_1s": delayed,
           "delayed_gt_1s_before": sum(1 for x in before if x > 1.0),
           "late_max_s": max(late) if late else float("nan"),
           "target": "READY=1,delayed_gt_1s=0",
           "status": "met" if met else ("UNAVAILABLE" if unavailable
                                        else "NOT-MET")}
    result("reload", res)
    return res


def bench_fleet(a, workdir, reload_after=False):
    n, secs = (1000, 90.0) if a.short else (10000, 300.0)
    if a.tenants:
        n = a.tenants
    if a.seconds:
        secs = a.seconds
    return run_fleet(a, workdir, n, secs, reload_after)


def bench_reload(a, workdir):
    n = 1000 if a.short else 10000
    if a.tenants:
        n = a.tenants
    # A short fleet run whose window is just long enough to be steady.
    return run_fleet(a, workdir, n, a.seconds or 10.0, True)[1]


# ----------------------------------------------------------------- latency

def bench_latency(a, workdir):
    # Alerts go to random tenants at random moments (mean gap 0.25 s), so
    # the samples are many independent polls, not one alert per poll.
    nalerts, ntenants = (60, 50) if a.short else (600, 100)
    if a.alerts:
        nalerts = a.alerts
    if a.tenants:
        ntenants = a.tenants
    interval = 5.0
    log("latency: %d alerts published at random moments into %d tenants "
        "(random tenant each), poll_interval = 5s" % (nalerts, ntenants))
    fake = Fake(a.build, workdir, ["--tenants", str(ntenants), "--seed", "3"],
                startup_timeout=30)
    sink = Sink(a.build, workdir, ids=True)
    conf = write_config(workdir, fake.port, sink.port, tenant_names(ntenants),
                        {"poll_interval": "5s", "first_fetch": "1h"})
    d = start_daemon(a.build, workdir, conf)
    t0 = mono()
    while fake.stats()["api_requests"] < 2 * ntenants and mono() - t0 < 30:
        time.sleep(0.2)
    rnd = random.Random(4)
    sent = {}
    cpu0 = {"d": proc_cpu(d.pid), "f": fake.proc.cpu(),
            "s": sink.proc.cpu()}
    w0 = mono()
    for i in range(nalerts):
        time.sleep(rnd.uniform(0, 0.5))
        t = "tenant-%04d" % rnd.randint(1, ntenants)
        ts = mono()
        r = fake.post("/_control/alerts?tenant=%s&n=1" % t)
        sent[r["ids"][0]] = ts
    end = mono() + 3 * interval
    while mono() < end:
        with sink.lock:
            if all(k in sink.ids for k in sent):
                break
        time.sleep(0.1)
    span = mono() - w0
    cpu = {"d": proc_cpu(d.pid) - cpu0["d"],
           "f": fake.proc.cpu() - cpu0["f"],
           "s": sink.proc.cpu() - cpu0["s"]}
    with sink.lock:
        lat = [sink.ids[k] - t for k, t in sent.items() if k in sink.ids]
    missing = len(sent) - len(lat)
    d.stop()
    sink.stop()
    fake.stop()
    p50, p99 = pct(lat, 50), pct(lat, 99)
    log("  %d of %d received; latency p50 %.3f s, p90 %.3f s, p99 %.3f s, "
        "max %.3f s, min %.3f s" % (
            len(lat), len(sent), p50, pct(lat, 90), p99,
            max(lat) if lat else 0, min(lat) if lat else 0))
    log("  CPU over %.0f s: daemon %.2f%%, fake %.2f%%, sink %.2f%% of a "
        "core" % (span, 100 * cpu["d"] / span, 100 * cpu["f"] / span,
                  100 * cpu["s"] / span))
    met = missing == 0 and p99 <= interval + 0.1
    res = {"alerts": len(sent), "received": len(lat), "p50_s": p50,
           "p90_s": pct(lat, 90), "p99_s": p99,
           "max_s": max(lat) if lat else float("nan"),
           "target": "p99_s<=5.1", "status": "met" if met else "NOT-MET"}
    result("latency", res)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--tenants", type=int, default=0)
    ap.add_argument("--alerts", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--jitter", choices=["pinned", "real"], default="pinned")
    ap.add_argument("--profile", action="store_true",
                    help="backfill, reload: profile the daemon with perf")
    ap.add_argument("--ref", help="commit: a reference build directory "
                    "(e.g. main's) run alternately with this one")
    ap.add_argument("--runs", type=int, default=3,
                    help="commit with --ref: runs of each binary")
    ap.add_argument("--slow-sync", type=int, default=0, metavar="MS",
                    help="backfill, commit: delay the daemon's fsync and "
                    "fdatasync by MS (LD_PRELOAD slowsync.so)")
    ap.add_argument("--json", help="append results as JSON lines here")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directories")
    ap.add_argument("bench", nargs="+",
                    choices=["backfill", "commit", "fleet", "latency",
                             "reload", "fleet+reload"])
    a = ap.parse_args()
    # SIGTERM ends the run through the finally below (children stopped).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log("machine: %s" % machine())
    pin = pinned("driver")
    if pin is not None:
        pin()
        log("BENCH_PIN: alertrelayd on CPU 0; the fake cloud, the sink and "
            "the driver on CPUs 1-%d" % (os.cpu_count() - 1))
    a.build = snapshot(a.build)     # from here on, a directory of copies
    if a.ref:
        a.ref = snapshot(a.ref, ("alertrelayd",))
    rc = 0
    for b in a.bench:
        workdir = tempfile.mkdtemp(prefix="alertrelay-bench-%s." % b)
        t = mono()
        try:
            if b == "backfill":
                res = {"backfill": bench_backfill(a, workdir)}
            elif b == "commit":
                res = {"commit": bench_commit(a, workdir)}
            elif b == "fleet":
                res = {"fleet": bench_fleet(a, workdir)[0]}
            elif b == "fleet+reload":
                f, r = bench_fleet(a, workdir, reload_after=True)
                res = {"fleet": f, "reload": r}
            elif b == "reload":
                res = {"reload": bench_reload(a, workdir)}
            else:
                res = {"latency": bench_latency(a, workdir)}
        except Exception as e:      # report, carry on with the next bench
            log("%s: could not run: %s" % (b, e))
            rc = 1
            res = {b: {"error": str(e)}}
        finally:
            for p in RUNNING:
                p.stop(signal.SIGKILL)
            del RUNNING[:]
        log("(%s took %.0f s; load average now %s)" % (
            b, mono() - t, loadavg()))
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps(res) + "\n")
        if not a.keep:
            subprocess.call(["rm", "-rf", workdir])
    shutil.rmtree(a.build, ignore_errors=True)
    if a.ref:
        shutil.rmtree(a.ref, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
