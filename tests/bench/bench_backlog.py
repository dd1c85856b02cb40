#!/usr/bin/env python3
"""Backlog benchmark: the daemon's memory while a SIEM outage piles up
alerts in its spool, and how fast it drains the backlog once the SIEM is
back.  Everything runs on loopback: the fake cloud, alertrelayd, and a
counting TCP receiver (newline framing) that stays down during the outage.

Usage: bench_backlog.py [--build DIR] [--alerts N] [--tenants N]
                        [--mode live|backfill|both] [--keep]
Two ways to build the backlog (--mode, default both):
  live      the alerts appear during the outage, a quarter at a time, with
            lastUpdateTime = now: the daemon also remembers every one of
            them in its per-tenant dedupe set (versions newer than the
            cursor - 2 x overlap), so RSS includes that set; and each poll
            (every 10s here) re-reads them all as the overlap window;
  backfill  the alerts are spread over the hour before the start and read
            by the first catch-up: the dedupe set is pruned as the cursor
            moves, so RSS shows what the spool and the pipeline cost.
Prints RSS (VmRSS, and the peak VmHWM) of alertrelayd with 0 alerts
spooled and at every quarter of the backlog, the spool size on disk, the
time it took to spool, and the delivery rate while draining, then one
"RESULT backlog_MODE k=v ..." line.  Figures are printed, never asserted.
"""

import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"
TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# The receiver: counts newline-framed messages; reports the count every
# 100 ms, and the exact times of the first byte and of message N (argv[2]).
RECEIVER = r"""
import selectors, socket, sys, time
want = int(sys.argv[2])
first = None
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(8)
ls.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(ls, selectors.EVENT_READ)
n = 0
last = 0
while True:
    for key, _ in sel.select(0.1):
        if key.fileobj is ls:
            c, _ = ls.accept()
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
            continue
        try:
            data = key.fileobj.recv(1 << 20)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            sel.unregister(key.fileobj)
            key.fileobj.close()
            continue
        if first is None:
            first = time.monotonic()
            print("first %.6f" % first, flush=True)
        n += data.count(b"\n")
        if n >= want:
            print("done %.6f %d" % (time.monotonic(), n), flush=True)
            want = float("inf")
    now = time.monotonic()
    if now - last >= 0.1:
        print("%.3f %d" % (now, n), flush=True)
        last = now
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def status(pid):
    """(VmRSS, VmHWM) in KiB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def spool_records(d):
    """Records and bytes in the spool's segment files (headers only)."""
    n = size = 0
    try:
        names = sorted(f for f in os.listdir(d) if f.endswith(".seg"))
    except FileNotFoundError:
        return 0, 0
    for name in names:
        with open(os.path.join(d, name), "rb") as f:
            end = os.fstat(f.fileno()).st_size
            size += end
            off = 0
            while off + 12 <= end:
                f.seek(off)
                h = f.read(12)
                if h[:4] != b"ARS1":
                    break
                off += 12 + struct.unpack("<I", h[4:8])[0]
                n += 1
    return n, size


def call(url, method="GET"):
    req = urllib.request.Request(url, data=b"" if method == "POST" else None,
                                 method=method)
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.read()


