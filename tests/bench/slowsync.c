/*
 * slowsync.so: an LD_PRELOAD shim that makes fsync() and fdatasync() slow,
 * as on a loaded or network-backed disk, and counts them.
 *
 *	SLOWSYNC_MS=N		sleep N ms before every real fsync/fdatasync;
 *				-1: skip them (an upper bound for profiling:
 *				what the run would take if syncs were free)
 *	SLOWSYNC_HOLD=FILE	while FILE exists, every fsync/fdatasync waits
 *				(a disk that does not answer, held and let go
 *				by a test); the first one held creates
 *				FILE.hit, so the test knows a sync is held
 *	SLOWSYNC_STATS=FILE	at exit, append one line to FILE:
 *	    "slowsync pid=P calls=C main=M ms=T main_ms=U"
 *	  calls and ms over every thread; main and main_ms those made by the
 *	  process's first thread (the event loop in alertrelayd), with the
 *	  time spent in them, delay included.
 *
 * Used by tests/bench (bench.py --slow-sync) and the slow-disk tests.
 */
#include <sys/syscall.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int	fsync(int);
int	fdatasync(int);

static atomic_ullong	 calls, main_calls, total_ns, main_ns;

static unsigned long long
now_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL +
	    (unsigned long long)ts.tv_nsec;
}

/* Sleep SLOWSYNC_MS; 1 when the real call is to be skipped. */
static int
slow_delay(void)
{
	const char	*s = getenv("SLOWSYNC_MS");
	struct timespec	 ts;
	long		 ms;

	if (s == NULL || (ms = strtol(s, NULL, 10)) == 0)
		return 0;
	if (ms < 0)
		return 1;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
	return 0;
}

/* SLOWSYNC_HOLD: wait while the hold file exists. */
static void
slow_hold(void)
{
	const char	*path = getenv("SLOWSYNC_HOLD");
	char		 hit[4096];
	struct timespec	 ts = { 0, 5000000 };
	int		 fd, marked = 0;

	if (path == NULL)
		return;
	while (access(path, F_OK) == 0) {
		if (!marked) {
			snprintf(hit, sizeof(hit), "%s.hit", path);
			if ((fd = open(hit, O_WRONLY | O_CREAT | O_CLOEXEC,
			    0600)) != -1)
				close(fd);
			marked = 1;
		}
		nanosleep(&ts, NULL);
	}
}

/* Delay, call the real function, count. */
static int
slow_call(const char *name, int fd)
{
	int			(*real)(int);
	unsigned long long	 t0 = now_ns(), dt;
	int			 rc, saved;

	if ((real = (int (*)(int))dlsym(RTLD_NEXT, name)) == NULL) {
		errno = ENOSYS;
		return -1;
	}
	slow_hold();
	rc = slow_delay() ? 0 : real(fd);
	saved = errno;
	dt = now_ns() - t0;
	calls++;
	total_ns += dt;
	if (syscall(SYS_gettid) == getpid()) {
		main_calls++;
		main_ns += dt;
	}
	errno = saved;
	return rc;
}

int
fsync(int fd)
{
	return slow_call("fsync", fd);
}

int
fdatasync(int fd)
{
	return slow_call("fdatasync", fd);
}

__attribute__((destructor)) static void
slow_report(void)
{
	const char	*path = getenv("SLOWSYNC_STATS");
	FILE		*f;

	if (path == NULL || (f = fopen(path, "a")) == NULL)
		return;
	fprintf(f, "slowsync pid=%d calls=%llu main=%llu ms=%.1f "
	    "main_ms=%.1f\n", (int)getpid(), (unsigned long long)calls,
	    (unsigned long long)main_calls, total_ns / 1e6, main_ns / 1e6);
	fclose(f);
}
