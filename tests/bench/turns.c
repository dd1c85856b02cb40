/*
 * turns.so: an LD_PRELOAD shim that profiles the event loop's turns: the
 * time the process's first thread (alertrelayd's loop) spends between
 * two epoll_wait() calls, as wall time and as the thread's own CPU time.
 * Their difference is time the thread was runnable but not running (other
 * processes had the CPUs); the CPU time is the loop's own work per turn.
 *
 *	TURNS_OUT=FILE	at exit, append to FILE:
 *	    "turns pid=P n=N wall_max_us=W cpu_max_us=C"
 *	    "turns_wall LE COUNT" and "turns_cpu LE COUNT" per bucket (LE in
 *	    ms: 0.25, 0.5, 1, 2, ... 1024; counts not cumulative)
 *	TURNS_LONG=FILE	at exit, append the turns over 3 ms of CPU (the first
 *	    4,096), one per line: "START_NS WALL_NS CPU_NS", START in
 *	    CLOCK_MONOTONIC, so that they can be matched with a
 *	    "perf record -k CLOCK_MONOTONIC" profile of the loop thread
 *
 * Used by tests/bench (bench.py prints its figures next to the loop-lag
 * probe's).
 */
#include <sys/epoll.h>
#include <sys/syscall.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NBUCKET	14

int	epoll_wait(int, struct epoll_event *, int, int);

static long long	 wall0, cpu0, nturns, wall_max, cpu_max;
static long long	 hwall[NBUCKET], hcpu[NBUCKET];
static int		 started;

/* TURNS_LONG=FILE: the turns over 3 ms of CPU, with their start. */
#define NLONG	4096
static long long	 lstart[NLONG], lwall[NLONG], lcpu[NLONG];
static int		 nlong;

static long long
now_ns(clockid_t clk)
{
	struct timespec	 ts;

	clock_gettime(clk, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Bucket i holds (0.25 ms * 2^(i-1), 0.25 ms * 2^i]; the last the rest. */
static int
bucket(long long ns)
{
	long long	 le = 250000;
	int		 i;

	for (i = 0; i < NBUCKET - 1 && ns > le; i++)
		le *= 2;
	return i;
}

int
epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	static int	(*real)(int, struct epoll_event *, int, int);
	int		 loop, rc, saved;
	long long	 w, c;

	if (real == NULL &&
	    (real = (int (*)(int, struct epoll_event *, int, int))
	    dlsym(RTLD_NEXT, "epoll_wait")) == NULL) {
		errno = ENOSYS;
		return -1;
	}
	loop = syscall(SYS_gettid) == getpid();
	if (loop && started) {
		w = now_ns(CLOCK_MONOTONIC) - wall0;
		c = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
		nturns++;
		hwall[bucket(w)]++;
		hcpu[bucket(c)]++;
		if (w > wall_max)
			wall_max = w;
		if (c > cpu_max)
			cpu_max = c;
		if (c > 3000000 && nlong < NLONG) {
			lstart[nlong] = wall0;
			lwall[nlong] = w;
			lcpu[nlong++] = c;
		}
	}
	rc = real(epfd, ev, max, timeout);
	saved = errno;
	if (loop) {
		wall0 = now_ns(CLOCK_MONOTONIC);
		cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
		started = 1;
	}
	errno = saved;
	return rc;
}

__attribute__((destructor)) static void
turns_report(void)
{
	const char	*path = getenv("TURNS_OUT");
	FILE		*f;
	double		 le = 0.25;
	int		 i;

	if (path == NULL || (f = fopen(path, "a")) == NULL)
		return;
	fprintf(f, "turns pid=%d n=%lld wall_max_us=%lld cpu_max_us=%lld\n",
	    (int)getpid(), nturns, wall_max / 1000, cpu_max / 1000);
	for (i = 0; i < NBUCKET; i++, le *= 2) {
		fprintf(f, "turns_wall %g %lld\n", le, hwall[i]);
		fprintf(f, "turns_cpu %g %lld\n", le, hcpu[i]);
	}
	fclose(f);
	if ((path = getenv("TURNS_LONG")) == NULL ||
	    (f = fopen(path, "a")) == NULL)
		return;
	for (i = 0; i < nlong; i++)
		fprintf(f, "%lld %lld %lld\n", lstart[i], lwall[i], lcpu[i]);
	fclose(f);
}
