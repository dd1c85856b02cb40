"""The integration cases: a table of dicts (what to start, how to configure
the daemon) plus one small check function per case.  The harness starts
syslog-ng when a case has outputs, the fake cloud with the "fake" argv,
and writes the daemon config from "daemon", "outputs" and "tenants".

Case keys: name, doc, quick (in the --quick subset), fake (fakecloud
arguments), tenants (list of [tenant "NAME"] dicts: name, label, secret,
any other key), outputs (list of [output "NAME"] dicts; "sink" names the
syslog-ng source to point address at), daemon ([daemon] overrides),
check (function of a harness.Ctx)."""

import os
import re
import signal
import stat
import time

from harness import (CEF_PRODUCT, CEF_VENDOR, CEF_VERSION, Daemon, Fail,
                     compare, deliveries, iso_to_ms, log, ms_to_iso, tail,
                     wait_for, wait_delivered, write_config)

# CEF severity -> the syslog severity SPEC §4 says the PRI carries.
PRI_SEVERITY = {"8": 2, "5": 3, "3": 4, "1": 6, "0": 5}


def tenants(n, prefix="t", **extra):
    out = []
    for i in range(1, n + 1):
        t = {"name": "%s%d" % (prefix, i),
             "label": "Customer %s%d Ltd" % (prefix, i)}
        t.update(extra)
        out.append(t)
    return out


def fake_tenants(ts):
    args = []
    for t in ts:
        args += ["-t", t.get("tenant_id", t["name"])]
    return args


def octet_tcp(name="siem"):
    return {"name": name, "transport": "tcp", "framing": "octet-counting",
            "format": "cef", "sink": "octet"}


def once(ctx, expect_rc=0, timeout=90):
    rc, out, err = ctx.daemon.run("--once", timeout=timeout)
    if rc != expect_rc:
        raise Fail("alertrelayd --once exited %d, expected %d; stderr:\n%s"
                   % (rc, expect_rc, tail(err)))
    return err


def settle(ctx, source):
    """Make sure syslog-ng has written out whatever it received so far: send
    a marker through the same source and wait until it is in the file."""
    marker = "harness-marker-%d" % time.monotonic_ns()
    ctx.sng.inject(source, marker)
    wait_for(lambda: any(r.get("MESSAGE", "").endswith(marker)
                         for r in ctx.sng.messages(source)),
             10, "syslog-ng to write a marker message")


def delivered(ctx, source, strict=True):
    return deliveries(ctx.suite, ctx.sng.messages(source), strict=strict)


def check_acts(dels):
    """Per alert, the first version forwarded is 'created' and every later
    one 'updated'."""
    by_id = {}
    for d in dels:
        by_id.setdefault((d.label, d.id), []).append(d)
    for key, ds in by_id.items():
        ds.sort(key=lambda d: d.rt)
        if ds[0].act != "created":
            raise Fail("first version of alert %s (rt=%s) arrived as "
                       "act=%s, expected created" % (key, ds[0].rt, ds[0].act))
        for d in ds[1:]:
            if d.rt != ds[0].rt and d.act != "updated":
                raise Fail("later version of alert %s (rt=%s) arrived as "
                           "act=%s, expected updated" % (key, d.rt, d.act))


def stderr_line(err, *words, what=""):
    """The first stderr line that contains every word (case-insensitive)."""
    for line in err.split("\n"):
        low = line.lower()
        if all(w.lower() in low for w in words):
            return line
    raise Fail("stderr has no line naming %s (%s); stderr:\n%s"
               % (" + ".join(repr(w) for w in words), what, tail(err)))


# --------------------------------------------------------------------------
# 1. basic_tcp

CEF_SEVERITY = {"unspecified": "0", "informational": "1", "low": "3",
                "medium": "5", "high": "8"}


def sanitize(v):
    """SPEC §4: control characters other than TAB/LF/CR (and lone
    surrogates) become U+FFFD."""
    out = []
    for ch in v:
        o = ord(ch)
        if (o < 0x20 and ch not in "\t\n\r") or 0x7f <= o <= 0x9f or \
                0xd800 <= o <= 0xdfff:
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def header_value(v):
    return re.sub(r"[\r\n\t]", " ", sanitize(v))


def ts_ms(v):
    return str(iso_to_ms(v)) if isinstance(v, str) and v else None


def text(v):
    if v is None or v == "" or v == []:
        return None
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return sanitize(str(v))


def first_file(a, k):
    """k of the first File or Process evidence."""
    for e in a.get("evidence") or []:
        if e.get("entityType") in ("File", "Process"):
            return text(e.get(k))
    return None


