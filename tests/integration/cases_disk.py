"""A disk that does not answer (issue 13, "Disk syncs off the loop"):
alertrelayd runs with tests/bench/slowsync.so preloaded, whose
SLOWSYNC_HOLD file holds every fsync/fdatasync of the process while it
exists (and leaves FILE.hit behind, so the test knows one is held).  New
alerts make a tenant commit a page; its syncs are held:

- the loop keeps turning: /metrics and the control socket answer within
  1 s each, the other tenant keeps its poll schedule, a reload is applied
  and answered;
- the tenant's state file does not move while its records are not
  durable (the saved cursor never runs ahead of the spool);
- SIGTERM during the hold waits for the commit, which ends once the disk
  answers; after a restart every version has reached the SIEM exactly
  once.
- disk_held_remove: a reload removes t1 while its page commit is held;
  the commit finishes on its own once the disk answers (no crash, also
  under ASan), and when a reload adds t1 back every version of it has
  arrived exactly once.
- cursor_set_disk_held: alertrelayctl cursor set while the disk is held:
  the command waits for the state file, the loop does not; a second one
  is refused meanwhile; the file has the new cursor once the disk answers.
- notify_budget_disk_held: a mail's hourly-budget file is saved while the
  disk is held: the loop goes on (/metrics, status, the next mails), and
  the file has every mail's time once the disk answers.
Loaded by harness.py next to cases.py (every cases_*.py exports CASES)."""

import os
import signal
import subprocess
import time
import urllib.request

import harness
from harness import Fail, tail, wait_delivered, wait_for
from cases_ctl import ctl, status_json
from cases_notify import HoldSmtp, notify_section

T12 = [{"name": "t1", "label": "Customer t1 Ltd"},
       {"name": "t2", "label": "Customer t2 Ltd"}]
OCTET = {"name": "near", "transport": "tcp", "framing": "octet-counting",
         "format": "cef", "sink": "octet"}


