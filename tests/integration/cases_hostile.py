"""Hostile-input cases (issue 4): a hostile API server (the fake cloud's
hostile faults), log injection end to end through syslog-ng for CEF, LEEF
and JSON, hostile SIEM TLS endpoints, plain-http refusal, and secrets that
must never appear anywhere.  Loaded by harness.py (every cases_*.py
exports CASES)."""

import http.server
import json
import os
import re
import subprocess
import threading
import time
import urllib.request

from harness import (Daemon, Fail, Proc, SyslogNg, compare, deliveries,
                     expected_versions, free_port, lognorm_workaround,
                     openssl, serve, tail, wait_for, wait_delivered,
                     wait_listening, write_config)

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "data", "injection-vectors.json")


def tenants(names):
    return [{"name": n, "label": "Customer %s Ltd" % n} for n in names]


def fake_tenants(ts):
    args = []
    for t in ts:
        args += ["-t", t["name"]]
    return args


def octet_tcp(name="siem", fmt="cef"):
    return {"name": name, "transport": "tcp", "framing": "octet-counting",
            "format": fmt, "sink": "octet"}


def settle(ctx, source, sng=None):
    """syslog-ng has written what it received: a marker through the same
    source and wait for it (TLS: the harness cannot inject; pause)."""
    sng = sng or ctx.sng
    if source == "tls":
        time.sleep(1.5)
        return
    marker = "harness-marker-%d" % time.monotonic_ns()
    sng.inject(source, marker)
    wait_for(lambda: any(r.get("MESSAGE", "").endswith(marker)
                         for r in sng.messages(source)),
             10, "syslog-ng to write a marker message")


def records(sng, source):
    return [r for r in sng.messages(source) if r.get("PROGRAM") != "harness"]


def line_with(text, *words):
    for line in text.split("\n"):
        low = line.lower()
        if all(w.lower() in low for w in words):
            return line
    return None


def need_line(text, *words, what=""):
    line = line_with(text, *words)
    if line is None:
        raise Fail("the daemon logged no line naming %s (%s); stderr:\n%s"
                   % (" + ".join(repr(w) for w in words), what,
                      tail(text, 40)))
    return line


def vm_hwm_kb(pid):
    """Peak resident set (VmHWM) of pid in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise Fail("no VmHWM in /proc/%d/status" % pid)


def asan_build(ctx):
    return "asan" in os.path.basename(ctx.suite.build.rstrip("/"))


class Recorder:
    """A plain HTTP listener on 127.0.0.2 (another host than the fake's
    127.0.0.1) that records every request it gets, headers included: the
    target of the hostile redirect."""

    def __init__(self):
        self.requests = []
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec.requests.append((self.command, self.path,
                                     dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"value":[]}')

            do_GET = do_POST = do_any

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.2", 0), H)
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def api_log(ctx, tenant):
    """[(status, uri)] of the fake's logged API requests for tenant."""
    out = []
    for line in (ctx.fake.log() or "").split("\n"):
        f = line.split(" ")
        if len(f) >= 5 and f[1] == tenant and "/oauth2/" not in f[3]:
            out.append((int(f[-1]), f[3]))
    return out


def token_log(ctx, tenant):
    out = []
    for line in (ctx.fake.log() or "").split("\n"):
        f = line.split(" ")
        if len(f) >= 5 and f[1] == tenant and "/oauth2/" in f[3]:
            out.append((int(f[-1]), f[3]))
    return out


# --------------------------------------------------------------------------
# 1. hostile_api: every hostile reply kind on its own tenant at once.

# tenant -> (fault kind, arg, what the daemon must say about it)
HOSTILE = {
    "trunc": ("truncate", None, ("trunc",)),
    "badjson": ("badjson", "1000000", ("badjson",)),
    "huge": ("huge", "200", ("huge",)),
    "endless": ("endless", None, ("endless",)),
    "trickle": ("trickle", "1000", ("trickle",)),
    "redir": ("redirect", None, ("redir", "302")),
    "tktrunc": ("token-truncate", None, ("tktrunc",)),
    "tkhuge": ("token-huge", "200", ("tkhuge",)),
    "tkredir": ("token-redirect", None, ("tkredir",)),
    "tkslow": ("token-trickle", "1000", ("tkslow",)),
    "deep": ("deep", "100000", ("deep", "nested")),
}
# Alerts still arrive from these: the bytes are hostile, the page valid.
DELIVERING = {
    "types": ("wrongtypes", None),
    "nonutf8": ("nonutf8", None),
}
HOSTILE_T = tenants(["good"] + sorted(HOSTILE) + sorted(DELIVERING))

BAD_UTF8 = (b"\xff\xfe\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82")


def check_hostile_api(ctx):
    fake = ctx.fake
    rec = Recorder()
    try:
        _check_hostile_api(ctx, fake, rec)
    finally:
        rec.stop()