def first_with(a, k, want=None):
    """k of the first evidence that has one (want: filter on the value)."""
    for e in a.get("evidence") or []:
        if e.get(k):
            v = text(e[k])
            return v if want is None or want(v) else None
    return None


# CEF extension key -> how SPEC §4 derives it from the alert (None: the
# field is absent, and then the key must be absent too).
CEF_FIELDS = {
    "rt": lambda a, t: ts_ms(a.get("lastUpdateTime")),
    "start": lambda a, t: ts_ms(a.get("firstEventTime")),
    "end": lambda a, t: ts_ms(a.get("lastEventTime")),
    "deviceCustomDate1": lambda a, t: ts_ms(a.get("alertCreationTime")),
    "externalId": lambda a, t: a["id"],
    "cat": lambda a, t: text(a.get("category")),
    "sourceServiceName": lambda a, t: text(a.get("detectionSource")),
    "msg": lambda a, t: text(a.get("description")),
    "shost": lambda a, t: text(a.get("computerDnsName")),
    "deviceExternalId": lambda a, t: text(a.get("machineId")),
    "suser": lambda a, t: text((a.get("relatedUser") or {}).get("userName")),
    "sntdom": lambda a, t: text((a.get("relatedUser") or {})
                                .get("domainName")),
    "fname": lambda a, t: first_file(a, "fileName"),
    "filePath": lambda a, t: first_file(a, "filePath"),
    "fileHash": lambda a, t: first_file(a, "sha1"),
    "src": lambda a, t: first_with(a, "ipAddress", lambda v: ":" not in v),
    "c6a2": lambda a, t: first_with(a, "ipAddress", lambda v: ":" in v),
    "request": lambda a, t: first_with(a, "url"),
    "cs6": lambda a, t: first_with(a, "sha256"),
    "cs1": lambda a, t: text(a.get("threatName")),
    "cs2": lambda a, t: t["label"],
    "cs3": lambda a, t: text(a.get("aadTenantId")) or t["tenant_id"],
    "cs4": lambda a, t: text(a.get("status")),
    "cs5": lambda a, t: text(a.get("mitreTechniques")),
    "cn1": lambda a, t: text(a.get("incidentId")),
    "cn2": lambda a, t: text(a.get("investigationId")),
    "cn3": lambda a, t: str(len(a.get("evidence") or [])),
    "flexString1": lambda a, t: "https://security.microsoft.com/alerts/"
                                "%s?tid=%s" % (a["id"], text(a.get(
                                    "aadTenantId")) or t["tenant_id"]),
    "flexString2": lambda a, t: "/".join(
        x for x in (text(a.get("classification")),
                    text(a.get("determination"))) if x) or None,
}


CEF_LABELS = {"cs1": "ThreatName", "cs2": "Customer", "cs3": "TenantId",
              "cs4": "Status", "cs5": "MitreTechniques", "cs6": "Sha256",
              "cn1": "IncidentId", "cn2": "InvestigationId",
              "cn3": "EvidenceCount", "flexString1": "AlertLink",
              "flexString2": "Classification",
              "deviceCustomDate1": "AlertCreationTime"}


def check_content(dels, alerts, tconf):
    """Each delivered message carries the alert's fields as SPEC §4 maps
    them.  alerts: {label: {id: alert}}; tconf: {label: tenant dict}."""
    bad = []
    for d in dels:
        a = alerts[d.label].get(d.id)
        if a is None or iso_to_ms(a["lastUpdateTime"]) != d.rt:
            continue        # an older version; the API shows only the latest
        t = tconf[d.label]
        c = d.cef
        want = {
            "Name": header_value(a.get("title") or "") or "-",
            "SignatureID": header_value(a.get("detectorId") or
                                        a.get("category") or "alert"),
            "Severity": CEF_SEVERITY.get(str(a.get("severity")).lower(),
                                         "0"),
        }
        for k, v in want.items():
            if c.get(k) != v:
                bad.append("%s: CEF %s %r, expected %r"
                           % (d.id, k, c.get(k), v))
        for k, lab in CEF_LABELS.items():
            if k in d.ext and d.ext.get(k + "Label") != lab:
                bad.append("%s: %sLabel=%r, expected %r"
                           % (d.id, k, d.ext.get(k + "Label"), lab))
        for k, f in CEF_FIELDS.items():
            v = f(a, t)
            got = d.ext.get(k)
            if v != got and not (k == "msg" and got and v and
                                 v.startswith(got)):
                bad.append("%s: %s=%r, expected %r" % (d.id, k, got, v))
    if bad:
        raise Fail("%d field mismatches between the API's alerts and the "
                   "CEF that arrived, e.g.\n%s"
                   % (len(bad), "\n".join(bad[:8])))

