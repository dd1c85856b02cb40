"""Integration case for the README's first command: `make demo` (which
runs tests/demo.sh) prints CEF for its three fake tenants on the terminal,
including incidents of the Graph tenant, and stops cleanly.  Loaded by
harness.py next to cases.py (every cases_*.py exports CASES)."""

import os
import re
import subprocess

from harness import Fail

CEF = re.compile(r"^CEF:0\|Microsoft\|([^|]*)\|1\.0\|([^|]*)\|")


def check_demo(ctx):
    env = dict(os.environ, DEMO_SECONDS="25")
    script = os.path.join("tests", "demo.sh")
    p = subprocess.run(["sh", script, ctx.suite.build], env=env,
                       capture_output=True, timeout=90)
    out = p.stdout.decode("utf-8", "replace").splitlines()
    err = p.stderr.decode("utf-8", "replace")
    with open(os.path.join(ctx.dir, "demo.stdout"), "w") as f:
        f.write("\n".join(out))
    with open(os.path.join(ctx.dir, "demo.stderr"), "w") as f:
        f.write(err)
    if p.returncode != 0:
        raise Fail("demo exited %d: %s" % (p.returncode, err[-500:]))
    bad = [ln for ln in out if not CEF.match(ln)]
    if bad:
        raise Fail("demo printed a line that is not CEF: %r" % bad[0][:200])
    customers = {m.group(1) for m in (re.search(r" cs2=(.*?) cs2Label", ln)
                                      for ln in out) if m}
    want = {"Contoso Ltd", "Fabrikam Inc", "Tailspin Toys"}
    if customers != want:
        raise Fail("demo: events for %s, want all of %s" % (
            sorted(customers), sorted(want)))
    kinds = [CEF.match(ln).groups() for ln in out]
    incidents = [ln for (prod, sig), ln in zip(kinds, out)
                 if prod == "Microsoft Defender XDR" and sig == "incident"]
    if not incidents or not all("cs3=contoso " in ln for ln in incidents):
        raise Fail("demo: %d incident events (want at least one, all of "
                   "the Graph tenant contoso)" % len(incidents))
    if re.search(r"(error|warning|fatal):", err):
        raise Fail("demo logged a problem: %s" % err[-500:])
    if "secret-" in err or any("secret-" in ln for ln in out):
        raise Fail("demo: a client secret reached the output")
    ctx.note("%d events, %d of them incidents, from %d tenants" % (
        len(out), len(incidents), len(customers)))


CASES = [
    {
        "name": "demo",
        "doc": "make demo (tests/demo.sh, 25 s): only CEF lines, from all "
               "three fake tenants, at least one incident of the Graph "
               "tenant; exit 0, no error or secret in the output",
        "syslog_ng": False,
        "check": check_demo,
    },
]
