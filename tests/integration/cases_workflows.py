"""Integration cases for the MSSP workflows of issue 7: LEEF and JSON
outputs checked by independent parsers, routing to two SIEMs with one of
them down, certificate (client-assertion) authentication verified by the
fake cloud, the Graph alerts_v2 source, e-mail notifications through a
fake SMTP server, and sharding over three daemons.  Loaded by harness.py
(every cases_*.py exports CASES)."""

import base64
import email
import email.policy
import hashlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from harness import (CLIENT_ID, Daemon, Fail, Proc, SyslogNg, compare,
                     free_port, iso_to_ms, log, serve, tail, wait_for,
                     wait_delivered, wait_listening)
from cases import (delivered, fake_tenants, header_value, octet_tcp, once,
                   sanitize, settle, stderr_line)

LINK = "https://security.microsoft.com/alerts/%s?tid=%s"
CEF_SEV = {"unspecified": "0", "informational": "1", "low": "3",
           "medium": "5", "high": "8"}


def rewrite_tenants(path, fn):
    """Edit the [tenant "NAME"] blocks of a written config: fn(name,
    lines) returns the block's new lines."""
    out, block, name = [], None, None
    for line in open(path).read().split("\n") + [None]:
        m = re.match(r'^\[tenant "([^"]+)"\]$', line or "")
        if block is not None and (line is None or line.startswith("[")):
            out += fn(name, block)
            block = None
        if line is None:
            break
        if m:
            name, block = m.group(1), [line]
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
    with open(path, "w") as f:
        f.write("\n".join(out))


def token(fake, tenant, scope):
    form = urllib.parse.urlencode({
        "grant_type": "client_credentials", "client_id": CLIENT_ID,
        "client_secret": "secret-" + tenant, "scope": scope}).encode()
    with urllib.request.urlopen("%s/%s/oauth2/v2.0/token"
                                % (fake.url, tenant), data=form,
                                timeout=10) as r:
        return json.loads(r.read())["access_token"]


# --------------------------------------------------------------------------
# formats: LEEF 2.0 and JSON, each read back by an independent parser.

LEEF_KEYS = {
    "devTime", "sev", "name", "start", "end", "deviceCustomDate1",
    "deviceCustomDate1Label", "externalId", "act", "cat",
    "sourceServiceName", "msg", "identHostName", "deviceExternalId",
    "usrName", "sntdom", "fname", "filePath", "fileHash", "src", "c6a2",
    "request", "cs1", "cs1Label", "cs2", "cs2Label", "cs3", "cs3Label",
    "cs4", "cs4Label", "cs5", "cs5Label", "cs6", "cs6Label", "cn1",
    "cn1Label", "cn2", "cn2Label", "cn3", "cn3Label", "flexString1",
    "flexString1Label", "flexString2", "flexString2Label",
}

HOSTILE = {"title": "Evil^title|with=pipes\\and\nnew line\ttab",
           "description": "line1\r\nline2^key=value\u0000end",
           "computerDnsName": "host^sev=10"}


def leef_value(v):
    """A value as LEEF carries it: sanitised, and the delimiter, CR, LF
    and TAB (LEEF has no escapes) replaced by spaces."""
    return re.sub(r"[\^\r\n\t]", " ", sanitize(v))


def leef_split(msg):
    """A LEEF 2.0 event as QRadar reads it: 6 header fields split on '|',
    then key=value pairs split on the declared delimiter."""
    if not msg.startswith("LEEF:2.0|"):
        raise Fail("not LEEF 2.0: %r" % msg[:120])
    if "\n" in msg or "\r" in msg:
        raise Fail("LEEF message with a raw CR/LF: %r" % msg[:200])
    parts = msg.split("|", 6)
    if len(parts) != 7:
        raise Fail("LEEF header has %d fields: %r" % (len(parts), msg[:200]))
    _, vendor, product, version, event_id, delim, rest = parts
    if delim != "^":
        raise Fail("LEEF delimiter %r, expected ^" % delim)
    attrs = {}
    for pair in rest.split(delim):
        k, sep, v = pair.partition("=")
        if not sep or not re.match(r"^[A-Za-z][A-Za-z0-9]*$", k):
            raise Fail("LEEF attribute %r is not key=value: %r"
                       % (pair[:80], msg[:300]))
        if k in attrs:
            raise Fail("LEEF key %s appears twice in %r" % (k, msg[:300]))
        if k not in LEEF_KEYS:
            raise Fail("unexpected LEEF key %r (value injected?) in %r"
                       % (k, msg[:300]))
        attrs[k] = v
    return (vendor, product, version, event_id), attrs


