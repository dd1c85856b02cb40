#!/bin/sh
# docs_check.sh: every configuration key the parser accepts (the key tables
# of lib/conf.c) must be documented, in its section, in lib/alertrelay.conf.5
# and in the example etc/alertrelay.conf; the man pages must render without
# warnings.  Run from the top of the tree; exits non-zero listing what is
# missing.
set -eu

top=${1:-.}
cd "$top"
status=0

python3 - lib/conf.c lib/alertrelay.conf.5 etc/alertrelay.conf <<'EOF' || status=1
import re
import sys

conf_c, man, example = sys.argv[1:4]
src = open(conf_c, encoding="utf-8").read()

# Which key table belongs to which section: the sections[] array.
sect_of = {}
m = re.search(r"static const struct sectdef sections\[\]\s*=\s*\{(.*?)\n\};",
              src, re.S)
if not m:
    sys.exit("docs_check: no sections[] table in %s" % conf_c)
for kind, table in re.findall(r'\{\s*"([a-z]+)"\s*,\s*(?:true|false)\s*,'
                              r'\s*([a-z_]+)\s*,', m.group(1)):
    sect_of[table] = kind
if not sect_of:
    sys.exit("docs_check: cannot read sections[] in %s" % conf_c)

# The keys of each table: KEY("name", ...), KRANGE("name", ...), ...
keys = {}
for table, body in re.findall(r"static const struct keydef ([a-z_]+)\[\]"
                              r"\s*=\s*\{(.*?)\n\};", src, re.S):
    if table not in sect_of:
        sys.exit("docs_check: table %s is not in sections[]" % table)
    names = re.findall(r'\bK[A-Z0-9]*\(\s*"([A-Za-z0-9_.-]+)"', body)
    if not names:
        sys.exit("docs_check: no keys found in %s" % table)
    keys[sect_of[table]] = names
if set(keys) != set(sect_of.values()):
    sys.exit("docs_check: sections without a key table: %s" %
             ", ".join(sorted(set(sect_of.values()) - set(keys))))
# Keys handled outside the tables (top level).
top_keys = re.findall(r'strcmp\(key,\s*"([a-z_]+)"\)\s*==\s*0', src)
if "include" not in top_keys:
    sys.exit("docs_check: cannot find the include key in %s" % conf_c)

def man_keys(path):
    """Section -> keys documented as '.TP' + '\\fBkey\\fR' entries."""
    found = {"": set()}
    sect = ""
    prev = ""
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        h = re.match(r'\.S[HS]\s+"?\[([a-z]+)', line)
        if h:
            sect = h.group(1)
            found.setdefault(sect, set())
        elif re.match(r"\.SH\b", line):
            sect = ""
        k = re.match(r"\\fB([a-z_]+)\\fR\s*=", line)
        if k and prev.startswith(".TP"):
            found[sect].add(k.group(1))
        prev = line
    return found

def example_keys(path):
    """Section -> keys shown as 'key =' or '#key =' lines."""
    found = {"": set()}
    sect = ""
    for line in open(path, encoding="utf-8"):
        h = re.match(r'\s*#?\s*\[([a-z]+)(\s+"[^"]*")?\]\s*$', line)
        if h:
            sect = h.group(1)
            found.setdefault(sect, set())
            continue
        k = re.match(r"\s*#?([a-z_]+)\s*=", line)
        if k:
            found.setdefault(sect, set()).add(k.group(1))
    return found

missing = []
for path, got in ((man, man_keys(man)), (example, example_keys(example))):
    for sect, names in sorted(keys.items()):
        for k in names:
            if k not in got.get(sect, set()):
                missing.append("%s: [%s] %s" % (path, sect, k))
    # include may appear anywhere (it is read at any level).
    if not any("include" in v for v in got.values()):
        missing.append("%s: include" % path)
for line in missing:
    print("docs_check: undocumented key: " + line)
n = sum(len(v) for v in keys.values()) + 1
if missing:
    sys.exit(1)
print("docs_check: %d keys in %d sections documented in %s and %s" %
      (n, len(keys), man, example))
EOF

# Render each page; groff and man must not warn.
for page in daemon/*.8 lib/*.5; do
	[ -f "$page" ] || continue
	out=$(groff -ww -man -z "$page" 2>&1) || { status=1; }
	if [ -n "$out" ]; then
		echo "docs_check: $page: groff warnings:"
		echo "$out"
		status=1
	fi
	if command -v man >/dev/null 2>&1; then
		out=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) ||
		    status=1
		if [ -n "$out" ]; then
			echo "docs_check: $page: man -l warnings:"
			echo "$out"
			status=1
		fi
	fi
done
[ $status -eq 0 ] && echo "docs_check: man pages render cleanly"
exit $status