def check_basic(ctx):
    once(ctx)
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(ctx.expected(), dels)
    labels = set(t[1] for t in ctx.tenants())
    for d in dels:
        c = d.cef
        hdr = (c.get("DeviceVendor"), c.get("DeviceProduct"),
               c.get("DeviceVersion"))
        if hdr != (CEF_VENDOR, CEF_PRODUCT, CEF_VERSION):
            raise Fail("CEF header vendor/product/version %r, expected %r"
                       % (hdr, (CEF_VENDOR, CEF_PRODUCT, CEF_VERSION)))
        if d.label not in labels:
            raise Fail("cs2=%r is not a configured tenant label"
                       % d.label)
        if d.ext.get("cs2Label") != "Customer":
            raise Fail("cs2Label=%r, expected Customer"
                       % d.ext.get("cs2Label"))
        if d.act != "created":
            raise Fail("alert %s arrived as act=%r, expected created"
                       % (d.id, d.act))
        if d.rec.get("PROGRAM") != "alertrelayd":
            raise Fail("syslog PROGRAM is %r, expected alertrelayd"
                       % d.rec.get("PROGRAM"))
        sev = c.get("Severity")
        if sev not in PRI_SEVERITY:
            raise Fail("CEF severity %r is not one of 0,1,3,5,8" % sev)
        pri = int(d.rec.get("PRI", "-1"))
        if pri & 7 != PRI_SEVERITY[sev]:
            raise Fail("CEF severity %s arrived with syslog PRI %d "
                       "(severity %d), expected severity %d"
                       % (sev, pri, pri & 7, PRI_SEVERITY[sev]))
        if not c.get("Name") or not c.get("SignatureID"):
            raise Fail("empty CEF name/class in %r"
                       % d.rec["MESSAGE"][:200])
    # Field by field against the alerts as the API serves them.
    tconf = {}
    alerts = {}
    for t in ctx.case["tenants"]:
        tid = t.get("tenant_id", t["name"])
        label = t.get("label", t["name"])
        tconf[label] = {"label": label, "tenant_id": tid}
        alerts[label] = ctx.fake.alerts(tid)
    check_content(dels, alerts, tconf)
    ctx.note("%d versions from %d tenants, each exactly once"
             % (len(dels), len(labels)))


# --------------------------------------------------------------------------
# 2. paging

def check_paging(ctx):
    exp = ctx.expected()
    if len(exp) < 2500:
        raise Fail("the fake shows only %d versions, expected 2500"
                   % len(exp))
    once(ctx, timeout=120)
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(exp, dels)
    reqs = [r for r in api_requests(ctx, "t1") if r[1] == 200]
    tops = set(re.findall(r"[$]top=(\d+)", " ".join(r[2] for r in reqs)))
    if len(reqs) < 3 or tops != {"1000"}:
        raise Fail("expected at least 3 pages of $top=1000, the fake saw "
                   "%d requests with $top %s" % (len(reqs), sorted(tops)))
    ctx.note("%d alerts in %d pages of 1000, exactly once"
             % (len(dels), len(reqs)))


def check_paging_short_links(ctx):
    """nextLink pages shorter than $top, the chain cut at $top: a short
    last page of a chain is not the end (SPEC 5, paging liveness)."""
    now = time.time()
    tie = ms_to_iso(int(now * 1000) - 30000)
    ctx.fake.add_alerts("t1", 250, {"lastUpdateTime": tie})
    exp = ctx.expected()
    if len(exp) < 850:
        raise Fail("the fake shows only %d versions, expected 850"
                   % len(exp))
    once(ctx, timeout=120)
    settle(ctx, "octet")
    compare(exp, delivered(ctx, "octet"))
    first = len(api_requests(ctx, "t1"))
    # Second run: its 2 min overlap covers every version again (more than
    # a page), plus new ones, some on the same tie.
    ctx.fake.add_alerts("t1", 40)
    ctx.fake.add_alerts("t1", 40, {"lastUpdateTime": tie})
    exp = ctx.expected()
    once(ctx, timeout=120)
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(exp, dels)
    reqs = api_requests(ctx, "t1")
    links = [r for r in reqs
             if re.search(r"(%24|[$])top=(?!100\b)\d+", r[2])]
    if not links:
        raise Fail("the fake answered with no nextLink chain")
    ctx.note("%d versions (a tie of 290) in chains of 30 under $top=100, "
             "exactly once; %d requests for the first run, %d for the "
             "second (overlap 2m)" % (len(dels), first, len(reqs) - first))


