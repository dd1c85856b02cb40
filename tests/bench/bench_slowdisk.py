#!/usr/bin/env python3
"""A slow disk: every fsync/fdatasync of the daemon takes MS longer
(slowsync.so).  20 tenants catch up on 3,000 alerts each (page_size 500,
poll_interval 5s) while /metrics is asked 5 times a second for 20 s; prints
its latency and what the SIEM received.

Usage: bench_slowdisk.py [--build DIR] [--daemon DIR] [--ms MS]
  --daemon: where alertrelayd is (e.g. a reference build), default --build.
Figures are printed, never asserted.
"""
import argparse
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import (Fake, Sink, mono, pct, result, snapshot,  # noqa: E402
                   start_daemon, tenant_names, write_config)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--daemon")
    ap.add_argument("--ms", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=20)
    a = ap.parse_args()
    build = snapshot(a.build)
    dbuild = snapshot(a.daemon, ("alertrelayd",)) if a.daemon else build
    w = tempfile.mkdtemp(prefix="alertrelay-bench-slowdisk.")
    try:
        fake = Fake(build, w, ["--tenants", "20", "--alerts", "3000",
                               "--spread", "1h", "--rate", "2",
                               "--no-rate-limit", "--seed", "5"], 60)
        sink = Sink(build, w)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        mport = s.getsockname()[1]
        s.close()
        conf = write_config(w, fake.port, sink.port, tenant_names(20), {
            "poll_interval": "5s", "first_fetch": "2h", "page_size": 500,
            "metrics_listen": "127.0.0.1:%d" % mport})
        start_daemon(dbuild, w, conf, env_extra={
            "LD_PRELOAD": os.path.join(build, "slowsync.so"),
            "SLOWSYNC_MS": str(a.ms)})
        time.sleep(4)           # past the start (its syncs are in the loop)
        lat = []
        end = mono() + a.seconds
        while mono() < end:
            t = mono()
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport,
                                       timeout=30).read()
                lat.append(mono() - t)
            except OSError:
                lat.append(30.0)
            time.sleep(0.2)
        got = int(sink.get("msgs"))
        print("slowdisk: fsync +%d ms: /metrics %d answers in %.0f s, p50 "
              "%.3f s, p99 %.3f s, max %.3f s; the SIEM got %d alerts" % (
                  a.ms, len(lat), a.seconds, pct(lat, 50), pct(lat, 99),
                  max(lat), got))
        result("slowdisk", {"sync_ms": a.ms, "answers": len(lat),
                            "p50_s": pct(lat, 50), "p99_s": pct(lat, 99),
                            "max_s": max(lat), "alerts": got,
                            "target": "max_s<=1",
                            "status": "met" if max(lat) <= 1 else "NOT-MET"})
    finally:
        for p in bench.RUNNING:
            p.stop(signal.SIGKILL)
        os.system("rm -rf %s %s %s" % (w, build, dbuild if a.daemon else ""))


if __name__ == "__main__":
    main()
