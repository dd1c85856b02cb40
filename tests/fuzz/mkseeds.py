#!/usr/bin/env python3
"""Regenerate tests/fuzz/seeds/<target>/ from the samples in tests/data
(the injection vectors included) and etc/ (run from the repository top);
nothing outside the repository is read.  Seeds are small, named by what
they hold, and committed; fuzzing corpora grow in build-fuzz/ instead."""

import json
import os
import struct

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SEEDS = os.path.join(TOP, "tests", "fuzz", "seeds")


def rd(*p):
    with open(os.path.join(*p), "rb") as f:
        return f.read()


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def vectors():
    with open(os.path.join(TOP, "tests", "data", "injection-vectors.json")) as f:
        return json.load(f)


def expand(spec):
    """The reference's compact forms: {"repeat", "count"}, {"concat"}."""
    if isinstance(spec, str):
        return spec
    if "concat" in spec:
        return "".join(expand(x) for x in spec["concat"])
    return spec["repeat"] * spec["count"]


def vector_bytes(v):
    if v.get("input_hex"):
        return bytes.fromhex(v["input_hex"])
    return expand(v["input"]).encode("utf-8", "surrogatepass")


def hostile_values():
    """The reference vectors plus our own, as raw bytes."""
    out = [(v["name"], vector_bytes(v)) for v in vectors()]
    out += [
        ("fake_record", b"x\n<13>1 2024-01-01T00:00:00Z h app - - - CEF:0|"
                        b"Evil|Evil|1|1|spoof|10|cs2=Other"),
        ("cs2_spoof", b"a cs2=Other Customer externalId=da1 act=created"),
        ("octet_prefix", b"57 <13>1 - - - - - - fake"),
        ("rtl", "abc\u202egpj.exe".encode()),
        ("nul", b"a\x00b"),
        ("lone_surrogate_utf8", b"\xed\xa0\x80"),
        ("overlong", b"\xc0\xaf\xe0\x80\xaf"),
        ("leef_delim", b"a^b=c\tusrName=root|x"),
    ]
    return out


def alert_seeds():
    """(name, alert bytes, source): MDE sample, graph page elements, and
    the sample with hostile values in string fields."""
    al = rd(TOP, "tests", "data", "alert-sample.json")
    out = [("mde-sample", al, "mde")]
    g = json.loads(rd(TOP, "tests", "data", "graph-page-sample.json"))
    for i, a in enumerate(g["value"][:2]):
        out.append(("graph-%d" % i, json.dumps(a).encode(), "graph"))
    base = json.loads(al)
    fields = ["title", "description", "category", "computerDnsName",
              "threatName", "detectionSource"]
    for i, (name, raw) in enumerate(hostile_values()[::3]):
        a = dict(base)
        s = raw.decode("utf-8", "surrogateescape")
        a[fields[i % len(fields)]] = s.encode("utf-8", "surrogateescape") \
            .decode("latin-1")
        out.append(("mde-" + name, json.dumps(a).encode(), "mde"))
    # JSON escapes the decoder must handle: \u0000, lone surrogates
    txt = al.decode()
    txt = txt.replace('"title": "', '"title": "\\u0000\\ud800x\\udc00', 1)
    out.append(("mde-escapes", txt.encode(), "mde"))
    return out