# --------------------------------------------------------------------------
# 3. updates_and_late

def check_updates(ctx):
    fake, sng = ctx.fake, ctx.sng
    names = [t[0] for t in ctx.tenants()]
    ctx.daemon.start()
    # The initial backlog.
    snap = ctx.expected()
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 30,
                   daemon=ctx.daemon, what="the initial backlog")
    t1_ms = int(time.time() * 1000)
    before = ctx.expected()
    # Updates of alerts already forwarded, new alerts, and explicit late
    # alerts: lastUpdateTime 30 s in the past (inside the 2m overlap),
    # visible only now, behind the daemon's cursor.
    updated = []
    for name in names:
        ids = sorted(set(aid for aid, _ in fake.versions(name)))[:3]
        for aid in ids:
            fake.update(name, aid)
            updated.append((name, aid))
        fake.add_alerts(name, 3)
        late = ms_to_iso(t1_ms - 30000)
        fake.add_alerts(name, 1, {"lastUpdateTime": late,
                                  "alertCreationTime": late,
                                  "title": "Late alert for %s" % name})
    # Let the fake's generated late alerts (--late-delay) surface too.
    time.sleep(5)
    snap2 = ctx.expected()
    dels = wait_delivered(ctx.suite, sng, "octet", lambda: snap2, 30,
                          daemon=ctx.daemon,
                          what="updates, new and late alerts")
    ctx.daemon.stop()
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    final = ctx.expected()
    compare(final, dels, allow_missing=True)   # exactly once, no phantoms
    check_acts(dels)
    got = set(d.key() for d in dels)
    # Every update arrived with the new rt, as act=updated.
    label = dict(ctx.tenants())
    for name, aid in updated:
        vs = sorted(rt for i, rt in fake.versions(name) if i == aid)
        if len(vs) < 2:
            raise Fail("the fake shows no new version of updated alert %s"
                       % aid)
        ds = [d for d in dels if d.id == aid and d.label == label[name]]
        if not any(d.rt == vs[-1] and d.act == "updated" for d in ds):
            raise Fail("update of %s (rt=%d) did not arrive as "
                       "act=updated; got %r"
                       % (aid, vs[-1], [(d.rt, d.act) for d in ds]))
    # Late versions: visible after t1 although their time is before it.
    late = [k for k in snap2 - before if k[2] < t1_ms - 500]
    if len(late) < len(names):
        raise Fail("expected at least %d late versions, the fake shows %d"
                   % (len(names), len(late)))
    missing = [k for k in late if k not in got]
    if missing:
        raise Fail("%d of %d late alerts (inside the overlap) never arrived, "
                   "e.g. %s" % (len(missing), len(late), missing[:3]))
    ctx.note("%d versions: %d updates, %d late ones, no duplicates"
             % (len(dels), len(updated), len(late)))


# --------------------------------------------------------------------------
# 4. throttle_and_5xx

def api_requests(ctx, tenant):
    """[(time_ms, status, uri)] of the alert API requests the fake logged
    for tenant (log lines: TIME TENANT METHOD URI STATUS)."""
    out = []
    for line in (ctx.fake.log() or "").split("\n"):
        f = line.split(" ")
        if len(f) >= 5 and f[1] == tenant and "/oauth2/" not in f[3]:
            out.append((iso_to_ms(f[0]), int(f[-1]), f[3]))
    return out

def check_throttle(ctx):
    err = once(ctx, timeout=120)
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(ctx.expected(), dels)
    stderr_line(err, "t1", "429", what="the throttled tenant")
    stderr_line(err, "t2", "500", what="the failing tenant")
    # Retry-After was honoured: after its first 429 the daemon left t1
    # alone until the throttle window (2 s) was over.
    reqs = api_requests(ctx, "t1")
    first = next((i for i, r in enumerate(reqs) if r[1] == 429), None)
    if first is None:
        raise Fail("the fake never answered 429 to t1")
    n429 = sum(1 for r in reqs if r[1] == 429)
    later = [r for r in reqs[first + 1:] if r[1] != 429]
    if not later:
        raise Fail("no request to t1 after the 429")
    gap = (later[0][0] - reqs[first][0]) / 1000.0
    if gap < 1.8 or n429 > 2:
        raise Fail("Retry-After 2 not honoured: %d 429 replies, next good "
                   "request %.1fs after the first" % (n429, gap))
    ctx.note("%d versions exactly once despite 429/500; retried %.1fs "
             "after the 429" % (len(dels), gap))


# --------------------------------------------------------------------------
# 5. wrong_secret

WRONG_SECRET = "Wr0ng~Secret.value_Qx7"