class Run:
    def __init__(self, build, keep):
        self.build = build
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="alertrelay-bench-backlog.")
        self.procs = []

    def start(self, name, argv, **kw):
        out = open(os.path.join(self.dir, name + ".out"), "wb")
        err = open(os.path.join(self.dir, name + ".err"), "wb")
        p = subprocess.Popen(argv, stdout=kw.pop("stdout", out), stderr=err,
                             stdin=subprocess.DEVNULL, cwd=self.dir, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def config(run, fake_url, port, tenants, poll):
    state = os.path.join(run.dir, "state")
    lines = ["[daemon]", "state_dir = %s" % state,
             "poll_interval = %s" % poll,
             "overlap = 2m", "first_fetch = 2h", "page_size = 1000",
             "control_socket = %s" % os.path.join(run.dir, "ctl.sock"),
             "", '[output "siem"]', "transport = tcp",
             "address = 127.0.0.1:%d" % port, "framing = newline",
             "format = cef", "spool_max_bytes = 4G"]
    os.makedirs(os.path.join(run.dir, "secrets"), mode=0o700,
                exist_ok=True)
    for t in tenants:
        sf = os.path.join(run.dir, "secrets", t)
        fd = os.open(sf, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, ("secret-%s\n" % t).encode())
        os.close(fd)
        lines += ["", '[tenant "%s"]' % t, "tenant_id = %s" % t,
                  "client_id = %s" % CLIENT_ID,
                  "client_secret_file = %s" % sf,
                  "api_url = %s" % fake_url, "login_url = %s" % fake_url]
    path = os.path.join(run.dir, "alertrelay.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path, os.path.join(state, "spool", "siem")


def wait(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise RuntimeError("timed out waiting for %s" % what)


def bench(run, args, mode):
    tenants = ["tenant-%04d" % i for i in range(1, args.tenants + 1)]
    per = args.alerts // len(tenants)
    total = per * len(tenants)
    pre = ["--alerts", str(per), "--spread", "1h"] \
        if mode == "backfill" else []
    fake = run.start("fakecloud", [
        os.path.join(args.build, "tests", "fakes", "fakecloud"), "-p", "0",
        "--no-rate-limit", "--seed", "1"] + pre +
        sum((["-t", t] for t in tenants), []), stdout=subprocess.PIPE)
    line = fake.stdout.readline().decode()
    if not line.startswith("port="):
        raise RuntimeError("fakecloud did not start: %r" % line)
    url = "http://127.0.0.1:%s" % line.strip().split("=")[1]
    port = free_port()
    # Live: every poll re-reads the overlap window, which holds the whole
    # backlog here; a 1s interval would measure that, not the spool.
    conf, spool = config(run, url, port, tenants,
                         "10s" if mode == "live" else "1s")
    print("== %s: %d alerts over %d tenants, SIEM down" % (mode, total,
                                                          len(tenants)))
    d = run.start("alertrelayd", [os.path.join(args.build, "alertrelayd"),
                                  "-c", conf, "--log-target", "stderr"])
    if mode == "live":
        time.sleep(3)   # started, first polls done, SIEM unreachable
    else:
        time.sleep(0.3)
    if d.poll() is not None:
        raise RuntimeError("alertrelayd exited: see %s" % run.dir)
    rss0, _ = status(d.pid)
    print("%7d alerts spooled: RSS %.1f MiB" % (spool_records(spool)[0],
                                               rss0 / 1024.0), flush=True)

    # The outage: the backlog piles up in the spool.
    samples = []
    t0 = time.monotonic()
    for q in range(1, 5):
        if mode == "live":
            n = per * q // 4 - per * (q - 1) // 4
            call("%s/_control/alerts?tenant=*&n=%d" % (url, n), "POST")
        want = total * q // 4
        got = wait(lambda: (lambda c: c if c >= want else 0)(
            spool_records(spool)[0]), 600, "%d alerts in the spool" % want)
        rss, hwm = status(d.pid)
        samples.append((got, rss, hwm))
        print("%7d alerts spooled: RSS %.1f MiB (peak %.1f MiB)"
              % (got, rss / 1024.0, hwm / 1024.0), flush=True)
    t_spool = time.monotonic() - t0
    nrec, size = spool_records(spool)
    print("spooled %d alerts (%.1f MiB on disk) in %.1fs, fetch included"
          % (nrec, size / 1048576.0, t_spool), flush=True)
    time.sleep(2)
    rss_out, hwm_out = status(d.pid)

    # The SIEM returns: drain and time it.
    recv = run.start("receiver", [sys.executable, "-c", RECEIVER, str(port),
                                  str(total)], stdout=subprocess.PIPE)
    first = done = None
    rss_drain = 0
    t_end = time.monotonic() + 900
    while done is None:
        line = recv.stdout.readline()
        if not line:
            raise RuntimeError("the receiver exited")
        f = line.split()
        if f[0] == b"first":
            first = float(f[1])
        elif f[0] == b"done":
            done = (float(f[1]), int(f[2]))
        rss_drain = max(rss_drain, status(d.pid)[0])
        if time.monotonic() > t_end:
            raise RuntimeError("drain stalled at %s of %d" % (f[1], total))
    dt = done[0] - first
    rate = done[1] / dt if dt > 0 else float("inf")
    last = done
    _, hwm_end = status(d.pid)
    print("drained %d alerts in %.2fs from the first byte: %.0f "
          "alerts/s (%.1f MiB/s); RSS while draining at most %.1f MiB"
          % (last[1], dt, rate, size / 1048576.0 / dt if dt else 0,
             rss_drain / 1024.0), flush=True)
    run.stop(d)
    run.stop(recv)
    run.stop(fake)
    print("RESULT backlog_%s alerts=%d tenants=%d rss0_kb=%d rss25_kb=%d "
          "rss50_kb=%d rss75_kb=%d rss100_kb=%d rss_outage_end_kb=%d "
          "hwm_kb=%d rss_drain_max_kb=%d spool_mb=%.1f spool_s=%.1f "
          "drain_s=%.2f drain_rate=%.0f"
          % (mode, total, len(tenants), rss0, samples[0][1], samples[1][1],
             samples[2][1], samples[3][1], rss_out, max(hwm_out, hwm_end),
             rss_drain, size / 1048576.0, t_spool, dt, rate))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("ALERTRELAY_BUILD",
                                                      "build"))
    ap.add_argument("--alerts", type=int, default=100000)
    ap.add_argument("--tenants", type=int, default=10)
    ap.add_argument("--mode", choices=("live", "backfill", "both"),
                    default="both")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not os.path.isabs(args.build):
        args.build = os.path.join(TOP, args.build)
    for mode in ("backfill", "live"):
        if args.mode not in (mode, "both"):
            continue
        run = Run(args.build, args.keep)
        try:
            bench(run, args, mode)
        except (RuntimeError, OSError) as e:
            print("bench_backlog: %s (work dir %s)" % (e, run.dir))
            run.keep = True
            return 1
        finally:
            run.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