class JsonSng:
    """A second, real syslog-ng that runs every message through its
    json-parser; what it cannot parse lands in bad.txt."""

    CONF = """@version: 3.38
options {{ keep-hostname(yes); use-dns(no); stats-freq(0);
  log-msg-size(262144); flush-lines(1); }};
source s {{ network(ip("127.0.0.1") port({port}) transport("tcp")
  flags(syslog-protocol) log-msg-size(262144)); }};
parser p {{ json-parser(prefix(".j.")); }};
destination ok {{ file("{dir}/ok.json" template("$(format-json --scope none \
--pair schema=${{.j.schema}} --pair event=${{.j.event}} \
--pair label=${{.j.tenant.label}} --pair id=${{.j.alert.id}} \
--pair lut=${{.j.alert.lastUpdateTime}} --pair title=${{.j.alert.title}})\n"));
}};
destination bad {{ file("{dir}/bad.txt" template("$MSG\\n")); }};
log {{ source(s); parser(p); destination(ok); flags(final); }};
log {{ source(s); destination(bad); }};
"""

    def __init__(self, ctx):
        self.dir = os.path.join(ctx.dir, "sng-json")
        os.makedirs(self.dir, exist_ok=True)
        self.ctx = ctx
        self.starts = 0
        serve(ctx.suite, "json syslog-ng", self.start)

    def start(self):
        """On a new port each time (serve: while another process takes
        it first)."""
        self.port = free_port()
        conf = os.path.join(self.dir, "syslog-ng.conf")
        with open(conf, "w") as f:
            f.write(self.CONF.format(port=self.port, dir=self.dir))
        self.starts += 1
        self.proc = Proc(self.ctx.suite, "syslog-ng-json.%d" % self.starts,
                         ["syslog-ng", "-F", "-f", conf,
                          "-R", os.path.join(self.dir, "persist"),
                          "-p", os.path.join(self.dir, "pid"),
                          "-c", os.path.join(self.dir, "ctl"),
                          "--no-caps"], cwd=self.dir)
        wait_listening(self.proc, [self.port], "json syslog-ng", 10)

    def read(self, name):
        try:
            with open(os.path.join(self.dir, name), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def rows(self):
        return [json.loads(r) for r in self.read("ok.json").split("\n")
                if r]


def sanitized(v):
    """The API's alert as the JSON output carries it: every string
    sanitised like CEF values (SPEC §4), nothing else changed."""
    if isinstance(v, dict):
        return {k: sanitized(x) for k, x in v.items()}
    if isinstance(v, list):
        return [sanitized(x) for x in v]
    return sanitize(v) if isinstance(v, str) else v


def check_formats(ctx):
    js = JsonSng(ctx)
    with open(ctx.conf, "a") as f:
        f.write('\n[output "json-parser"]\ntransport = tcp\nformat = json\n'
                'framing = newline\naddress = 127.0.0.1:%d\n' % js.port)
    hostile = ctx.fake.add_alerts("t1", 1, HOSTILE)["ids"][0]
    once(ctx)
    settle(ctx, "octet")
    settle(ctx, "lf")
    exp = ctx.expected()
    labels = {t["name"]: t["label"] for t in ctx.case["tenants"]}
    api = {tid: ctx.fake.alerts(tid) for tid in labels}

    # JSON (octet source): Python's json, and the alert object untouched.
    jdone = set()
    for r in ctx.sng.messages("octet"):
        if r.get("PROGRAM") == "harness":
            continue
        try:
            ev = json.loads(r["MESSAGE"])
        except ValueError as e:
            raise Fail("JSON output is not JSON (%s): %r"
                       % (e, r["MESSAGE"][:300]))
        if ev.get("schema") != "alertrelay.alert.v1" or \
                ev.get("event") != "created":
            raise Fail("JSON envelope schema/event wrong: %r"
                       % r["MESSAGE"][:200])
        t = ev["tenant"]
        if labels.get(t.get("name")) != t.get("label") or \
                t.get("id") != t.get("name"):
            raise Fail("JSON tenant object wrong: %r" % t)
        if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$",
                        ev.get("forwarded_at", "")):
            raise Fail("forwarded_at is not RFC 3339: %r"
                       % ev.get("forwarded_at"))
        a = ev["alert"]
        if a != sanitized(api[t["name"]][a["id"]]):
            raise Fail("JSON alert %s differs from what the API served "
                       "(strings sanitised)" % a["id"])
        jdone.add((t["label"], a["id"], iso_to_ms(a["lastUpdateTime"])))
    if jdone != exp:
        raise Fail("JSON output: %d versions, expected %d"
                   % (len(jdone), len(exp)))

    # The same through syslog-ng's json-parser.
    wait_for(lambda: len(js.rows()) >= len(exp) or js.read("bad.txt"),
             20, "syslog-ng's json-parser to see every message")
    if js.read("bad.txt"):
        raise Fail("syslog-ng's json-parser rejected messages: %r"
                   % js.read("bad.txt")[:300])
    rows = js.rows()
    got = set((r["label"], r["id"], iso_to_ms(r["lut"])) for r in rows)
    if len(rows) != len(exp) or got != exp or \
            any(r["schema"] != "alertrelay.alert.v1" or
                r["event"] != "created" for r in rows):
        raise Fail("json-parser saw %d rows (%d distinct) for %d versions"
                   % (len(rows), len(got), len(exp)))
    title = [r["title"] for r in rows if r["id"] == hostile]
    want = sanitize(api["t1"][hostile]["title"])
    if title != [want]:
        raise Fail("json-parser read the hostile title as %r, expected %r"
                   % (title, want))

    # LEEF (lf source): split check, fields against the API.
    seen = set()
    for r in ctx.sng.messages("lf"):
        if r.get("PROGRAM") == "harness":
            continue
        hdr, at = leef_split(r["MESSAGE"])
        if hdr[:3] != ("Microsoft", "Microsoft Defender for Endpoint",
                       "1.0"):
            raise Fail("LEEF vendor/product/version %r" % (hdr[:3],))
        tid = at.get("cs3")
        a = api.get(tid, {}).get(at.get("externalId"))
        if a is None:
            raise Fail("LEEF event for an unknown alert: %r" % at)
        want = {
            "devTime": str(iso_to_ms(a["lastUpdateTime"])),
            "sev": CEF_SEV[a["severity"].lower()],
            "cs2": leef_value(labels[tid]), "cs2Label": "Customer",
            "flexString1": LINK % (a["id"], tid), "act": "created",
            "name": leef_value(a.get("title") or "-"),
        }
        if a.get("computerDnsName"):
            want["identHostName"] = leef_value(a["computerDnsName"])
        if (a.get("relatedUser") or {}).get("userName"):
            want["usrName"] = leef_value(a["relatedUser"]["userName"])
        for k, v in want.items():
            if at.get(k) != v:
                raise Fail("LEEF %s=%r for alert %s, expected %r"
                           % (k, at.get(k), a["id"], v))
        seen.add((labels[tid], a["id"], int(at["devTime"])))
        if a["id"] == hostile and ("\n" in at.get("name", "") or
                                   "^" in at.get("name", "")):
            raise Fail("hostile title not neutralised: %r" % at["name"])
    if seen != exp:
        raise Fail("LEEF output: %d versions, expected %d"
                   % (len(seen), len(exp)))
    ctx.note("%d versions each as JSON (python + syslog-ng json-parser) "
             "and LEEF 2.0 (split check), hostile alert included"
             % len(exp))


