#!/usr/bin/env python3
"""Every metric and label that the shipped Prometheus rules, their unit
tests and the Grafana dashboard name must be one alertrelayd exports, and
every metric it exports is listed in alertrelayd(8).

The exported names come from a real daemon: it is started on loopback with
a tenant (pointing at a closed port, so it fails without leaving the host)
and a file output, and its /metrics is read; each "# TYPE" line names a
family (histograms add _bucket, _sum and _count), each sample line its
labels.  Renaming a metric in daemon/metrics.c without updating the rules
and the dashboard makes this fail, naming the file and the metric.

Usage: check_names.py --daemon build/alertrelayd
       check_names.py --metrics-file FILE   (an exposition saved earlier)
Python 3 standard library only."""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
RULES = os.path.join(TOP, "packaging", "prometheus", "alertrelay-rules.yml")
RULE_TESTS = os.path.join(TOP, "packaging", "prometheus",
                          "alertrelay-rules.test.yml")
DASHBOARD = os.path.join(TOP, "packaging", "grafana",
                         "alertrelay-dashboard.json")
MANPAGE = os.path.join(TOP, "daemon", "alertrelayd.8")
# Labels Prometheus adds to every scraped series, and the ones its own
# functions or the rules' alerts carry.
TARGET_LABELS = {"instance", "job", "alertname", "severity", "__name__"}
# A metric name of ours in PromQL (alert names are CamelCase "Alertrelay").
NAME_RE = re.compile(r"(?<![A-Za-z0-9_:])(alertrelay_[a-z0-9_:]*)")
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$")


def fail(msg):
    sys.stderr.write("check_names: %s\n" % msg)
    sys.exit(1)


# --------------------------------------------------------------------------
# What the daemon exports.

def family_names(name, kind):
    """The sample names a family of this TYPE may have."""
    if kind == "histogram":
        return {name + s for s in ("_bucket", "_sum", "_count")}
    if kind == "summary":
        return {name, name + "_sum", name + "_count"}
    return {name}


def type_names(text):
    """The families of an exposition (its TYPE lines)."""
    return {line.split()[2] for line in text.split("\n")
            if line.startswith("# TYPE ")}


def parse_exposition(text):
    """({metric names a query may use}, {label names on samples}).  The
    names are those of the samples; a family without samples in this run
    (no token yet, no cursor yet) counts by its TYPE line."""
    families, samples, labels = {}, set(), set()
    for line in text.split("\n"):
        if line.startswith("# TYPE "):
            f = line.split()
            families[f[2]] = family_names(f[2], f[3])
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if m is None:
            fail("not a text-format line in /metrics: %r" % line)
        if not any(m.group(1) in v for v in families.values()):
            fail("sample %s in /metrics belongs to no TYPE line"
                 % m.group(1))
        samples.add(m.group(1))
        labels.update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="',
                                 m.group(2) or ""))
    names = set(samples)
    for v in families.values():
        if not v & samples:
            names |= v
    return names, labels


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def write_config(d, port):
    sec = os.path.join(d, "secret")
    fd = os.open(sec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"not-a-real-secret\n")
    os.close(fd)
    closed = "http://127.0.0.1:%d" % free_port()
    conf = os.path.join(d, "alertrelay.conf")
    with open(conf, "w") as f:
        f.write("""[daemon]
state_dir = {d}/state
control_socket = {d}/ctl.sock
metrics_listen = 127.0.0.1:{port}
poll_interval = 1s

[output "names"]
transport = file
address = {d}/out.log

[tenant "names"]
tenant_id = names
client_id = 00000000-0000-0000-0000-000000000001
client_secret_file = {sec}
secret_expires = 2099-01-01
api_url = {closed}
login_url = {closed}
""".format(d=d, port=port, sec=sec, closed=closed))
    return conf


def scrape(port):
    url = "http://127.0.0.1:%d/metrics" % port
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode("utf-8")


def run_daemon(exe, d, port):
    """Start the daemon; its /metrics text, or None when the port was
    taken by someone else in the meantime (the caller retries).  The
    tenant's login and API URLs point at a closed loopback port: it fails
    without leaving the host, which is all its metrics need."""
    conf = write_config(d, port)
    err = open(os.path.join(d, "stderr"), "w+")
    p = subprocess.Popen([exe, "-c", conf, "--log-target", "stderr"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if p.poll() is not None:
                err.seek(0)
                text = err.read()
                if "Address already in use" in text:
                    return None
                fail("alertrelayd exited %d:\n%s" % (p.returncode, text))
            try:
                text = scrape(port)
            except OSError:
                time.sleep(0.1)
                continue
            # The test tenant and output are there from the start.
            if 'tenant="names"' in text and 'output="names"' in text and \
                    'credential="secret"' in text:
                return text
            time.sleep(0.1)
        fail("alertrelayd's /metrics on port %d did not show the test "
             "tenant and output within 15 s" % port)
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        err.close()


def exported_by_daemon(exe):
    if not os.access(exe, os.X_OK):
        fail("%s is not built (make all)" % exe)
    d = tempfile.mkdtemp(prefix="alertrelay-names.")
    try:
        for _ in range(5):
            text = run_daemon(exe, d, free_port())
            if text is not None:
                return text
        fail("five ports in a row were taken before alertrelayd bound them")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# What the rules and the dashboard use.

def rules_usage(path):
    """{metric: [where]}, {label: [where]} from expr: and annotations."""
    metrics, labels = {}, {}
    with open(path) as f:
        text = f.read()
    alert = "?"
    for n, line in enumerate(text.split("\n"), 1):
        where = "%s:%d" % (os.path.relpath(path, TOP), n)
        code = line.split("#", 1)[0] if line.lstrip().startswith("#") \
            else line
        m = re.match(r"\s*- alert: (\S+)", code)
        if m:
            alert = m.group(1)
        for name in NAME_RE.findall(code):
            metrics.setdefault(name, []).append(where)
        for lab in re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", code):
            labels.setdefault(lab, []).append("%s (%s)" % (where, alert))
        for group in re.findall(r"\b(?:by|on|without|ignoring)\s*"
                                r"\(([^)]*)\)", code):
            for lab in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", group):
                labels.setdefault(lab, []).append(where)
        for sel in re.findall(r"\{([^}]*)\}", code):
            if "$" in sel or "{{" in code:
                continue
            for lab in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)",
                                  sel):
                labels.setdefault(lab, []).append(where)
    return metrics, labels