def metrics_time(port):
    """Seconds /metrics took to answer (Fail past 5 s)."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                    timeout=5) as r:
            r.read()
    except OSError as e:
        raise Fail("/metrics did not answer within 5 s while the disk was "
                   "held (%s): the loop waits for the disk" % e)
    return time.monotonic() - t0


def loop_answers(ctx, mport, held):
    """/metrics five times and status once, each within 1 s, while held
    (what waits for the disk); returns the slowest /metrics and status."""
    worst = max(metrics_time(mport) for _ in range(5))
    t0 = time.monotonic()
    status_json(ctx)
    ctl_s = time.monotonic() - t0
    if worst > 1.0 or ctl_s > 1.0:
        raise Fail("with %s held /metrics took up to %.2f s and status "
                   "%.2f s (1 s at most: the loop must not wait for the "
                   "disk)" % (held, worst, ctl_s))
    return worst, ctl_s


def sigterm_held(ctx, proc, hold, grace, what):
    """SIGTERM while the disk is held: alertrelayd must still run grace s
    later (it waits for what), then exit 0 once the hold is gone.
    Returns the seconds from SIGTERM to the exit."""
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(grace)
    if not proc.running():
        raise Fail("alertrelayd exited during the hold, before %s (status "
                   "%s)" % (what, proc.p.returncode))
    os.unlink(hold)
    rc = proc.wait(15)
    took = time.monotonic() - t0
    if rc is None:
        proc.stop(signal.SIGKILL)
        raise Fail("alertrelayd still running 15 s after SIGTERM once the "
                   "disk answered:\n%s" % tail(proc.stderr()))
    proc.close()
    ctx.suite.check_sanitizer(proc)
    if rc != 0:
        raise Fail("SIGTERM during the hold: exit status %d:\n%s"
                   % (rc, tail(proc.stderr())))
    return took


def api_calls(ctx, tenant):
    n = 0
    for line in (ctx.fake.log() or "").split("\n"):
        f = line.split(" ")
        if len(f) >= 5 and f[1] == tenant and "/oauth2/" not in f[3]:
            n += 1
    return n


def state_text(ctx, tenant):
    p = os.path.join(ctx.dir, "state", "tenants", tenant + ".state")
    with open(p) as f:
        return f.read()


def answers(ctx):
    try:
        status_json(ctx)
        return True
    except Fail:
        return False


def held_env(ctx, hold):
    env = {"LD_PRELOAD": os.path.join(ctx.suite.build, "tests", "bench",
                                      "slowsync.so"),
           "SLOWSYNC_HOLD": hold}
    # A sanitised daemon takes the shim after its runtime.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + \
        "verify_asan_link_order=0"
    return env


def check_disk_held(ctx):
    hold = os.path.join(ctx.dir, "hold")
    hit = hold + ".hit"
    d, mport = start_held(ctx, hold, metrics=True)
    wait_for(lambda: "cursor none" not in state_text(ctx, "t1"), 10,
             "t1's first state save")
    before = state_text(ctx, "t1")

    # Hold the disk, then give t1 new versions: its page commit waits.
    open(hold, "w").close()
    ctx.fake.add_alerts("t1", 5)
    wait_for(lambda: os.path.exists(hit), 15,
             "a sync of t1's page commit to be held")
    calls0 = api_calls(ctx, "t2")
    worst, ctl_s = loop_answers(ctx, mport, "the disk")
    # A reload is applied and answered while the commit waits.
    t0 = time.monotonic()
    rc, out, err = ctl(ctx, "reload", timeout=10)
    rl_s = time.monotonic() - t0
    if rc != 0 or rl_s > 2.0:
        raise Fail("reload with the disk held: exit %d after %.1f s "
                   "(expected 0 within 2 s):\n%s" % (rc, rl_s,
                                                      tail(out + err)))
    time.sleep(3)
    polls = api_calls(ctx, "t2") - calls0
    if polls < 2:
        raise Fail("t2 polled %d times in the 3+ s its neighbour's disk "
                   "syncs were held (poll_interval 1s)" % polls)
    if state_text(ctx, "t1") != before:
        raise Fail("t1's state file changed while its page's records "
                   "were not yet durable")
    held = [k for k in ctx.expected(only=["t1"])]
    # SIGTERM while held: the daemon waits for the commit (the disk
    # answers a second later), then exits 0.
    took = sigterm_held(ctx, d.proc, hold, 1.0, "its page commit was "
                        "durable")
    if state_text(ctx, "t1") == before:
        raise Fail("t1's page commit was not saved before the exit")
    # The next start sends nothing twice and loses nothing.
    d.env = None
    d.start()
    wait_for(lambda: d.alive() and answers(ctx), 15,
             "the control socket after the restart")
    dels = wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 20,
                          daemon=d, what="every version after the restart")
    _, dups = harness.compare(ctx.expected(), dels, allow_dups=True)
    d.stop()
    if dups:
        raise Fail("%d versions delivered twice across the held commit and "
                   "the restart" % len(dups))
    ctx.note("disk held: /metrics max %.0f ms, status %.0f ms, reload "
             "%.1f s, t2 polled %d times in 3 s, t1's state file unchanged "
             "while held; SIGTERM exited 0 %.1f s after (the disk answered "
             "after 1 s); %d versions of t1 once each after a restart"
             % (worst * 1000, ctl_s * 1000, rl_s, polls, took, len(held)))


def start_held(ctx, hold, metrics=False):
    """The daemon with slowsync.so and the hold file named (not made);
    returns it and its metrics port (None without metrics)."""
    shim = os.path.join(ctx.suite.build, "tests", "bench", "slowsync.so")
    if not os.path.exists(shim):
        raise Fail("%s is not built (make all builds it)" % shim)
    mport = ctx.start_daemon(metrics=metrics, env=held_env(ctx, hold))
    d = ctx.daemon
    wait_for(lambda: d.alive() and answers(ctx), 15, "the control socket")
    wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 20, daemon=d,
                   what="the first versions")
    return d, mport


def reload_with(ctx, tenants=None, **conf):
    """Rewrite the configuration (make_config's arguments) and reload."""
    ctx.make_config(tenants=tenants, **conf)
    rc, out, err = ctl(ctx, "reload", timeout=10)
    if rc != 0 or "reload applied" not in out:
        raise Fail("reload: exit %d %r" % (rc, out + err))


def check_disk_held_remove(ctx):
    hold = os.path.join(ctx.dir, "hold")
    d, _ = start_held(ctx, hold)
    t1, t2 = ctx.case["tenants"]
    open(hold, "w").close()
    ctx.fake.add_alerts("t1", 5)
    wait_for(lambda: os.path.exists(hold + ".hit"), 15,
             "a sync of t1's page commit to be held")
    reload_with(ctx, [t2])
    st = status_json(ctx)
    if any(t["name"] == "t1" for t in st["tenants"]):
        raise Fail("t1 still in status after the reload removed it")
    os.unlink(hold)
    ctx.fake.add_alerts("t2", 1)
    wait_delivered(ctx.suite, ctx.sng, "octet",
                   lambda: ctx.expected(only=["t2"]), 20, daemon=d,
                   what="t2's versions once the disk answered")
    d.alive()
    reload_with(ctx, [t1, t2])
    dels = wait_delivered(ctx.suite, ctx.sng, "octet", ctx.expected, 20,
                          daemon=d, what="every version once t1 is back")
    _, dups = harness.compare(ctx.expected(), dels, allow_dups=True)
    d.stop()
    if dups:
        raise Fail("%d versions delivered twice after t1 was removed with "
                   "its page commit held and added back" % len(dups))
    ctx.note("t1 removed while its page commit was held: no crash; the "
             "commit finished once the disk answered; t1 added back: %d "
             "versions, each once" % len(ctx.expected()))


def check_cursor_set_disk_held(ctx):
    hold = os.path.join(ctx.dir, "hold")
    d, mport = start_held(ctx, hold, metrics=True)
    before = state_text(ctx, "t1")
    open(hold, "w").close()
    exe = os.path.join(ctx.suite.build, "alertrelayctl")
    sock = os.path.join(ctx.dir, "ctl.sock")
    when = "2026-11-01T00:00:00Z"
    p = subprocess.Popen([exe, "-s", sock, "cursor", "set", "t1", when],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        wait_for(lambda: d.alive() and os.path.exists(hold + ".hit"), 15,
                 "the cursor's state-file save to be held")
        worst, ctl_s = loop_answers(ctx, mport, "cursor set's save")
        if p.poll() is not None:
            raise Fail("cursor set returned (exit %d: %r) before its state "
                       "file was saved" % (p.returncode, p.stdout.read()))
        rc, out, err = ctl(ctx, "cursor", "set", "t1", when, timeout=10)
        if rc == 0 or "saving a cursor already" not in err:
            raise Fail("a second cursor set during the save: exit %d %r "
                       "(expected a refusal that says why)"
                       % (rc, out + err))
        if state_text(ctx, "t1") != before:
            raise Fail("t1's state file changed while its save was held")
    finally:
        if os.path.exists(hold):
            os.unlink(hold)
    try:
        out, err = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        raise Fail("cursor set did not return within 15 s of the disk "
                   "answering")
    if p.returncode != 0 or "cursor of t1 set to 2026-11-01" not in out:
        raise Fail("cursor set once the disk answered: exit %d %r"
                   % (p.returncode, out + err))
    if state_text(ctx, "t1") == before:
        raise Fail("cursor set succeeded but t1's state file is unchanged")

    # t1 polls again from the new cursor (minus the overlap window).
    def polled_from_it():
        d.alive()
        for line in (ctx.fake.log() or "").split("\n"):
            f = line.split(" ")
            if (len(f) >= 5 and f[1] == "t1" and "/oauth2/" not in f[3]
                    and ("2026-10-31" in f[3] or "2026-11-01" in f[3])):
                return True
        return False
    wait_for(polled_from_it, 15, "t1 to poll from the cursor set "
             "(2026-11-01 minus the overlap)")

    # SIGTERM while a cursor set's save is held: the daemon exits once the
    # disk answers, with that cursor in the file.
    # t1 polls again meanwhile, so the held sync may be one of its page
    # commits and the cursor set refused ("try again"): a refusal is
    # answered at once (within the second waited for here), a cursor
    # set that was taken waits for the disk.  Let the disk go and retry.
    when2 = "2026-11-02T00:00:00Z"
    for _ in range(50):
        open(hold, "w").close()
        if os.path.exists(hold + ".hit"):
            os.unlink(hold + ".hit")
        p = subprocess.Popen([exe, "-s", sock, "cursor", "set", "t1",
                              when2], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        wait_for(lambda: os.path.exists(hold + ".hit") or
                 p.poll() is not None, 15, "cursor set to be held or "
                 "refused")
        try:
            p.wait(1.0)
        except subprocess.TimeoutExpired:
            break               # taken, and waiting for the disk
        out, err = p.communicate()
        if "try again" not in err:
            raise Fail("cursor set with the disk held: exit %d %r"
                       % (p.returncode, out + err))
        os.unlink(hold)         # t1 was reading or saving a page
        time.sleep(0.1)
    else:
        raise Fail("cursor set refused 50 times in a row")
    wait_for(lambda: os.path.exists(hold + ".hit"), 15,
             "a sync to be held while cursor set waits")
    sigterm_held(ctx, d.proc, hold, 0.5, "cursor set's state file was "
                 "saved")
    out, err = p.communicate(timeout=15)
    if p.returncode == 0:
        raise Fail("SIGTERM during cursor set's save: alertrelayctl exit 0 "
                   "%r (expected a failure)" % (out + err))
    if "alertrelayd is stopping" not in err or "still written" not in err:
        raise Fail("SIGTERM during cursor set's save: alertrelayctl said "
                   "%r; expected the daemon's answer that it is stopping "
                   "and the file is still written" % (out + err).strip())
    if "cursor 17935776000000000\n" not in state_text(ctx, "t1"):
        raise Fail("after SIGTERM during cursor set's save the state file "
                   "does not hold 2026-11-02:\n%s" % state_text(ctx, "t1"))
    ctx.note("cursor set with the disk held: /metrics max %.0f ms, status "
             "%.0f ms; a second one refused; returned once the disk "
             "answered; t1 then polled from the new cursor; SIGTERM "
             "during a held save: exit 0 once the disk answered, the "
             "cursor in the file; alertrelayctl said %r"
             % (worst * 1000, ctl_s * 1000, (out + err).strip()[:120]))


def sent_lines(ctx, name):
    p = os.path.join(ctx.dir, "state", "notify", name + ".sent")
    try:
        with open(p) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


def check_budget_disk_held(ctx):
    hold = os.path.join(ctx.dir, "hold")
    smtp = HoldSmtp(ctx)
    shim = os.path.join(ctx.suite.build, "tests", "bench", "slowsync.so")
    if not os.path.exists(shim):
        raise Fail("%s is not built (make all builds it)" % shim)
    smtp.hold()
    mport = ctx.start_daemon(metrics=True, env=held_env(ctx, hold),
                             extra=notify_section("soc", smtp.port,
                                                  "soc@mssp.example"))
    d = ctx.daemon
    want = len(ctx.expected())
    # The first mail waits for its answer; then the disk is held, and the
    # answer comes: the mail's time is saved while every sync waits.
    smtp.wait_held(1, d)
    open(hold, "w").close()
    smtp.release()
    wait_for(lambda: d.alive() and os.path.exists(hold + ".hit"), 15,
             "the save of the mail budget to be held")
    worst, ctl_s = loop_answers(ctx, mport, "the mail budget's save")
    # The other mails go out while the save waits.
    wait_for(lambda: d.alive() and len(smtp.mails()) >= want, 15,
             "all %d mails to be sent while the disk is held" % want)
    if sent_lines(ctx, "soc") != 0:
        raise Fail("the mail budget file was written while the disk was "
                   "held")
    os.unlink(hold)
    wait_for(lambda: d.alive() and sent_lines(ctx, "soc") == want, 15,
             "the budget file to list all %d mails once the disk answered"
             % want)
    readd = readd_while_saving(ctx, smtp, hold, mport, want)
    d.stop()
    ctx.note("mail budget saved with the disk held: /metrics max %.0f ms, "
             "status %.0f ms; %d mails sent meanwhile; %s.sent lists %d "
             "times once the disk answered; %s"
             % (worst * 1000, ctl_s * 1000, want, "soc", want, readd))


def readd_while_saving(ctx, smtp, hold, mport, want):
    """A reload removes the notifier while the save of its latest mail's
    time waits for the disk, the next adds it back with max_per_hour =
    every single mail so far.  It must count that mail (its file is read
    on the disk thread, after the save), so the next alert goes into a
    digest rather than a single mail over the budget."""
    d = ctx.daemon
    dk = {"metrics_listen": "127.0.0.1:%d" % mport}
    smtp.hold()
    ctx.fake.add_alerts("t1", 1)
    smtp.wait_held(2, d)
    open(hold, "w").close()
    if os.path.exists(hold + ".hit"):
        os.unlink(hold + ".hit")
    smtp.release()
    wait_for(lambda: d.alive() and len(smtp.mails()) == want + 1 and
             os.path.exists(hold + ".hit"), 15,
             "mail %d sent and a sync held after it" % (want + 1))
    for extra in ("", notify_section("soc", smtp.port, "soc@mssp.example")
                  .replace("max_per_hour = 1000",
                           "max_per_hour = %d" % (want + 1)) +
                  "digest_interval = 1s\n"):
        reload_with(ctx, daemon=dk, extra=extra)
    ctx.fake.add_alerts("t1", 1)
    os.unlink(hold)
    wait_for(lambda: d.alive() and len(smtp.mails()) >= want + 2, 20,
             "a mail for the alert after the notifier came back")
    subj = [str(m["Subject"]) for m in smtp.mails()]
    if not any(s.startswith("[alertrelay] Digest") for s in subj):
        raise Fail("the notifier added back sent a single mail over its "
                   "max_per_hour of %d (it counted the times of a file read "
                   "before its predecessor's last save); subjects: %r"
                   % (want + 1, subj[want:]))
    return ("removed and added back while its last save was held: the "
            "next alert went into a digest (max_per_hour %d reached)"
            % (want + 1))


CASES = [
    {
        "name": "disk_held",
        "doc": "every fsync/fdatasync held (slowsync.so SLOWSYNC_HOLD) "
               "while t1 commits a page: /metrics and status answer within "
               "1 s, a reload within 2 s, t2 keeps polling, t1's state file "
               "does not move; SIGTERM waits for the commit and exits 0 "
               "once the disk answers; every version exactly once after a "
               "restart",
        "fake": ["-t", "t1", "-t", "t2", "--alerts", "10", "--seed", "151"],
        "tenants": T12,
        "outputs": [OCTET],
        "quick": True,          # a moment between states: under ASan too
        "check": check_disk_held,
    },
    {
        "name": "disk_held_remove",
        "doc": "a reload removes t1 while its page commit's syncs are held; "
               "once the disk answers the commit finishes alone (no crash, "
               "ASan too); t1 added back: every version exactly once",
        "fake": ["-t", "t1", "-t", "t2", "--alerts", "10", "--seed", "152"],
        "tenants": T12,
        "outputs": [OCTET],
        "quick": True,
        "check": check_disk_held_remove,
    },
    {
        "name": "notify_budget_disk_held",
        "doc": "a mail's hourly-budget file (state/notify/NAME.sent) is "
               "saved while every fsync is held: /metrics and status "
               "answer within 1 s, the next mails are sent, and the file "
               "lists every mail once the disk answers; removed and added "
               "back by reloads while its last save is held, the notifier "
               "counts that mail (the next alert goes into a digest)",
        "fake": ["-t", "t1", "--alerts", "3", "--seed", "153"],
        "tenants": [{"name": "t1", "label": "Customer t1 Ltd"}],
        "outputs": [OCTET],
        "quick": True,
        "check": check_budget_disk_held,
    },
    {
        "name": "cursor_set_disk_held",
        "doc": "alertrelayctl cursor set while every fsync is held: the "
               "command waits for the state file, /metrics and status "
               "answer within 1 s, a second cursor set is refused; once "
               "the disk answers the command succeeds and t1 polls from "
               "the new cursor; SIGTERM during a held save exits 0 once the "
               "disk answers, with that cursor in the file",
        "fake": ["-t", "t1", "-t", "t2", "--alerts", "5", "--seed", "154"],
        "tenants": T12,
        "outputs": [OCTET],
        "quick": True,
        "check": check_cursor_set_disk_held,
    },
]