# --------------------------------------------------------------------------
# routing: outputs = a,b with b down for a while; min_severity; enabled.

def check_routing(ctx):
    sng_b = SyslogNg(ctx.suite, os.path.join(ctx.dir, "b"))
    with open(ctx.conf) as f:
        text = f.read()
    with open(ctx.conf, "w") as f:
        f.write(text.replace("@B@", sng_b.address("octet")))
    d = ctx.daemon
    d.start()
    both = ["r1"]
    a_exp = lambda: ctx.expected(only=["r1"]) | high_only(ctx, "r2")
    wait_delivered(ctx.suite, ctx.sng, "octet", a_exp, 60, daemon=d,
                   what="output a to receive r1 and r2's High alerts")
    ctx.fake.add_alerts("r1", 5)
    ctx.fake.add_alerts("r2", 3, {"severity": "High"})
    ctx.fake.add_alerts("r2", 3, {"severity": "Low"})
    ctx.fake.add_alerts("r3", 2)
    wait_delivered(ctx.suite, ctx.sng, "octet", a_exp, 60, daemon=d,
                   what="output a to receive the new alerts")
    time.sleep(2)   # b has been down all along; now it comes up
    sng_b.start()
    dels_b = wait_delivered(ctx.suite, sng_b, "octet",
                            lambda: ctx.expected(only=both), 90, daemon=d,
                            what="output b to catch up after its outage")
    d.stop()
    settle(ctx, "octet")
    compare(a_exp(), delivered(ctx, "octet"))
    compare(ctx.expected(only=both), dels_b, allow_dups=True)
    sng_b.stop()
    ctx.note("a: %d versions exactly once (r2 High only, r3 disabled); "
             "b: all %d of r1 after being down" % (len(a_exp()),
                                                 len(dels_b)))