def check_wrong_secret(ctx):
    err = once(ctx, expect_rc=1, timeout=120)
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    good = [t[0] for t in ctx.tenants() if t[0] != "t2"]
    compare(ctx.expected(only=good), dels)
    stderr_line(err, "t2", "AADSTS7000215", what="the bad secret")
    if WRONG_SECRET in err:
        raise Fail("the secret value appears in stderr: %s"
                   % stderr_line(err, WRONG_SECRET))
    ctx.note("other tenants' %d versions delivered; t2 failed with "
             "AADSTS7000215" % len(dels))


# --------------------------------------------------------------------------
# 6. tls

def check_tls(ctx):
    once(ctx)
    dels = wait_delivered(ctx.suite, ctx.sng, "tls", ctx.expected, 10)
    compare(ctx.expected(), dels)
    n_ok = len(ctx.sng.messages("tls"))
    # Wrong CA: the daemon must refuse syslog-ng's certificate.
    conf = ctx.make_config(
        "wrong-ca.conf",
        daemon={"state_dir": os.path.join(ctx.dir, "state-wrong-ca"),
                "control_socket": os.path.join(ctx.dir, "ctl2.sock")},
        outputs=[dict(ctx.case["outputs"][0], ca_file="otherca.pem")])
    d = Daemon(ctx.suite, ctx.dir, conf, name="alertrelayd-wrong-ca")
    d.start()
    line = wait_for(lambda: d.alive() and re.search(
        r"^.*(certificate|verif).*$", d.proc.stderr(), re.M | re.I),
        20, "a certificate verification error in stderr")
    log("wrong CA: %s" % line.group(0))
    time.sleep(0.5)
    if len(ctx.sng.messages("tls")) != n_ok:
        raise Fail("messages arrived over TLS although the daemon was "
                   "given the wrong CA")
    d.proc.stop(signal.SIGTERM, timeout=1)     # queued alerts stay spooled
    if d.proc.running():
        d.proc.stop(signal.SIGTERM, timeout=15)
    ctx.suite.check_sanitizer(d.proc)
    ctx.note("%d versions over mTLS; wrong CA: %s"
             % (len(dels), line.group(0).strip()[:160]))


# --------------------------------------------------------------------------
# 7. siem_restart

def check_siem_restart(ctx):
    fake, sng = ctx.fake, ctx.sng
    ctx.daemon.start()
    snap = ctx.expected()
    wait_delivered(ctx.suite, sng, "octet", lambda: snap, 30,
                   daemon=ctx.daemon, what="the initial backlog")
    sng.stop()
    t0 = time.monotonic()
    for name, _ in ctx.tenants():
        ids = sorted(set(aid for aid, _ in fake.versions(name)))[:5]
        for i in range(3):
            fake.add_alerts(name, 10)
            time.sleep(0.8)
        for aid in ids:
            fake.update(name, aid)
    time.sleep(max(0, 4 - (time.monotonic() - t0)))
    ctx.daemon.alive()
    outage = time.monotonic() - t0
    sng.start()
    snap2 = ctx.expected()
    wait_delivered(ctx.suite, sng, "octet", lambda: snap2, 60,
                   daemon=ctx.daemon, what="everything after the restart")
    ctx.daemon.stop()
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    _, dups = compare(ctx.expected(), dels, allow_dups=True)
    check_acts(dels)
    ctx.note("%d versions after a %0.fs SIEM outage; %d duplicate "
             "messages (in flight at the outage)"
             % (len(snap2), outage,
                sum(dups.values()) - len(dups)))


# --------------------------------------------------------------------------
# 8. framing_udp

def check_framing_udp(ctx):
    once(ctx)
    settle(ctx, "lf")
    dels = delivered(ctx, "lf")
    exp = ctx.expected()
    compare(exp, dels)
    # UDP is best effort: wait a little for what is on the way.
    try:
        wait_for(lambda: len(ctx.sng.messages("udp")) >= len(exp), 5,
                 "udp messages")
    except Fail:
        pass
    udp = delivered(ctx, "udp")
    if not udp:
        raise Fail("no message arrived over UDP")
    compare(exp, udp, allow_missing=True, allow_dups=True)
    ctx.note("newline TCP: %d exactly once; UDP: %d of %d arrived"
             % (len(dels), len(udp), len(exp)))


# --------------------------------------------------------------------------
# 9. check_config