def main():
    # fuzz_pagesplit: whole pages
    for n in ("page-sample.json", "graph-page-sample.json"):
        put("fuzz_pagesplit", n, rd(TOP, "tests", "data", n))
    # fuzz_alert: data[0] & 1 chooses Graph: MDE seeds start with "\n"
    # (even), Graph ones with "{" (odd).
    for name, a, src in alert_seeds():
        put("fuzz_alert", name, (b"\n" if src == "mde" else b"") + a)
    # fuzz_encode: 8 control bytes, hostname NUL label NUL, the alert
    for fmt in range(3):
        for hdr in range(3):
            for name, a, src in alert_seeds()[:4]:
                bits = (1 << 4 if fmt == 0 else 0) | \
                    (1 << 5 if src == "graph" else 0)
                fl = next(x for x in range(128) if x % 3 == fmt and
                          (x >> 2) % 3 == hdr and x & 0x30 == bits)
                ctl = bytes([fl, 0, 0 if hdr else 2, 16]) + \
                    struct.pack(">I", 1700000000)
                put("fuzz_encode", "%s-f%d-h%d" % (name, fmt, hdr),
                    ctl + b"siem-host\0Customer | Ltd\0" + a)
    # fuzz_sanitize: raw hostile bytes
    for name, raw in hostile_values():
        if len(raw) <= 65536:       # run.sh's -max_len
            put("fuzz_sanitize", name, raw)
    # fuzz_config: the example config and the test configs
    put("fuzz_config", "alertrelay.conf", rd(TOP, "etc", "alertrelay.conf"))
    for root, _, files in os.walk(os.path.join(TOP, "tests", "data",
                                               "conf")):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f),
                                  os.path.join(TOP, "tests", "data"))
            put("fuzz_config", rel.replace("/", "_"), rd(root, f))
    # fuzz_oauth: token responses and error bodies (defender-api.md §3)
    put("fuzz_oauth", "token-v2", '{"token_type":"Bearer","expires_in":3599,'
        '"ext_expires_in":3599,"access_token":"eyJ0eXAi.eyJhdWQi.c2ln"}')
    put("fuzz_oauth", "token-v1-strings", '{"access_token":"eyJ0eXAiO",'
        '"token_type":"Bearer","expires_in":"3599","expires_on":'
        '"1388452167","resource":"https://service.contoso.com/"}')
    put("fuzz_oauth", "error-70011", json.dumps({
        "error": "invalid_scope",
        "error_description": "AADSTS70011: The provided value for the "
        "input parameter 'scope' is not valid.\r\nTrace ID: 255d1aef-8c98-"
        "452f-ac51-23d051240864\r\nCorrelation ID: fb3d2015-bc17-4bb9-"
        "bb85-30c5cf1aaaa7\r\nTimestamp: 2016-01-09 02:02:12Z",
        "error_codes": [70011], "timestamp": "2016-01-09 02:02:12Z",
        "trace_id": "255d1aef-8c98-452f-ac51-23d051240864",
        "correlation_id": "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7",
        "error_uri": "https://login.microsoftonline.com/error?code=70011"}))
    put("fuzz_oauth", "error-mde", '{"error":{"code":"ResourceNotFound",'
        '"message":"Machine 123123123 was not found","target":'
        '"43f4cb08-8fac-4b65-9db1-745c2ae65f3a"}}')
    # fuzz_state: [0] & 1 appends the crc line
    st = ("alertrelay-state 1\ncursor 17000000000000000\nsince "
          "16990000000000000\nhorizon 16980000000000000\nseen 2\n"
          "00000000000000aa 17000000000000000\n"
          "0123456789abcdef 16995000000000000\n")
    put("fuzz_state", "valid", b"\x01" + st.encode())
    put("fuzz_state", "none", b"\x01alertrelay-state 1\ncursor none\n"
        b"since none\nhorizon none\nseen 0\n")
    crc = "crc %08x\n" % 0  # wrong on purpose: the checksum path
    put("fuzz_state", "badcrc", b"\x00" + (st + crc).encode())
    # fuzz_spool: built records, resync garbage, ack, two segments
    recs = b"".join(bytes([len(p)]) + p for p in
                    (b"<134>1 - - - - - - CEF:0|a", b"x" * 40, b"",
                     b"second"))
    put("fuzz_spool", "built", b"\x01\0\0\0\0" + recs)
    put("fuzz_spool", "built-garbage", b"\x01\0\0\0\0" + recs[:20] +
        b"\xffARS1\x00\x00\x00\x00" + recs[20:])
    put("fuzz_spool", "built-ack-two", b"\x07\x26\0\0\0" + recs + recs)
    put("fuzz_spool", "raw-torn", b"\x00\0\0\0\0ARS1\x10\x00\x00\x00abc")


if __name__ == "__main__":
    main()