def _check_hostile_api(ctx, fake, rec):
    for name, (kind, arg, _) in HOSTILE.items():
        if kind.endswith("redirect"):
            arg = "127.0.0.2:%d" % rec.port
        fake.fault(name, kind, arg)
    for name, (kind, arg) in DELIVERING.items():
        fake.fault(name, kind, arg)
    ctx.daemon.start()
    t0 = time.monotonic()
    # The good tenant and the hostile-but-valid ones deliver while the
    # others fail; new alerts keep coming for the good one.
    good = [("good", "Customer good Ltd")] + \
        [(n, "Customer %s Ltd" % n) for n in DELIVERING]
    fake.add_alerts("good", 5)
    exp = ctx.expected(only=[n for n, _ in good])
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 60,
                   daemon=ctx.daemon,
                   what="alerts of the good and the valid-but-hostile "
                        "tenants while 11 tenants are under attack")
    time.sleep(max(0, 20 - (time.monotonic() - t0)))
    ctx.daemon.alive()
    err = ctx.daemon.proc.stderr()
    hwm = vm_hwm_kb(ctx.daemon.proc.pid)
    # A clear error naming each failing tenant, and backoff: few attempts.
    lines = {}
    for name, (kind, arg, words) in HOSTILE.items():
        lines[name] = need_line(err, "tenant %s:" % name, *words[1:],
                                what="the %s reply" % kind)
        need_line(err, "tenant %s: failing" % name,
                  what="backoff after the %s reply" % kind)
        n = len(api_log(ctx, name)) + len(token_log(ctx, name))
        if n > 8:
            raise Fail("tenant %s (%s) was asked %d times in %.0fs: no "
                       "backoff" % (name, kind, n,
                                    time.monotonic() - t0))
    # The bearer token (and the client secret) never went to the other
    # host: the daemon does not follow redirects at all.
    leaked = [r for r in rec.requests
              if "authorization" in (k.lower() for k in r[2]) or
              b"client_secret" in r[3] or b"secret-" in r[3]]
    if leaked:
        raise Fail("credentials followed a redirect to another host: %r"
                   % (leaked[:2],))
    if rec.requests:
        raise Fail("the daemon followed a 302 to another host: %r"
                   % ([r[:2] for r in rec.requests],))
    # Compression: the daemon never asks for it, so a gzip bomb cannot be
    # inflated; a reply would be raw bytes (invalid JSON) to it.
    st = fake.stats()
    if st.get("accept_encoding", 0) != 0:
        raise Fail("the daemon sent Accept-Encoding in %d requests: gzip "
                   "bombs would need a test" % st["accept_encoding"])
    limit = 400 * 1024 if asan_build(ctx) else 100 * 1024
    if hwm > limit:
        raise Fail("daemon peak RSS (VmHWM) %d KiB > %d KiB with 200 MB "
                   "and endless bodies" % (hwm, limit))

    # Content of the valid-but-hostile pages.
    settle(ctx, "octet")
    dels = deliveries(ctx.suite, ctx.sng.messages("octet"))
    labels = set(x[1] for x in good)
    compare(ctx.expected(only=[n for n, _ in good]),
            [d for d in dels if d.label in labels])
    # Numbers, booleans, objects where text belongs are absent, never
    # rendered (a string where an array was is text, and may show).
    for d in dels:
        if d.label != "Customer types Ltd":
            continue
        shown = [k for k, v in d.ext.items()
                 if v in ("-1234567890123", "1e308", "1e+308", "true",
                          "-0.5") or (v or "").startswith("{")]
        if shown or d.cef.get("Severity") != "0":
            raise Fail("mistyped alert members reached the CEF: %s "
                       "(severity %s)" % (shown, d.cef.get("Severity")))
    bad_names = [d for d in dels if d.label == "Customer nonutf8 Ltd"]
    for d in bad_names:
        name = d.cef.get("Name") or ""
        if not name.startswith("\ufffd") or "\udcff" in name:
            raise Fail("invalid UTF-8 in a title did not become U+FFFD: %r"
                       % name[:40])
        want = BAD_UTF8.decode("utf-8", "replace")
        if not name.startswith(want):
            raise Fail("title %r does not start with the replacement "
                       "sequence %r (one U+FFFD per maximal invalid "
                       "subsequence)" % (name[:20], want))

    # Clear the faults: every tenant recovers and delivers.
    for name in list(HOSTILE) + list(DELIVERING):
        fake.fault(name, "clear")
    everyone = [(t["name"], t["label"]) for t in HOSTILE_T]
    wait_delivered(ctx.suite, ctx.sng, "octet",
                   lambda: expected_versions(fake, everyone), 90,
                   daemon=ctx.daemon,
                   what="every tenant's alerts after the faults cleared")
    ctx.daemon.stop()
    settle(ctx, "octet")
    dels = deliveries(ctx.suite, ctx.sng.messages("octet"))
    compare(expected_versions(fake, everyone), dels)
    ctx.note("11 hostile tenants failed with backoff, 2 valid-but-hostile "
             "delivered, VmHWM %d MiB, no redirect followed, no "
             "Accept-Encoding; all recovered" % (hwm // 1024))
    for name in sorted(lines):
        ctx.note("%-8s %s" % (name, re.sub(r"^.*?tenant ", "tenant ",
                                            lines[name])[:150]))


CASES = [
    {
        "name": "hostile_api",
        "doc": "truncated, invalid, mistyped, 100k-deep, 200 MB, endless, "
               "trickling, redirecting, non-UTF-8 API and token replies: "
               "per-tenant errors with backoff, bounded memory, no "
               "credential follows a redirect, others unaffected",
        "fake": fake_tenants(HOSTILE_T) + ["--alerts", "3", "--seed", "41"],
        "tenants": HOSTILE_T,
        "daemon": {"request_timeout": "5s", "poll_interval": "1s",
                   "max_concurrent_requests": "4"},
        "outputs": [octet_tcp()],
        "check": check_hostile_api,
    },
]


# --------------------------------------------------------------------------
# 2. injection: hostile text in every forwarded field, end to end.

def jlit(raw):
    """A JSON string literal holding raw bytes: control bytes escaped (as
    JSON requires), everything else (invalid UTF-8 too) sent raw."""
    out = bytearray(b'"')
    for c in raw:
        if c == 0x22:
            out += b'\\"'
        elif c == 0x5c:
            out += b'\\\\'
        elif c < 0x20:
            out += b"\\u%04x" % c
        else:
            out.append(c)
    return bytes(out + b'"')


def expand(spec):
    if isinstance(spec, str):
        return spec
    if "concat" in spec:
        return "".join(expand(x) for x in spec["concat"])
    return spec["repeat"] * spec["count"]


def vectors():
    """[(name, JSON literal bytes, decoded text, reference entry|None)]:
    the reference's 35 vectors plus our own."""
    with open(VECTORS) as f:
        ref = json.load(f)
    out = []
    for v in ref:
        raw = bytes.fromhex(v["input_hex"]) if v.get("input_hex") else \
            expand(v["input"]).encode("utf-8", "surrogatepass")
        out.append((v["name"], jlit(raw), raw.decode("utf-8", "replace"),
                    v))
    own = [
        ("fake_record_lf", b"ok\n<13>1 2024-01-01T00:00:00Z evil app - - - "
         b"CEF:0|Evil|Corp|1|1|fake|10|cs2=Other externalId=da-fake"),
        ("fake_leef_after_crlf", b"ok\r\nLEEF:2.0|Evil|x|1|1|^|usrName=root"),
        ("cs2_spoof", b"x cs2=Evil Corp cs2Label=Customer externalId=da-spoof"
         b" act=created rt=0"),
        ("escaped_eq_spoof", b"x\\ cs2\\=Evil \\\\= externalId=\\"),
        ("leef_delim_spoof", b"x^cs2=Evil^usrName=root\tsev=10|y"),
        ("json_spoof", b'","schema":"evil","alert":{"id":"x"},"z":"'),
        ("octet_prefix_start", b"99999 <13>1 - - - - - - x"),
        ("bidi_isolates", "\u2066evil\u2069 \u202dltr\u202c".encode()),
        ("mb1_ascii", b"A" * (1 << 20)),
        ("mb1_escapes", b"\\=|\n^" * (1 << 18)),
    ]
    for name, raw in own:
        out.append((name, jlit(raw), raw.decode("utf-8", "replace"), None))
    for name, lit in (("json_u0000", b'"a\\u0000b"'),
                      ("lone_surrogate_hi", b'"x\\ud800y"'),
                      ("lone_surrogate_lo", b'"x\\udc00"'),
                      ("surrogate_pair", b'"\\ud83d\\ude00 ok"'),
                      ("escaped_controls", b'"\\u001b[2J\\u0085\\u2028"')):
        out.append((name, lit, json.loads(lit), None))
    return out


# Where a vector goes in the alert, and the CEF / LEEF keys it reaches.
INJ_FIELDS = ["title", "description", "category", "detectorId",
              "computerDnsName", "threatName", "detectionSource", "status",
              "classification", "determination", "machineId",
              "aadTenantId", "mitreTechniques", "userName", "domainName",
              "fileName", "filePath", "url"]
BIG_FIELDS = ["title", "description", "fileName"]     # 1 MB vectors


def alert_body(aid, lit, big):
    f = {k: lit for k in (BIG_FIELDS if big else INJ_FIELDS)}
    parts = [b'"id":' + jlit(aid.encode())]
    for k in ("title", "description", "category", "detectorId",
              "computerDnsName", "threatName", "detectionSource", "status",
              "classification", "determination", "machineId",
              "aadTenantId"):
        if k in f:
            parts.append(b'"%s":%s' % (k.encode(), f[k]))
    if "mitreTechniques" in f:
        parts.append(b'"mitreTechniques":[' + f["mitreTechniques"] + b"]")
    if "userName" in f:
        parts.append(b'"relatedUser":{"userName":' + f["userName"] +
                     b',"domainName":' + f["domainName"] + b"}")
    ev = [b'"entityType":"File"', b'"sha1":"' + b"a" * 40 + b'"']
    if "fileName" in f:
        ev.append(b'"fileName":' + f["fileName"])
    if "filePath" in f:
        ev.append(b'"filePath":' + f["filePath"])
    evs = [b"{" + b",".join(ev) + b"}"]
    if "url" in f:
        evs.append(b'{"entityType":"Url","url":' + f["url"] + b"}")
    parts.append(b'"evidence":[' + b",".join(evs) + b"]")
    return b"{" + b",".join(parts) + b"}"


def add_raw(fake, tenant, body):
    url = "%s/_control/alerts?tenant=%s&n=1" % (fake.url, tenant)
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except OSError as e:
        raise Fail("adding an injection alert to the fake failed: %s" % e)


def sanitize(s):
    """SPEC 4: Cc controls other than TAB/LF/CR, and lone surrogates,
    become U+FFFD (invalid UTF-8 already did when decoding)."""
    return "".join("\ufffd" if ((ord(c) < 0x20 and c not in "\t\n\r") or
                                0x7f <= ord(c) <= 0x9f or
                                0xd800 <= ord(c) <= 0xdfff) else c
                   for c in s)


def hdr(s):
    return re.sub(r"[\t\n\r]", " ", sanitize(s))


def leef_val(s, header=False):
    s = re.sub(r"[\^\t\n\r]", " ", sanitize(s))
    return s.replace("|", " ") if header else s


CEF_KEYS = {"rt", "start", "end", "deviceCustomDate1",
            "deviceCustomDate1Label", "externalId", "act", "cat",
            "sourceServiceName", "msg", "shost", "deviceExternalId", "suser",
            "sntdom", "fname", "filePath", "fileHash", "src", "c6a2",
            "request", "cs1", "cs1Label", "cs2", "cs2Label", "cs3",
            "cs3Label", "cs4", "cs4Label", "cs5", "cs5Label", "cs6",
            "cs6Label", "cn1", "cn1Label", "cn2", "cn2Label", "cn3",
            "cn3Label", "flexString1", "flexString1Label", "flexString2",
            "flexString2Label"}
LEEF_KEYS = (CEF_KEYS - {"rt", "shost", "suser", "c6a2"}) | \
    {"devTime", "sev", "name", "identHostName", "usrName"}
# field -> (CEF key, LEEF key); atoms are dropped, never cut.
FIELD_KEYS = {
    "description": ("msg", "msg"), "category": ("cat", "cat"),
    "computerDnsName": ("shost", "identHostName"),
    "threatName": ("cs1", "cs1"),
    "detectionSource": ("sourceServiceName", "sourceServiceName"),
    "status": ("cs4", "cs4"), "machineId": ("deviceExternalId",
                                            "deviceExternalId"),
    "aadTenantId": ("cs3", "cs3"), "mitreTechniques": ("cs5", "cs5"),
    "userName": ("suser", "usrName"), "domainName": ("sntdom", "sntdom"),
    "fileName": ("fname", "fname"), "filePath": ("filePath", "filePath"),
    "url": ("request", "request"),
}
# Dropped rather than cut: atoms, and the description (cut first).
ATOMS = {"machineId", "aadTenantId", "description"}


def expected_fields(text, big):
    """{CEF key: decoded value} the alert must carry (None: absent)."""
    v = sanitize(text) or None
    fields = BIG_FIELDS if big else INJ_FIELDS
    out = {}
    for f, (ck, _) in FIELD_KEYS.items():
        if f in fields:
            out[ck] = v
    if not big:
        c = "/".join(x for x in (v, v) if x)
        out["flexString2"] = c or None
        out["cs3"] = v or "inj"     # else the configured tenant_id
    return out


def pairs_no_dups(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise Fail("a parsed event has the key %r twice" % k)
        d[k] = v
    return d


def lognorm(ctx, msgs):
    """lognormalizer (the independent CEF parser) on msgs; duplicate keys
    in its output fail the case."""
    data = "".join(lognorm_workaround(m) + "\n" for m in msgs)
    r = subprocess.run(["lognormalizer", "-r", ctx.suite.rulebase, "-e",
                        "json"], input=data.encode("utf-8"),
                       capture_output=True, timeout=120)
    lines = [x for x in r.stdout.decode("utf-8", "replace").split("\n")
             if x.strip()]
    if len(lines) != len(msgs):
        raise Fail("lognormalizer gave %d results for %d messages"
                   % (len(lines), len(msgs)))
    return [json.loads(x, object_pairs_hook=pairs_no_dups).get("cef")
            for x in lines]


def close_enough(got, want, long_alert, atom=False):
    """Equal; for a shortened message a prefix (atoms: absent)."""
    if got == want:
        return True
    if not long_alert:
        return False
    if got is None:
        return atom             # text is cut, never dropped
    return want is not None and want.startswith(got)


def check_cef_output(ctx, recs, alerts, label, what):
    msgs = [r.get("MESSAGE", "") for r in recs]
    for m in msgs:
        if "\n" in m or "\r" in m:
            raise Fail("%s: a raw CR/LF in a message: %r" % (what, m[:200]))
    cefs = lognorm(ctx, msgs)
    seen = {}
    bad = []
    for m, c in zip(msgs, cefs):
        if c is None:
            raise Fail("%s: lognormalizer rejected %r" % (what, m[:300]))
        ext = c.get("Extensions", {})
        spoof = set(ext) - CEF_KEYS
        if spoof:
            raise Fail("%s: keys that are not ours: %s in %r"
                       % (what, sorted(spoof), m[:300]))
        aid = ext.get("externalId")
        if aid not in alerts:
            raise Fail("%s: a message for an alert id never sent: %r"
                       % (what, aid))
        seen[aid] = seen.get(aid, 0) + 1
        name, text, big, ref = alerts[aid]
        lng = big or len(text) > 1000
        if len(m.encode()) > 65536:
            raise Fail("%s: %s: %d bytes > max_message_bytes"
                       % (what, name, len(m.encode())))
        if ext.get("cs2") != label:
            bad.append("%s: cs2=%r" % (name, ext.get("cs2")))
        want_name = hdr(text) or "-"
        if not close_enough(c.get("Name"), want_name, lng):
            bad.append("%s: Name %r, expected %r"
                       % (name, (c.get("Name") or "")[:60], want_name[:60]))
        if not big:
            want_cls = hdr(text) or "alert"
            if not close_enough(c.get("SignatureID"), want_cls, lng):
                bad.append("%s: class %r, expected %r"
                           % (name, c.get("SignatureID"), want_cls[:60]))
        if ref is not None and not lng:
            # The reference's independently verified decodings.
            if c.get("Name") != (ref["decoded_header_expected"] or "-"):
                bad.append("%s: Name %r != reference %r"
                           % (name, c.get("Name"),
                              ref["decoded_header_expected"]))
            if ext.get("msg") != (ref["decoded_extension_expected"] or
                                  None):
                bad.append("%s: msg %r != reference %r"
                           % (name, ext.get("msg"),
                              ref["decoded_extension_expected"]))
        for k, want in expected_fields(text, big).items():
            f = [x for x, y in FIELD_KEYS.items() if y[0] == k]
            if not close_enough(ext.get(k), want, lng,
                                atom=bool(f and f[0] in ATOMS)):
                bad.append("%s: %s=%r, expected %r"
                           % (name, k, (ext.get(k) or "")[:60],
                              (want or "")[:60]))
    dups = {k: n for k, n in seen.items() if n != 1}
    missing = set(alerts) - set(seen)
    if dups or missing:
        raise Fail("%s: not exactly one message per alert: twice %s, "
                   "missing %s" % (what, sorted(dups)[:5],
                                   sorted(missing)[:5]))
    if bad:
        raise Fail("%s: %d field mismatches, e.g.\n%s"
                   % (what, len(bad), "\n".join(bad[:10])))


def check_leef_output(recs, alerts, label):
    pfx = "LEEF:2.0|Microsoft|Microsoft Defender for Endpoint|1.0|"
    seen = {}
    bad = []
    for r in recs:
        m = r.get("MESSAGE", "")
        if not m.startswith(pfx):
            raise Fail("LEEF: not a LEEF 2.0 message: %r" % m[:200])
        rest = m[len(pfx):]
        i = rest.find("|")
        if i < 0 or not rest[i:].startswith("|^|"):
            raise Fail("LEEF: no '|^|' after the event id: %r" % m[:300])
        cls, attrs = rest[:i], rest[i + 3:]
        ext = {}
        for a in attrs.split("^"):
            k, eq, v = a.partition("=")
            if not eq or k not in LEEF_KEYS:
                raise Fail("LEEF: attribute %r is not one of ours in %r"
                           % (a[:80], m[:300]))
            if k in ext:
                raise Fail("LEEF: key %s twice in %r" % (k, m[:300]))
            ext[k] = v
        ids = {leef_val(x): x for x in alerts}    # '^' in an id: space
        aid = ids.get(ext.get("externalId"))
        if aid not in alerts:
            raise Fail("LEEF: a message for an alert id never sent: %r"
                       % ext.get("externalId"))
        seen[aid] = seen.get(aid, 0) + 1
        name, text, big, ref = alerts[aid]
        lng = big or len(text) > 1000
        if ext.get("cs2") != leef_val(label):
            bad.append("%s: cs2=%r" % (name, ext.get("cs2")))
        if not big and not close_enough(cls, leef_val(text, True) or
                                        "alert", lng):
            bad.append("%s: event id %r" % (name, cls[:60]))
        if not close_enough(ext.get("name"), leef_val(text) or None, lng):
            bad.append("%s: name=%r" % (name, (ext.get("name") or "")[:60]))
        exp = expected_fields(text, big)
        for f, (ck, lk) in FIELD_KEYS.items():
            if ck not in exp:
                continue
            want = exp[ck]
            want = leef_val(want) if want is not None else None
            if not close_enough(ext.get(lk), want, lng, atom=f in ATOMS):
                bad.append("%s: %s=%r, expected %r"
                           % (name, lk, (ext.get(lk) or "")[:60],
                              (want or "")[:60]))
    if set(seen) != set(alerts) or any(n != 1 for n in seen.values()):
        raise Fail("LEEF: not exactly one message per alert (%d ids, %d "
                   "messages)" % (len(seen), sum(seen.values())))
    if bad:
        raise Fail("LEEF: %d field mismatches, e.g.\n%s"
                   % (len(bad), "\n".join(bad[:10])))


def check_json_output(recs, alerts, label):
    seen = {}
    bad = []
    for r in recs:
        m = r.get("MESSAGE", "")
        try:
            j = json.loads(m, object_pairs_hook=pairs_no_dups)
        except ValueError as e:
            raise Fail("JSON: a message is not JSON (%s): %r" % (e, m[:300]))
        if set(j) != {"schema", "event", "tenant", "forwarded_at", "alert"}:
            raise Fail("JSON: top-level keys %s" % sorted(j))
        a = j["alert"]
        aid = a.get("id")
        if aid not in alerts:
            raise Fail("JSON: an alert id never sent: %r" % aid)
        seen[aid] = seen.get(aid, 0) + 1
        name, text, big, ref = alerts[aid]
        lng = big or len(text) > 1000
        if j["tenant"].get("label") != label:
            bad.append("%s: tenant.label %r" % (name, j["tenant"]))
        want = sanitize(text)
        got = {"title": a.get("title"), "description": a.get("description"),
               "fileName": (a.get("evidence") or [{}])[0].get("fileName")}
        if not big:
            got.update({"category": a.get("category"),
                        "userName": (a.get("relatedUser") or {})
                        .get("userName"),
                        "url": ((a.get("evidence") or [{}, {}]) + [{}])[1]
                        .get("url")})
        for k, g in got.items():
            if not close_enough(g, want, lng):
                bad.append("%s: alert.%s=%r, expected %r"
                           % (name, k, (g or "")[:60], want[:60]))
    if set(seen) != set(alerts) or any(n != 1 for n in seen.values()):
        raise Fail("JSON: not exactly one message per alert (%d ids, %d "
                   "messages)" % (len(seen), sum(seen.values())))
    if bad:
        raise Fail("JSON: %d field mismatches, e.g.\n%s"
                   % (len(bad), "\n".join(bad[:10])))


INJ_LABEL = "Evil|Label=x^y \\ Ltd"


def check_injection(ctx):
    sng2 = SyslogNg(ctx.suite, os.path.join(ctx.dir, "sng2"))
    sng2.start()
    alerts = {}
    for i, (name, lit, text, ref) in enumerate(vectors()):
        big = name.startswith("mb1_")
        aid = "da-inj-%03d" % i
        add_raw(ctx.fake, "inj", alert_body(aid, lit, big))
        alerts[aid] = (name, text, big, ref)
    # The id itself is text from the API.
    aid = "da-inj x=1 cs2=Evil|^ externalId=spoof"
    add_raw(ctx.fake, "inj", alert_body(aid, jlit(b"id test"), False))
    alerts[aid] = ("hostile_id", "id test", False, None)
    conf = ctx.make_config(outputs=[
        octet_tcp("cef"),
        {"name": "tls", "transport": "tls", "format": "cef", "sink": "tls",
         "ca_file": "ca.pem", "cert_file": "client.pem",
         "key_file": "client.key"},
        {"name": "leef", "transport": "tcp", "framing": "newline",
         "format": "leef", "sink": "lf"},
        {"name": "json", "transport": "tcp", "framing": "octet-counting",
         "format": "json", "address": sng2.address("octet")}])
    d = Daemon(ctx.suite, ctx.dir, conf)
    rc, out, err = d.run("--once", timeout=120)
    if rc != 0:
        raise Fail("alertrelayd --once exited %d:\n%s" % (rc, tail(err)))
    settle(ctx, "octet")
    settle(ctx, "lf")
    settle(ctx, "octet", sng2)
    want = len(alerts)
    wait_for(lambda: len(records(ctx.sng, "tls")) >= want, 20,
             "the TLS messages")
    for src, sng in (("octet", ctx.sng), ("tls", ctx.sng), ("lf", ctx.sng),
                     ("octet", sng2)):
        n = len(records(sng, src))
        if n != want:
            raise Fail("%s received %d messages for %d alerts (an "
                       "injected record or a lost one)"
                       % (src if sng is ctx.sng else "json", n, want))
    check_cef_output(ctx, records(ctx.sng, "octet"), alerts, INJ_LABEL,
                     "CEF over octet-counted TCP")
    check_cef_output(ctx, records(ctx.sng, "tls"), alerts, INJ_LABEL,
                     "CEF over TLS")
    check_leef_output(records(ctx.sng, "lf"), alerts, INJ_LABEL)
    check_json_output(records(sng2, "octet"), alerts, INJ_LABEL)
    sng2.stop()
    ctx.note("%d vectors x %d fields (1 MB ones in %d): CEF (TCP, TLS), "
             "LEEF and JSON each exactly one message per alert, fields "
             "equal the sanitised input, no foreign or repeated key"
             % (want, len(INJ_FIELDS), len(BIG_FIELDS)))


CASES.append({
    "name": "injection",
    "doc": "the reference's 35 injection vectors + 17 of ours in every "
           "forwarded field, through syslog-ng: CEF (TCP, TLS), LEEF, JSON; "
           "one message per alert, sanitised values, no spoofed key",
    "fake": ["-t", "inj", "--seed", "42"],
    "tenants": [{"name": "inj", "label": INJ_LABEL}],
    "outputs": [octet_tcp()],
    "check": check_injection,
})


# --------------------------------------------------------------------------
# 3. hostile_siem: TLS endpoints the daemon must refuse, and plain http.

CA_CNF = """[ca]
default_ca = c
[c]
database = {d}/index.txt
new_certs_dir = {d}
serial = {d}/serial
default_md = sha256
policy = p
copy_extensions = copy
[p]
commonName = supplied
"""


def bad_certs(pki, d):
    """expired.pem (valid chain, expired in 2020) and wrongname.pem (for
    wrong.example only), both signed by the test CA."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write(CA_CNF.format(d=d))
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "expired.key",
            "-out", "expired.csr", "-subj", "/CN=localhost", "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd=d)
    openssl("ca", "-batch", "-config", "ca.cnf", "-cert",
            os.path.join(pki, "ca.pem"), "-keyfile",
            os.path.join(pki, "ca.key"), "-in", "expired.csr", "-out",
            "expired.pem", "-startdate", "20200101000000Z", "-enddate",
            "20200201000000Z", "-notext", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout",
            "wrongname.key", "-out", "wrongname.csr", "-subj",
            "/CN=wrong.example", cwd=d)
    with open(os.path.join(d, "wrongname.ext"), "w") as f:
        f.write("subjectAltName=DNS:wrong.example\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "wrongname.csr", "-CA",
            os.path.join(pki, "ca.pem"), "-CAkey",
            os.path.join(pki, "ca.key"), "-CAcreateserial", "-out",
            "wrongname.pem", "-days", "30", "-extfile", "wrongname.ext",
            cwd=d)


def s_server(ctx, name, cert, key, *extra):
    """An openssl s_server on a free port (a new one while another
    process takes it first); returns (Proc, port)."""
    def attempt():
        port = free_port()
        p = Proc(ctx.suite, "s_server-" + name,
                 ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port,
                  "-cert", cert, "-key", key, "-naccept", "1000"] +
                 list(extra), cwd=ctx.dir, stdin=subprocess.PIPE)
        wait_listening(p, [port], "openssl s_server " + name, 10)
        return p, port
    return serve(ctx.suite, "openssl s_server " + name, attempt)


def tls11_works(pki, port):
    """Does the TLS 1.1-only server really speak TLS 1.1?"""
    r = subprocess.run(["openssl", "s_client", "-connect",
                        "127.0.0.1:%d" % port, "-tls1_1", "-cipher",
                        "DEFAULT:@SECLEVEL=0", "-CAfile",
                        os.path.join(pki, "ca.pem")],
                       input=b"", capture_output=True, timeout=10)
    return b"TLSv1.1" in r.stdout


# output name -> (what is wrong, words one of which the error must hold)
TLS_BAD = {
    "wrongca": ("an unrelated CA in ca_file", ("certificate", "verif")),
    "expired": ("an expired certificate", ("expired",)),
    "wrongname": ("a certificate for wrong.example",
                  ("hostname", "mismatch", "name")),
    "tls11": ("a server speaking TLS 1.1 only",
              ("protocol", "version", "tls")),
}


def check_hostile_siem(ctx):
    pki = ctx.suite.pki
    bd = os.path.join(ctx.dir, "badpki")
    bad_certs(pki, bd)
    srv = {}
    srv["wrongca"] = s_server(ctx, "wrongca", os.path.join(pki, "server.pem"),
                              os.path.join(pki, "server.key"))
    srv["expired"] = s_server(ctx, "expired", os.path.join(bd, "expired.pem"),
                              os.path.join(bd, "expired.key"))
    srv["wrongname"] = s_server(ctx, "wrongname",
                                os.path.join(bd, "wrongname.pem"),
                                os.path.join(bd, "wrongname.key"))
    srv["tls11"] = s_server(ctx, "tls11", os.path.join(pki, "server.pem"),
                            os.path.join(pki, "server.key"), "-tls1_1",
                            "-cipher", "DEFAULT:@SECLEVEL=0")
    if not tls11_works(pki, srv["tls11"][1]):
        raise Fail("the TLS 1.1 test server does not speak TLS 1.1")
    outs = [octet_tcp("good")]
    for name, (p, port) in srv.items():
        outs.append({"name": name, "transport": "tls", "format": "cef",
                     "address": "127.0.0.1:%d" % port,
                     "ca_file": "otherca.pem" if name == "wrongca" else
                     "ca.pem", "cert_file": "client.pem",
                     "key_file": "client.key"})
    conf = ctx.make_config(outputs=outs)
    d = Daemon(ctx.suite, ctx.dir, conf)
    d.start()
    ctx.daemon = d
    exp = ctx.expected()
    wait_delivered(ctx.suite, ctx.sng, "octet", lambda: exp, 30, daemon=d,
                   what="the good output's alerts while 4 TLS outputs "
                        "are refused")
    lines = {}

    def all_refused():
        d.alive()
        err = d.proc.stderr()
        for name, (_, words) in TLS_BAD.items():
            for w in words:
                ln = line_with(err, "output %s" % name, w)
                if ln is not None:
                    lines[name] = ln
                    break
        return len(lines) == len(TLS_BAD)
    try:
        wait_for(all_refused, 30, "a clear TLS error for every bad output")
    except Fail:
        missing = sorted(set(TLS_BAD) - set(lines))
        raise Fail("no clear error for output(s) %s (%s); stderr:\n%s"
                   % (missing, ", ".join(TLS_BAD[m][0] for m in missing),
                      tail(d.proc.stderr(), 30)))
    d.stop()
    for name, (p, _) in srv.items():
        p.stop()
        if "CEF:" in p.stdout():
            raise Fail("the %s server (%s) received events"
                       % (name, TLS_BAD[name][0]))
    # Plain http to a host that is not loopback: a configuration error.
    cd = os.path.join(ctx.dir, "plainhttp")
    os.makedirs(cd, exist_ok=True)
    for key in ("api_url", "login_url"):
        t = {"name": "far", "tenant_id": "far.onmicrosoft.com",
             "api_url": "https://api.securitycenter.microsoft.com",
             "login_url": "https://login.microsoftonline.com"}
        t[key] = "http://192.0.2.10"
        c = write_config(os.path.join(cd, key + ".conf"), cd,
                         {"state_dir": os.path.join(cd, "state"),
                          "control_socket": os.path.join(cd, "ctl.sock")},
                         [{"name": "siem", "transport": "tcp",
                           "address": "127.0.0.1:9"}], [t])
        for args in (("--check-config",), ("--once",)):
            rc, out, err = Daemon(ctx.suite, cd, c).run(*args, timeout=30)
            if rc != 78:
                raise Fail("%s = http://192.0.2.10: %s exited %d, "
                           "expected 78:\n%s" % (key, args[0], rc,
                                                 tail(out + err)))
            if not line_with(out + err, "http"):
                raise Fail("%s = http://192.0.2.10 refused without saying "
                           "why:\n%s" % (key, tail(out + err)))
        lines[key] = line_with(out + err, "http")
    for name in sorted(lines):
        ctx.note("%-9s %s" % (name, lines[name].strip()[:150]))


CASES.append({
    "name": "hostile_siem",
    "doc": "TLS outputs to a wrong CA, an expired certificate, a hostname "
           "mismatch and a TLS 1.1-only server are refused with a clear "
           "error while a good output delivers; plain http:// to a remote "
           "API host is a configuration error (78)",
    "fake": ["-t", "t1", "--alerts", "5", "--seed", "43"],
    "tenants": tenants(["t1"]),
    "outputs": [octet_tcp()],
    "pki": True,
    "check": check_hostile_siem,
})


# --------------------------------------------------------------------------
# 4. secrets: none of them anywhere the daemon writes or answers.

SECRET_WRONG = "Wr0ng~Hostile.secret_Kq2"
SMTP_PASSWORD = "Smtp~Passw0rd.value_Zr8"


def ctl_run(ctx, sock, *args):
    exe = os.path.join(ctx.suite.build, "alertrelayctl")
    if not os.access(exe, os.X_OK):
        return None
    r = subprocess.run([exe, "-s", sock] + list(args), capture_output=True,
                       timeout=30)
    return (r.stdout + r.stderr).decode("utf-8", "replace")


def files_text(root):
    """{path: bytes} of every regular file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    out[p] = fh.read()
    return out


def key_needles(path):
    """The base64 lines of a PEM private key: any one of them leaking is
    the key leaking."""
    with open(path) as f:
        return [x.strip() for x in f if x.strip() and
                not x.startswith("-----") and len(x.strip()) >= 40]


def check_secrets(ctx):
    d = ctx.dir
    tokfile = os.path.join(d, "tokens.log")
    sock = os.path.join(d, "ctl.sock")
    pwfile = os.path.join(d, "secrets", "smtp")
    os.makedirs(os.path.dirname(pwfile), mode=0o700, exist_ok=True)
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (SMTP_PASSWORD + "\n").encode())
    os.close(fd)
    notify = ('\n[notify "ops"]\nsmtp_url = smtp://127.0.0.1:9\n'
              'from = alertrelay@example.com\nto = soc@example.com\n'
              'username = relay\npassword_file = %s\nmin_severity = '
              'informational\n' % pwfile)
    metrics_port = ctx.start_daemon(extra=notify, metrics=True)
    d1, conf = ctx.daemon, ctx.conf
    good = [t for t in ctx.tenants() if t[0] != "bad"]
    exp = ctx.expected(only=[t[0] for t in good])
    wait_delivered(ctx.suite, ctx.sng, "tls", lambda: exp, 40, daemon=d1,
                   what="the first alerts over TLS")
    # Force new tokens: a 401 makes the daemon fetch another one.
    for name, _ in good:
        ctx.fake.fault(name, "401")
        ctx.fake.add_alerts(name, 3)
    exp = ctx.expected(only=[t[0] for t in good])
    wait_delivered(ctx.suite, ctx.sng, "tls", lambda: exp, 60, daemon=d1,
                   what="alerts after the forced token refresh")
    texts = {}
    st = ctl_run(ctx, sock, "status")
    if st is None:
        ctx.skip("alertrelayctl status not searched: alertrelayctl is not "
                 "built")
    else:
        texts["alertrelayctl status"] = st.encode()
        texts["alertrelayctl status --json"] = \
            ctl_run(ctx, sock, "status", "--json").encode()
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics"
                                    % metrics_port, timeout=10) as r:
            texts["metrics"] = r.read()
    except OSError as e:
        raise Fail("the daemon listens on metrics_listen 127.0.0.1:%d but "
                   "GET /metrics failed: %s" % (metrics_port, e))
    d1.stop()
    rc, out, err = Daemon(ctx.suite, d, conf).run("--check-config", "-v",
                                                  timeout=30)
    texts["--check-config"] = (out + err).encode()
    if "<redacted>" not in out + err:
        raise Fail("--check-config does not show the SMTP password as "
                   "<redacted>:\n%s" % tail(out + err))
    # A secret file readable by the group: refused, saying how to fix it.
    sf = os.path.join(d, "secrets", "t1")
    os.chmod(sf, 0o640)
    rc, out2, err2 = Daemon(ctx.suite, d, conf).run("--check-config",
                                                    timeout=30)
    os.chmod(sf, 0o600)
    if rc != 78 or not line_with(out2 + err2, sf, "chmod"):
        raise Fail("a group-readable secret file: exit %d, and no message "
                   "naming it with the chmod that fixes it:\n%s"
                   % (rc, tail(out2 + err2)))
    texts["--check-config (mode 0640)"] = (out2 + err2).encode()
    for i in range(1, d1.runs + 1):
        p = os.path.join(d, "alertrelayd.%d.stderr" % i)
        if os.path.exists(p):
            with open(p, "rb") as f:
                texts[p] = f.read()
    texts.update(files_text(os.path.join(d, "state")))
    texts.update(files_text(ctx.sng.dir))
    # What to look for.
    with open(tokfile) as f:
        tokens = [x.strip() for x in f if x.strip()]
    if len(tokens) < 2 * len(good):
        raise Fail("the fake issued %d tokens, expected at least %d (one "
                   "per tenant, and one more after the 401)"
                   % (len(tokens), 2 * len(good)))
    needles = {"client secret of " + t: "secret-" + t for t, _ in good}
    needles["the wrong secret"] = SECRET_WRONG
    needles["the SMTP password"] = SMTP_PASSWORD
    for i, tok in enumerate(tokens):
        needles["access token %d" % i] = tok
        for j, part in enumerate(tok.split(".")):
            if len(part) >= 16:
                needles["access token %d part %d" % (i, j)] = part
    for i, line in enumerate(key_needles(os.path.join(ctx.suite.pki,
                                                      "client.key"))):
        needles["client.key line %d" % i] = line
    found = []
    for where, data in texts.items():
        for what, n in needles.items():
            if n.encode() in data:
                found.append("%s in %s" % (what, where))
    if found:
        raise Fail("secrets found: %s" % "; ".join(found[:10]))
    ctx.note("searched %d places (stderr, status, metrics, check-config, "
             "state, spool, everything syslog-ng got) for %d secrets, "
             "%d tokens and the TLS key: none found"
             % (len(texts), len(good) + 2, len(tokens)))


CASES.append({
    "name": "secrets",
    "doc": "a full scenario (TLS with a client key, token refresh after "
           "401, a wrong secret, an SMTP password), then stderr, status, "
           "metrics, --check-config, state, spool and everything syslog-ng "
           "received hold no secret, token or key",
    "fake": ["-t", "t1", "-t", "t2", "-t", "bad", "--alerts", "10",
             "--seed", "44", "--token-log", "tokens.log"],
    "tenants": tenants(["t1", "t2"]) + [{"name": "bad",
                                         "label": "Customer bad Ltd",
                                         "secret": SECRET_WRONG}],
    "outputs": [{"name": "tls", "transport": "tls", "format": "cef",
                 "sink": "tls", "ca_file": "ca.pem",
                 "cert_file": "client.pem", "key_file": "client.key"},
                {"name": "json", "transport": "tcp", "format": "json",
                 "sink": "octet"}],
    "check": check_secrets,
})