def check_config(ctx):
    d = ctx.dir
    api = "http://127.0.0.1:9"
    good = write_config(
        os.path.join(d, "good.conf"), d,
        {"state_dir": os.path.join(d, "state"), "poll_interval": "30s",
         "control_socket": os.path.join(d, "ctl.sock")},
        [{"name": "siem", "transport": "tcp", "address": "127.0.0.1:5514"},
         {"name": "archive", "transport": "file",
          "address": os.path.join(d, "archive.log"), "format": "json"}],
        [{"name": "contoso", "tenant_id": "contoso.onmicrosoft.com",
          "secret": "S3cr3t-contoso-value", "label": "Contoso",
          "api_url": api, "login_url": api},
         {"name": "fabrikam", "tenant_id": "fabrikam.onmicrosoft.com",
          "secret": "S3cr3t-fabrikam-value", "outputs": "siem",
          "api_url": api, "login_url": api}])
    dm = Daemon(ctx.suite, d, good)
    # By default (SPEC 2): a short line per section and the verdict;
    # not the effective configuration, nothing on stderr.
    rc, out, err = dm.run("--check-config", timeout=20)
    if rc != 0:
        raise Fail("--check-config on a good config exited %d; output:\n%s"
                   % (rc, tail(out + err)))
    verdict = ("%s: configuration OK: 2 tenants, 2 outputs, "
               "0 notify sections" % good)
    lines = out.strip().split("\n")
    want = ["daemon:", "output siem:", "output archive:",
            "tenant contoso:", "tenant fabrikam:"]
    if (len(lines) != len(want) + 1 or lines[-1] != verdict or err.strip()
            or any(not x.startswith(w) for x, w in zip(lines, want))):
        raise Fail("--check-config without -v did not print one line per "
                   "section and the verdict %r:\n%s" % (verdict,
                                                         tail(out + err)))
    if any("client_id" in x or "request_timeout" in x for x in lines):
        raise Fail("--check-config without -v printed the effective "
                   "configuration:\n%s" % tail(out))
    # -v: the effective configuration, a line per section.
    rc, out, err = dm.run("--check-config", "-v", timeout=20)
    if rc != 0:
        raise Fail("--check-config -v on a good config exited %d; "
                   "output:\n%s" % (rc, tail(out + err)))
    lines = [x for x in out.split("\n") if x.strip()]
    for sect in ("daemon", "output siem", "output archive",
                 "tenant contoso", "tenant fabrikam"):
        if not any(x.startswith(sect) for x in lines):
            raise Fail("--check-config -v printed no line for section "
                       "%s:\n%s"
                       % (sect, tail(out)))
    if not any("request_timeout=" in x for x in lines):
        raise Fail("--check-config -v did not print the effective "
                   "[daemon] settings:\n%s" % tail(out))
    if "S3cr3t" in out + err:
        raise Fail("--check-config printed a secret")

    # Two errors, both reported with FILE:LINE.
    bad = os.path.join(d, "bad.conf")
    with open(good) as f:
        text = f.read().split("\n")
    i = text.index("[daemon]")
    text.insert(i + 1, "poll_interval = soonish")
    text.insert(i + 2, "colour = blue")
    # the good poll_interval line follows; drop it to keep one definition
    text = [x for x in text if x != "poll_interval = 30s"]
    with open(bad, "w") as f:
        f.write("\n".join(text))
    l_dur, l_key = i + 2, i + 3
    rc, out, err = Daemon(ctx.suite, d, bad).run("--check-config",
                                                 timeout=20)
    both = out + err
    if rc != 78:
        raise Fail("--check-config on a config with 2 errors exited %d, "
                   "expected 78; output:\n%s" % (rc, tail(both)))
    for ln, word in ((l_dur, "poll_interval"), (l_key, "colour")):
        pat = re.compile(r"^%s:%d: .*" % (re.escape(bad), ln), re.M)
        m = pat.search(both)
        if not m:
            raise Fail("no '%s:%d: ...' message for %s; output:\n%s"
                       % (bad, ln, word, tail(both)))
        if word not in m.group(0) or "accept" not in m.group(0):
            raise Fail("the error for line %d does not name %s and what "
                       "is accepted: %s" % (ln, word, m.group(0)))
    # A secret file readable by others is a configuration error.
    loose = write_config(
        os.path.join(d, "loose.conf"), d,
        {"state_dir": os.path.join(d, "state"),
         "control_socket": os.path.join(d, "ctl.sock")},
        [{"name": "siem", "transport": "tcp", "address": "127.0.0.1:5514"}],
        [{"name": "loose", "tenant_id": "loose.onmicrosoft.com",
          "secret": "S3cr3t-loose-value", "secret_mode": 0o644,
          "api_url": api, "login_url": api}])
    rc, out, err = Daemon(ctx.suite, d, loose).run("--check-config",
                                                   timeout=20)
    if rc != 78:
        raise Fail("a world-readable secret file: --check-config exited %d, "
                   "expected 78; output:\n%s" % (rc, tail(out + err)))
    if "S3cr3t" in out + err:
        raise Fail("the secret value appears in the error output")
    stderr_line(out + err, os.path.join(d, "secrets", "loose"),
                what="the world-readable secret file")
    ctx.note("good: %d lines; bad: both errors at %s:%d and :%d"
             % (len(lines), os.path.basename(bad), l_dur, l_key))