def dashboard_queries(path):
    """[(where, PromQL or legend text)] from every panel and variable."""
    with open(path) as f:
        try:
            dash = json.load(f)
        except ValueError as e:
            fail("%s is not JSON: %s" % (path, e))
    out = []

    def walk(obj, where):
        if isinstance(obj, dict):
            title = obj.get("title", where)
            for k, v in obj.items():
                if k in ("expr", "query", "definition", "legendFormat") \
                        and isinstance(v, str):
                    out.append(("%s: %s" % (title, k), v))
                elif k == "query" and isinstance(v, dict) and \
                        isinstance(v.get("query"), str):
                    out.append(("%s: query" % title, v["query"]))
                else:
                    walk(v, title)
        elif isinstance(obj, list):
            for v in obj:
                walk(v, where)
    walk(dash, "dashboard")
    return dash, out


def dashboard_usage(path):
    dash, queries = dashboard_queries(path)
    metrics, labels = {}, {}
    for where, q in queries:
        where = "%s (%s)" % (os.path.relpath(path, TOP), where)
        for name in NAME_RE.findall(q):
            metrics.setdefault(name, []).append(where)
        for lab in re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", q):
            labels.setdefault(lab, []).append(where)
        for group in re.findall(r"\b(?:by|on|without|ignoring)\s*"
                                r"\(([^)]*)\)", q):
            for lab in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", group):
                labels.setdefault(lab, []).append(where)
        for sel in re.findall(r"\{([^{}]*)\}", q):
            for lab in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)",
                                  sel):
                labels.setdefault(lab, []).append(where)
        m = re.match(r"\s*label_values\((?:.*,)?\s*([A-Za-z_]\w*)\s*\)\s*$",
                     q)
        if m:
            labels.setdefault(m.group(1), []).append(where)
    return dash, metrics, labels


def check_dashboard_shape(dash):
    """The little a Grafana import needs: panels with queries, a
    Prometheus datasource, unique panel ids."""
    problems = []
    for k in ("title", "panels", "schemaVersion", "uid"):
        if k not in dash:
            problems.append("dashboard has no %r" % k)
    ids = [p.get("id") for p in dash.get("panels", [])]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append("panel ids are missing or repeated: %s" % ids)
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            problems.append("panel %r has no query" % p.get("title"))
        for t in p.get("targets", []):
            if not t.get("expr"):
                problems.append("panel %r has a target without expr"
                                % p.get("title"))
    return problems


def compare(used_metrics, used_labels, names, labels):
    def more(where):
        return " (and %d more places)" % (len(where) - 1) \
            if len(where) > 1 else ""
    problems = []
    for name, where in sorted(used_metrics.items()):
        if name not in names:
            problems.append("%s uses metric %s, which alertrelayd does "
                            "not export%s" % (where[0], name, more(where)))
    allowed = labels | TARGET_LABELS | {"le"}
    for lab, where in sorted(used_labels.items()):
        if lab not in allowed:
            problems.append("%s uses label %s, which no alertrelayd "
                            "metric carries%s" % (where[0], lab, more(where)))
    return problems


def merge(*dicts):
    out = {}
    for d in dicts:
        for k, v in d.items():
            out.setdefault(k, []).extend(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--daemon", help="alertrelayd binary to start")
    g.add_argument("--metrics-file", help="a saved /metrics text")
    a = ap.parse_args()
    if a.daemon:
        text = exported_by_daemon(a.daemon)
    else:
        with open(a.metrics_file) as f:
            text = f.read()
    names, labels = parse_exposition(text)
    rm, rl = rules_usage(RULES)
    tm, tl = rules_usage(RULE_TESTS)
    dash, dm, dl = dashboard_usage(DASHBOARD)
    used_m = merge(rm, tm, dm)
    used_l = merge(rl, dl)
    problems = check_dashboard_shape(dash)
    problems += compare(used_m, used_l, names, labels)
    with open(MANPAGE) as f:
        man = f.read().replace("\\", "")
    for fam in sorted(type_names(text)):
        if not re.search(r"(?<![a-z_])%s(?![a-z_])" % re.escape(fam), man):
            problems.append("alertrelayd exports %s, which %s does not "
                            "list under METRICS"
                            % (fam, os.path.relpath(MANPAGE, TOP)))
    for need, what in ((rm, "the rules"), (dm, "the dashboard")):
        if not need:
            problems.append("%s name no alertrelay_ metric at all: the "
                            "extraction is broken" % what)
    if problems:
        for p in problems:
            sys.stderr.write("check_names: %s\n" % p)
        sys.exit(1)
    # The check must be able to fail: without one name it does.
    victim = sorted(used_m)[0]
    if not compare(used_m, used_l, names - {victim}, labels):
        fail("removing %s from the exported names went unnoticed" % victim)
    print("check_names: %d metrics and %d labels used by the rules, their "
          "tests and the dashboard are all exported by alertrelayd"
          % (len(used_m), len(used_l)))


if __name__ == "__main__":
    main()