def high_only(ctx, tid):
    label = [t[1] for t in ctx.tenants() if t[0] == tid][0]
    api = ctx.fake.alerts(tid)
    return set((label, aid, rt) for aid, rt in ctx.fake.versions(tid)
               if api[aid]["severity"] == "High")


# --------------------------------------------------------------------------
# cert_auth: client-assertion JWTs verified by the fake.

def make_cert(d, name, days=20):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", name + ".key", "-out",
                    name + ".pem", "-days", str(days), "-subj",
                    "/CN=alertrelay app %s" % name], cwd=d, check=True,
                   capture_output=True)
    os.chmod(os.path.join(d, name + ".key"), 0o600)
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def thumb(pem, alg):
    der = subprocess.run(["openssl", "x509", "-in", pem, "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return b64u(hashlib.new(alg, der).digest())


def sign_jwt(d, key, hdr, claims, pss):
    """A JWT signed by the openssl CLI (independent of lib/jwt.c)."""
    data = (b64u(json.dumps(hdr).encode()) + "." +
            b64u(json.dumps(claims).encode())).encode()
    argv = ["openssl", "dgst", "-sha256", "-sign", key]
    if pss:
        argv += ["-sigopt", "rsa_padding_mode:pss",
                 "-sigopt", "rsa_pss_saltlen:digest"]
    sig = subprocess.run(argv, input=data, capture_output=True,
                         check=True, cwd=d).stdout
    return data.decode() + "." + b64u(sig)


def post_assertion(fake, tenant, jwt):
    form = urllib.parse.urlencode({
        "grant_type": "client_credentials", "client_id": CLIENT_ID,
        "scope": "https://api.securitycenter.microsoft.com/.default",
        "client_assertion_type":
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": jwt}).encode()
    try:
        with urllib.request.urlopen("%s/%s/oauth2/v2.0/token"
                                    % (fake.url, tenant), data=form,
                                    timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def check_fake_verifier(ctx, pem, key, other_key):
    """The fake's verifier accepts RS256+x5t and PS256+x5t#S256 made by
    openssl, and rejects what Entra rejects."""
    now = int(time.time())
    aud = "%s/c1/oauth2/v2.0/token" % ctx.fake.url

    def claims(**kw):
        c = {"aud": aud, "iss": CLIENT_ID, "sub": CLIENT_ID,
             "jti": "jti-%d-%s" % (time.monotonic_ns(), kw.get("n", "")),
             "nbf": now, "iat": now, "exp": now + 600}
        c.update(kw.pop("c", {}))
        return c
    rs = {"alg": "RS256", "typ": "JWT", "x5t": thumb(pem, "sha1")}
    ps = {"alg": "PS256", "typ": "JWT", "x5t#S256": thumb(pem, "sha256")}
    fixed = claims(n="fixed")
    tries = [
        ("RS256 + x5t", rs, fixed, False, key, 200, None),
        ("PS256 + x5t#S256", ps, claims(), True, key, 200, None),
        ("replayed jti", rs, fixed, False, key, 401, 700027),
        ("PS256 with only x5t", dict(ps, **{"x5t#S256": None}),
         claims(), True, key, 401, 700027),
        ("RS256 signed by another key", rs, claims(), False, other_key,
         401, 700027),
        ("PKCS#1 signature labelled PS256", ps, claims(), False, key, 401,
         700027),
        ("expired", rs, claims(c={"exp": now - 60}), False, key, 401,
         700024),
        ("wrong aud", rs, claims(c={"aud": aud.replace("c1", "c3")}),
         False, key, 401, 700027),
        ("iss not the client", rs, claims(c={"iss": "someone"}), False,
         key, 401, 700027),
    ]
    for what, h, c, pss, k, status, code in tries:
        h = {kk: vv for kk, vv in h.items() if vv is not None}
        st, body = post_assertion(ctx.fake, "c1",
                                  sign_jwt(ctx.dir, k, h, c, pss))
        if st != status or (code and body.get("error_codes") != [code]):
            raise Fail("fake token endpoint: %s -> HTTP %d %s, expected "
                       "%d %s" % (what, st, body.get("error_codes"),
                                  status, code))


def check_cert_auth(ctx):
    pem, key = ctx.case["_cert"]
    _, other_key = make_cert(ctx.dir, "other")
    check_fake_verifier(ctx, pem, key, other_key)
    err = once(ctx, expect_rc=1)
    settle(ctx, "octet")
    compare(ctx.expected(only=["c1", "c3"]), delivered(ctx, "octet"))
    line = stderr_line(err, "c2", "AADSTS700027", what="the wrong cert")
    wrong_thumb = subprocess.run(
        ["openssl", "x509", "-in", os.path.join(ctx.dir, "wrong.pem"),
         "-noout", "-fingerprint", "-sha1"], capture_output=True,
        text=True).stdout.strip().split("=")[-1].replace(":", "")
    if wrong_thumb not in line or "not registered" not in line:
        raise Fail("the AADSTS700027 message names neither the thumbprint "
                   "%s nor what to do: %s" % (wrong_thumb, line))
    cline = stderr_line(err, "c1", "certificate", "expires on",
                        what="the 30-day certificate expiry warning")
    # A certificate valid for 20 days is 19 or 20 whole days from expiry,
    # depending on the second it was made in.
    if not re.search(r"\(in (19|20) days\)", cline):
        raise Fail("the certificate expiry warning does not say it "
                   "expires in 19-20 days: %s" % cline)
    stderr_line(err, "c3", "secret", "expires on", "secret_expires",
                what="the secret_expires warning")
    with open(key) as f:
        body = "".join(f.read().split("\n")[1:3])
    if body[:40] in err:
        raise Fail("private key material in stderr")
    reqs = [x for x in ctx.fake.log().split("\n") if "/oauth2/" in x]
    ctx.note("c1 authenticated by certificate (RS256/x5t verified by the "
             "fake); c2: %s; %d token requests" % (line.strip()[:90],
                                                   len(reqs)))


def setup_cert_case(ctx):
    pem, key = make_cert(ctx.dir, "app")
    wpem, wkey = make_cert(ctx.dir, "wrong")
    ctx.case["_cert"] = (pem, key)
    ctx.fake_args = ["--client-cert", pem]

    def fix(name, lines):
        if name == "c3":
            return lines + ["secret_expires = %s" % time.strftime(
                "%Y-%m-%d", time.gmtime(time.time() + 10 * 86400))]
        if name not in ("c1", "c2"):
            return lines
        lines = [x for x in lines if not x.startswith("client_secret_file")]
        p, k = (pem, key) if name == "c1" else (wpem, wkey)
        return lines + ["certificate_file = %s" % p,
                        "private_key_file = %s" % k]
    rewrite_tenants(ctx.conf, fix)


# --------------------------------------------------------------------------
# graph: source = graph against the fake's alerts_v2.

def graph_alerts(fake, tenant):
    tok = token(fake, tenant, "https://graph.microsoft.com/.default")
    url = "%s/v1.0/security/alerts_v2?%s" % (fake.url, urllib.parse.urlencode(
        {"$top": 1000}))
    out = {}
    while url:
        req = urllib.request.Request(
            url, headers={"Authorization": "Bearer " + tok})
        with urllib.request.urlopen(req, timeout=30) as r:
            page = json.loads(r.read())
        for a in page["value"]:
            out[a["id"]] = a
        url = page.get("@odata.nextLink")
    return out


def first_ev(a, kind, *path):
    for e in a.get("evidence") or []:
        if e.get("@odata.type") == "#microsoft.graph.security." + kind:
            v = e
            for p in path:
                v = (v or {}).get(p)
            return v or None
    return None


def check_graph(ctx):
    once(ctx)
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(ctx.expected(), dels)
    reqs = [x for x in ctx.fake.log().split("\n") if " g1 " in x]
    api = graph_alerts(ctx.fake, "g1")
    bad = []
    for d in dels:
        a = api[d.id]
        ext = d.ext
        want = {
            "rt": str(iso_to_ms(a["lastUpdateDateTime"])),
            "cat": a.get("category"), "cs3": a.get("tenantId"),
            "cs4": a.get("status"),
            "flexString1": LINK % (a["id"], a.get("tenantId")),
            "cn1": a.get("incidentId"),
            "shost": first_ev(a, "deviceEvidence", "deviceDnsName"),
            "deviceExternalId": first_ev(a, "deviceEvidence",
                                         "mdeDeviceId"),
            "suser": first_ev(a, "userEvidence", "userAccount",
                              "accountName"),
        }
        for k, v in want.items():
            if v is not None and ext.get(k) != str(v):
                bad.append("%s: %s=%r, expected %r" % (a["id"], k,
                                                       ext.get(k), v))
        if d.cef.get("Name") != a["title"]:
            bad.append("%s: name %r" % (a["id"], d.cef.get("Name")))
        if d.cef.get("Severity") != CEF_SEV[a["severity"].lower()]:
            bad.append("%s: severity %r for %s" % (a["id"],
                       d.cef.get("Severity"), a["severity"]))
    if bad:
        raise Fail("%d Graph fields mapped wrongly, e.g.\n%s"
                   % (len(bad), "\n".join(bad[:6])))
    graph = [x for x in reqs if "/v1.0/security/alerts_v2" in x]
    if not graph or any("lastUpdateDateTime" not in x for x in graph
                        if "skiptoken" not in x.lower()):
        raise Fail("the daemon did not poll alerts_v2 on "
                   "lastUpdateDateTime: %s" % reqs[:5])
    if len(graph) < 3 or not any("skiptoken" in x.lower() for x in graph):
        raise Fail("expected @odata.nextLink paging (page_size 10, 35 "
                   "alerts); requests: %s" % graph)
    ctx.note("%d Graph alerts mapped to CEF over %d alerts_v2 pages"
             % (len(dels), len(graph)))


# --------------------------------------------------------------------------
# email: fakesmtp; severity/tenant filter; max_per_hour + digest; restart.

class FakeSmtp:
    def __init__(self, ctx, auth="relay:Sm7p-pass"):
        self.ctx = ctx
        self.dir = os.path.join(ctx.dir, "mail")
        self.fail_file = os.path.join(ctx.dir, "smtp-fail")
        exe = os.path.join(ctx.suite.build, "tests", "fakes", "fakesmtp")
        if not os.access(exe, os.X_OK):
            raise Fail("%s is not built" % exe)
        self.proc = Proc(ctx.suite, "fakesmtp",
                         [exe, "-v", "-d", self.dir, "-p", "0", "--auth",
                          auth, "--fail-file", self.fail_file], cwd=ctx.dir)

        def port():
            m = re.search(r"^port=(\d+)$", self.proc.stdout(), re.M)
            return int(m.group(1)) if m else None
        self.port = wait_for(port, 10, "fakesmtp to print port=")

    def mails(self):
        out = []
        for f in sorted(os.listdir(self.dir)):
            if f.endswith(".eml"):
                with open(os.path.join(self.dir, f), "rb") as fh:
                    out.append(email.message_from_bytes(
                        fh.read(), policy=email.policy.default))
        return out

    def fail(self, on):
        if on:
            open(self.fail_file, "w").close()
        elif os.path.exists(self.fail_file):
            os.unlink(self.fail_file)


def mail_ids(m):
    return re.findall(r"alerts/([^?\s]+)\?tid=", m.get_content())


def check_email(ctx):
    smtp = FakeSmtp(ctx)
    pw = os.path.join(ctx.dir, "smtp-password")
    fd = os.open(pw, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"Sm7p-pass\n")
    os.close(fd)
    with open(ctx.conf, "a") as f:
        f.write('\n[notify "soc"]\nsmtp_url = smtp://127.0.0.1:%d\n'
                'from = relay@mssp.example\n'
                'to = soc@mssp.example, oncall@mssp.example\n'
                'username = relay\npassword_file = %s\n'
                'min_severity = high\ntenants = m1\nmax_per_hour = 2\n'
                'digest_interval = 3s\n' % (smtp.port, pw))
    d = ctx.daemon
    d.start()
    evil = "Injected\r\nBcc: attacker@evil.example\r\nX-Evil: 1"
    high = ctx.fake.add_alerts("m1", 4, {"severity": "High"})["ids"]
    high += ctx.fake.add_alerts("m1", 1, {"severity": "High",
                                          "title": evil})["ids"]
    low = ctx.fake.add_alerts("m1", 2, {"severity": "Medium"})["ids"]
    other = ctx.fake.add_alerts("m2", 1, {"severity": "High"})["ids"]
    wait_for(lambda: len(smtp.mails()) >= 3, 40, "2 mails and a digest")
    time.sleep(4)       # a little longer: nothing more may come
    ms = smtp.mails()
    singles = [m for m in ms if "Digest" not in m["Subject"]]
    digests = [m for m in ms if "Digest" in m["Subject"]]
    if len(singles) != 2 or len(digests) != 1:
        raise Fail("expected 2 single mails and 1 digest, got %s"
                   % [m["Subject"] for m in ms])
    api = ctx.fake.alerts("m1")
    for m in singles:
        (aid,) = mail_ids(m)
        want = "[alertrelay] High: %s \u2014 Customer m1 Ltd" \
            % header_value(api[aid]["title"])
        if m["Subject"] != want:
            raise Fail("subject %r, expected %r" % (m["Subject"], want))
        body = m.get_content()
        for s in (LINK % (aid, "m1"), "Customer m1 Ltd", "High",
                  api[aid].get("computerDnsName") or "", "Status:"):
            if s not in body:
                raise Fail("mail for %s lacks %r:\n%s" % (aid, s, body))
        if m["X-Envelope-To"] != "soc@mssp.example, oncall@mssp.example" \
                or "oncall@mssp.example" not in m["To"]:
            raise Fail("recipients: envelope %r, To %r"
                       % (m["X-Envelope-To"], m["To"]))
        if not re.match(r"^<[0-9a-f]{32}\.alertrelay@mssp\.example>$",
                        m["Message-ID"]):
            raise Fail("Message-ID %r" % m["Message-ID"])
    dig_ids = mail_ids(digests[0])
    if "3 alerts" not in digests[0]["Subject"] or \
            sorted(dig_ids + [mail_ids(m)[0] for m in singles]) != \
            sorted(high):
        raise Fail("digest %r holds %s; singles + digest should be the 5 "
                   "High alerts %s" % (digests[0]["Subject"], dig_ids,
                                       high))
    for m in ms:
        if m["Bcc"] is not None or m["X-Evil"] is not None:
            raise Fail("header injection from an alert title: %r"
                       % m.items())
        for i in low + other:
            if i in m.get_content():
                raise Fail("alert %s (filtered out) was mailed" % i)

    # SMTP fails: retried, then sent once; a restart sends nothing twice.
    smtp.fail(True)
    late = ctx.fake.add_alerts("m1", 1, {"severity": "High"})["ids"][0]
    wait_for(lambda: "451" in d.proc.stderr(), 30, "a logged SMTP 451")
    d.stop()
    smtp.fail(False)
    d.start()
    wait_for(lambda: any(late in mail_ids(m) for m in smtp.mails()), 30,
             "the mail queued before the restart")
    time.sleep(5)
    d.stop()
    ms = smtp.mails()
    ids = [i for m in ms for i in mail_ids(m)]
    dup = set(i for i in ids if ids.count(i) > 1)
    msgids = [m["Message-ID"] for m in ms]
    if dup or len(set(msgids)) != len(msgids):
        raise Fail("alerts mailed more than once: %s" % dup)
    last = [m for m in ms if late in mail_ids(m)][0]
    if "Digest" not in last["Subject"]:
        raise Fail("the hourly budget was forgotten across the restart: "
                   "%r went out as a single mail" % last["Subject"])
    err = d.proc.stderr() + "".join(
        open(os.path.join(ctx.dir, f)).read() for f in os.listdir(ctx.dir)
        if f.startswith("alertrelayd.") and f.endswith(".stderr"))
    if "Sm7p-pass" in err:
        raise Fail("the SMTP password appears in the daemon's stderr")
    ctx.note("%d mails: 2 single + digest of 3, filters held, no header "
             "injection; SMTP 451 retried, nothing sent twice across a "
             "restart" % len(ms))


# --------------------------------------------------------------------------
# sharding: three daemons with shard K/3 on one config.

def check_sharding(ctx):
    base = open(ctx.conf).read()
    daemons = []
    for k in (1, 2, 3):
        text = base.replace(os.path.join(ctx.dir, "state"),
                            os.path.join(ctx.dir, "state%d" % k))
        text = text.replace(os.path.join(ctx.dir, "ctl.sock"),
                            os.path.join(ctx.dir, "ctl%d.sock" % k))
        text = text.replace("[daemon]\n", "[daemon]\nshard = %d/3\n" % k, 1)
        path = os.path.join(ctx.dir, "shard%d.conf" % k)
        with open(path, "w") as f:
            f.write(text)
        dm = Daemon(ctx.suite, ctx.dir, path, name="alertrelayd-%d" % k)
        dm.start("--once")
        daemons.append(dm)
    counts = []
    for dm in daemons:
        rc = dm.proc.wait(120)
        dm.proc.close()
        ctx.suite.check_sanitizer(dm.proc)
        err = dm.proc.stderr()
        if rc != 0:
            raise Fail("%s exited %s:\n%s" % (dm.name, rc, tail(err)))
        m = re.search(r"started: (\d+) tenants", err)
        if not m:
            raise Fail("%s did not log how many tenants it polls:\n%s"
                       % (dm.name, tail(err)))
        counts.append(int(m.group(1)))
    if sum(counts) != 30 or min(counts) == 0:
        raise Fail("shards polled %s tenants; expected a split of 30 with "
                   "none empty" % counts)
    settle(ctx, "octet")
    dels = delivered(ctx, "octet")
    compare(ctx.expected(), dels)
    ctx.note("30 tenants split %s over 3 daemons; %d versions, each "
             "exactly once" % (counts, len(dels)))


# --------------------------------------------------------------------------

def with_setup(setup, check):
    """Run setup(ctx), which edits the written config and may set
    ctx.fake_args (files made by setup), then restart the fake with them
    and check(ctx)."""
    def run(ctx):
        ctx.fake_args = None
        setup(ctx)
        if ctx.fake_args:
            from harness import FakeCloud
            ctx.fake.proc.stop()
            for f in ("stdout", "stderr"):
                os.rename(os.path.join(ctx.dir, "fakecloud." + f),
                          os.path.join(ctx.dir, "fakecloud.0." + f))
            old = ctx.fake.url
            ctx.fake = FakeCloud(ctx.suite, ctx.dir,
                                 ctx.case["fake"] + ctx.fake_args)
            with open(ctx.conf) as f:
                text = f.read()
            with open(ctx.conf, "w") as f:
                f.write(text.replace(old, ctx.fake.url))
        check(ctx)
    return run


FMT_T = [{"name": "t1", "label": "Customer ^t1|Ltd"},
         {"name": "t2", "label": "Customer t2 Ltd"}]
ROUTE_T = [{"name": "r1", "label": "Customer r1 Ltd", "outputs": "a, b"},
           {"name": "r2", "label": "Customer r2 Ltd", "outputs": "a",
            "min_severity": "high"},
           {"name": "r3", "label": "Customer r3 Ltd", "enabled": "no"}]
CERT_T = [{"name": "c1", "label": "Customer c1 Ltd"},
          {"name": "c2", "label": "Customer c2 Ltd"},
          {"name": "c3", "label": "Customer c3 Ltd"}]
SHARD_T = [{"name": "tenant-%04d" % i, "label": "Shard customer %d" % i}
           for i in range(1, 31)]

CASES = [
    {
        "name": "formats",
        "doc": "LEEF 2.0 (split check) and JSON (python json and "
               "syslog-ng json-parser) outputs with a hostile alert",
        "fake": fake_tenants(FMT_T) + ["--alerts", "15", "--seed", "71"],
        "tenants": FMT_T,
        "outputs": [{"name": "json", "transport": "tcp", "format": "json",
                     "framing": "octet-counting", "sink": "octet"},
                    {"name": "leef", "transport": "tcp", "format": "leef",
                     "framing": "newline", "sink": "lf"}],
        "check": check_formats,
    },
    {
        "name": "routing",
        "doc": "outputs = a,b with b down for a while: b catches up; "
               "min_severity and enabled per tenant",
        "fake": fake_tenants(ROUTE_T) + ["--alerts", "12", "--seed", "72"],
        "tenants": ROUTE_T,
        "outputs": [octet_tcp("a"),
                    {"name": "b", "transport": "tcp", "format": "cef",
                     "framing": "octet-counting", "address": "@B@"}],
        "check": check_routing,
    },
    {
        "name": "cert_auth",
        "doc": "certificate auth: RS256/x5t assertion verified by the "
               "fake; wrong cert -> AADSTS700027 named; expiry warnings",
        "fake": fake_tenants(CERT_T) + ["--alerts", "10", "--seed", "73"],
        "tenants": CERT_T,
        "outputs": [octet_tcp()],
        "check": with_setup(setup_cert_case, check_cert_auth),
    },
    {
        "name": "graph_source",
        "doc": "source = graph: alerts_v2 on lastUpdateDateTime with "
               "nextLink paging, Graph fields mapped to CEF",
        "fake": ["-t", "g1", "--alerts", "35", "--seed", "74"],
        "tenants": [{"name": "g1", "label": "Graph customer",
                     "source": "graph"}],
        "daemon": {"page_size": "10"},
        "outputs": [octet_tcp()],
        "check": check_graph,
    },
    {
        "name": "email",
        "doc": "[notify] via fakesmtp: subject/link, severity and tenant "
               "filters, max_per_hour 2 + digest, SMTP 451 retried, "
               "restart sends nothing twice",
        "fake": ["-t", "m1", "-t", "m2"],
        "tenants": [{"name": "m1", "label": "Customer m1 Ltd"},
                    {"name": "m2", "label": "Customer m2 Ltd"}],
        "outputs": [octet_tcp()],
        "check": check_email,
    },
    {
        "name": "sharding",
        "doc": "three daemons with shard 1/3, 2/3, 3/3 on one config and "
               "30 tenants: every alert forwarded exactly once",
        "fake": ["--tenants", "30", "--alerts", "4", "--seed", "76"],
        "tenants": SHARD_T,
        "outputs": [octet_tcp()],
        "check": check_sharding,
    },
]