# --------------------------------------------------------------------------
# 10. state

def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def flock_held(path, pid):
    """Does pid hold a lock on path (from /proc/locks, without touching
    the lock ourselves)?"""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            locks = f.read().split("\n")
    except OSError:
        return False
    for line in locks:
        f = line.split()
        if len(f) >= 6 and f[4] == str(pid) and \
                f[5].split(":")[-1] == str(st.st_ino):
            return True
    return False


def check_state(ctx):
    state = os.path.join(ctx.dir, "state")
    # A permissive umask must not leak into the state files.
    rc, _, err = ctx.daemon.run("--once", umask=0o000, timeout=90)
    if rc != 0:
        raise Fail("first --once exited %d:\n%s" % (rc, tail(err)))
    settle(ctx, "octet")
    first = delivered(ctx, "octet")
    compare(ctx.expected(), first)
    if mode_of(state) != 0o700:
        raise Fail("state_dir has mode %o, expected 700" % mode_of(state))
    nfiles = 0
    for root, dirs, files in os.walk(state):
        for x in dirs:
            p = os.path.join(root, x)
            if mode_of(p) & 0o077:
                raise Fail("%s has mode %o (group/other access)"
                           % (p, mode_of(p)))
        for x in files:
            p = os.path.join(root, x)
            if stat.S_ISREG(os.lstat(p).st_mode) and mode_of(p) != 0o600:
                raise Fail("state file %s has mode %o, expected 600"
                           % (p, mode_of(p)))
            nfiles += 1
    if nfiles == 0:
        raise Fail("no state files were written under %s" % state)

    # Second run: nothing new.
    rc, _, err = ctx.daemon.run("--once", timeout=90)
    if rc != 0:
        raise Fail("second --once exited %d:\n%s" % (rc, tail(err)))
    settle(ctx, "octet")
    second = delivered(ctx, "octet")
    if len(second) != len(first):
        extra = len(second) - len(first)
        raise Fail("second --once forwarded %d messages again (cursor or "
                   "dedupe set not persisted), e.g. %s"
                   % (extra, [d.key() for d in second[len(first):]][:3]))
    # Third run after new alerts: exactly the new ones.
    for name, _ in ctx.tenants():
        ctx.fake.add_alerts(name, 5)
    rc, _, err = ctx.daemon.run("--once", timeout=90)
    if rc != 0:
        raise Fail("third --once exited %d:\n%s" % (rc, tail(err)))
    settle(ctx, "octet")
    third = delivered(ctx, "octet")
    compare(ctx.expected(), third)

    # A second daemon on the same state_dir refuses to start.
    ctx.daemon.start()
    wait_for(lambda: ctx.daemon.alive() and flock_held(
        os.path.join(state, "lock"), ctx.daemon.proc.pid), 15,
        "the daemon to lock %s/lock" % state)
    conf2 = os.path.join(ctx.dir, "second.conf")
    with open(ctx.conf) as f:
        text = f.read().replace(os.path.join(ctx.dir, "ctl.sock"),
                                os.path.join(ctx.dir, "ctl-second.sock"))
    with open(conf2, "w") as f:
        f.write(text)
    d2 = Daemon(ctx.suite, ctx.dir, conf2, name="alertrelayd-second")
    p2 = d2.start()
    rc = p2.wait(15)
    if rc is None:
        p2.stop()
        raise Fail("a second daemon on the same state_dir kept running")
    ctx.suite.check_sanitizer(p2)
    if rc == 0:
        raise Fail("a second daemon on the same state_dir exited 0")
    err2 = p2.stderr()
    if not re.search(r"lock|already|in use|another", err2, re.I):
        raise Fail("the second daemon's stderr does not say the state_dir "
                   "is locked:\n%s" % tail(err2))
    ctx.daemon.alive()
    ctx.daemon.stop()
    ctx.note("%d then 0 then %d new; second daemon: %s"
             % (len(first), len(third) - len(first),
                err2.strip().split("\n")[-1][:140]))


# --------------------------------------------------------------------------

T3 = tenants(3)
T2 = tenants(2)
T1 = tenants(1)

