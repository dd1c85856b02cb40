#!/usr/bin/env python3
"""delivered.py: which alert versions the fake cloud made visible reached
the SIEM (syslog-ng's file of CEF lines).

    delivered.py ALERTS_LOG LABEL=VERSIONS.json [LABEL=VERSIONS.json ...]

VERSIONS.json is the fake's GET /_control/versions?tenant=T answer (a list
of [id, lastUpdateTime]); LABEL is the tenant's label (CEF cs2).  A
version is delivered when a CEF line carries cs2=LABEL, externalId=id and
rt=lastUpdateTime in epoch milliseconds.  Prints "DELIVERED EXPECTED
DUPLICATES" (versions delivered more than once) and exits 0 when every
expected version was delivered, 1 otherwise.
"""
import calendar
import json
import re
import sys


def iso_to_ms(s):
    """'2024-05-06T07:08:09.1234567Z' -> epoch ms (truncated, as rt)."""
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z$",
                 s)
    if not m:
        raise SystemExit("delivered.py: unparsable timestamp %r" % s)
    secs = calendar.timegm(tuple(int(x) for x in m.group(1, 2, 3, 4, 5, 6))
                           + (0, 0, 0))
    return secs * 1000 + int(((m.group(7) or "") + "000")[:3])


def cef_ext(line):
    """The CEF extension of a line as a dict (values unescaped enough for
    cs2, externalId and rt)."""
    i = line.find("CEF:")
    if i < 0:
        return None
    head = line[i:]
    # Seven unescaped pipes end the header.
    n, j = 0, 0
    while n < 7 and j < len(head):
        if head[j] == "\\":
            j += 2
            continue
        if head[j] == "|":
            n += 1
        j += 1
    ext = head[j:]
    out = {}
    parts = re.split(r"(?<!\\) (?=[A-Za-z0-9_]+=)", ext)
    for p in parts:
        k, _, v = p.partition("=")
        out[k] = v.replace("\\=", "=").replace("\\\\", "\\")
    return out


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    got = {}
    with open(sys.argv[1], errors="replace") as f:
        for line in f:
            e = cef_ext(line.rstrip("\n"))
            if e is None or "rt" not in e:
                continue
            key = (e.get("cs2"), e.get("externalId"), e["rt"])
            got[key] = got.get(key, 0) + 1
    expected = set()
    for arg in sys.argv[2:]:
        label, _, path = arg.partition("=")
        with open(path) as f:
            for aid, lut in json.load(f):
                expected.add((label, aid, str(iso_to_ms(lut))))
    have = sum(1 for k in expected if k in got)
    dups = sum(1 for k in expected if got.get(k, 0) > 1)
    print("%d %d %d" % (have, len(expected), dups))
    return 0 if have == len(expected) and expected else 1


if __name__ == "__main__":
    sys.exit(main())