CASES = [
    {
        "name": "basic_tcp", "quick": True,
        "doc": "3 tenants x 50 alerts, --once, octet-counted TCP: every "
               "version once, valid CEF, labels, act, PROGRAM",
        "fake": fake_tenants(T3) + ["--alerts", "50", "--seed", "1"],
        "tenants": T3,
        "outputs": [octet_tcp()],
        "check": check_basic,
    },
    {
        "name": "paging",
        "doc": "2,500 alerts with page_size 1000: all delivered once",
        "fake": fake_tenants(T1) + ["--alerts", "2500", "--seed", "2"],
        "tenants": T1,
        "daemon": {"page_size": "1000"},
        "outputs": [octet_tcp()],
        "check": check_paging,
    },
    {
        "name": "paging_short_links",
        "doc": "nextLink pages of 30 under $top=100, chains cut at $top, a "
               "tie of 290 versions and a 2m overlap wider than a page: "
               "every version once, nothing stalls",
        "fake": fake_tenants(T1) + ["--alerts", "600", "--spread", "1m",
                                    "--link-page", "30", "--seed", "5"],
        "tenants": T1,
        "daemon": {"page_size": "100", "overlap": "2m"},
        "outputs": [octet_tcp()],
        "check": check_paging_short_links,
    },
    {
        "name": "updates_and_late",
        "doc": "long-running: new alerts, updates (act=updated, new rt), "
               "late alerts inside the overlap, no duplicates",
        "fake": fake_tenants(T2) + ["--alerts", "10", "--spread", "10m",
                                    "--rate", "1", "--late-fraction", "0.3",
                                    "--late-delay", "3s", "--seed", "3"],
        "tenants": T2,
        "outputs": [octet_tcp()],
        "check": check_updates,
    },
    {
        "name": "throttle_and_5xx",
        "doc": "429 with Retry-After and 500 x3: everything still "
               "delivered once; stderr names tenant and status",
        "fake": fake_tenants(T3) + ["--alerts", "30", "--seed", "4",
                                    "--fault", "t1:429:2",
                                    "--fault", "t2:500:3"],
        "tenants": T3,
        "outputs": [octet_tcp()],
        "check": check_throttle,
    },
    {
        "name": "wrong_secret", "quick": True,
        "doc": "a wrong secret: other tenants delivered, exit 1, "
               "AADSTS7000215 named, secret not logged",
        "fake": fake_tenants(T3) + ["--alerts", "20", "--seed", "5"],
        "tenants": [T3[0], dict(T3[1], secret=WRONG_SECRET), T3[2]],
        "outputs": [octet_tcp()],
        "check": check_wrong_secret,
    },
    {
        "name": "tls",
        "doc": "TLS with mTLS to syslog-ng: all delivered; wrong CA: "
               "nothing delivered, verification error logged",
        "fake": fake_tenants(T2) + ["--alerts", "20", "--seed", "6"],
        "tenants": T2,
        "outputs": [{"name": "siem", "transport": "tls", "format": "cef",
                     "sink": "tls", "ca_file": "ca.pem",
                     "cert_file": "client.pem", "key_file": "client.key"}],
        "check": check_tls,
    },
    {
        "name": "siem_restart",
        "doc": "syslog-ng down for a few seconds while alerts arrive: "
               "every version delivered after it returns",
        "fake": fake_tenants(T1) + ["--alerts", "20", "--seed", "7"],
        "tenants": T1,
        "outputs": [octet_tcp()],
        "check": check_siem_restart,
    },
    {
        "name": "framing_udp",
        "doc": "newline-framed TCP exactly once; UDP best effort",
        "fake": fake_tenants(T2) + ["--alerts", "30", "--seed", "8"],
        "tenants": T2,
        "outputs": [{"name": "lf", "transport": "tcp", "framing": "newline",
                     "format": "cef", "sink": "lf"},
                    {"name": "udp", "transport": "udp", "format": "cef",
                     "sink": "udp"}],
        "check": check_framing_udp,
    },
    {
        "name": "check_config", "quick": True,
        "doc": "--check-config: good config exit 0 with one verdict line, "
               "-v a line per section; "
               "2 errors -> 78 with FILE:LINE each; loose secret file -> 78",
        "syslog_ng": False,
        "check": check_config,
    },
    {
        "name": "state", "quick": True,
        "doc": "--once twice forwards nothing new; 0700/0600 state; a "
               "second daemon on the same state_dir refuses to start",
        "fake": fake_tenants(T2) + ["--alerts", "40", "--seed", "10"],
        "tenants": T2,
        "outputs": [octet_tcp()],
        "check": check_state,
    },
]
