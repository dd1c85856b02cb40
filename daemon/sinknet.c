/* Outputs' sockets and files: the system calls, no state of their own. */

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#ifdef __linux__
#include <linux/sockios.h>
#endif

#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "internal.h"
#include "sink_int.h"

/* TCP keepalive and user timeout (see sinknet_tcp_opts). */
#define SINKNET_USER_TIMEOUT_MS	60000
#define SINKNET_KEEPIDLE_S	30
#define SINKNET_KEEPINTVL_S	10
#define SINKNET_KEEPCNT		3

/* Buffers handed to the kernel in one call. */
#define SINKNET_IOV		16

/*
 * A non-blocking socket connecting to *cur, or to the addresses after it
 * (*cur is then the one used), or -1 with the last failure in *error.
 */
int
sinknet_connect(struct addrinfo **cur, int *error)
{
	struct addrinfo	*ai;
	int		 fd;

	for (; (ai = *cur) != NULL; *cur = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd == -1) {
			*error = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
		    errno == EINPROGRESS)
			return fd;
		*error = errno;
		close(fd);
	}
	return -1;
}

/* How the non-blocking connect on fd ended: 0, or an errno value. */
int
sinknet_connect_error(int fd)
{
	int		 error = 0;
	socklen_t	 len = sizeof error;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == -1)
		error = errno;
	return error;
}

/*
 * Keepalives find a silent peer while idle; a user timeout breaks the
 * link when sent data stays unacknowledged (a vanished host), so that the
 * records are resent on a new connection instead of waiting for the
 * kernel's retransmissions to give up after many minutes.
 */
void
sinknet_tcp_opts(int fd)
{
	int	 one = 1, v = 0;

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#ifdef TCP_KEEPIDLE
	v = SINKNET_KEEPIDLE_S;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof v);
	v = SINKNET_KEEPINTVL_S;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof v);
	v = SINKNET_KEEPCNT;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof v);
#endif
#ifdef TCP_USER_TIMEOUT
	v = SINKNET_USER_TIMEOUT_MS;
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof v);
#endif
	(void)v;
}

/*
 * The bytes in fd's send queue, unsent or not acknowledged by the peer,
 * into *outq: 0 without SIOCOUTQ (not Linux); -1 when it cannot be read.
 */
int
sinknet_outq(int fd, int *outq)
{
	*outq = 0;
#ifdef SIOCOUTQ
	if (ioctl(fd, SIOCOUTQ, outq) == -1 || *outq < 0)
		return -1;
#endif
	return 0;
}

/*
 * Write the start of out to a file (writev) or a socket (sendmsg, no
 * SIGPIPE), without draining it: what write(2) returns.
 */
ssize_t
sinknet_write(int fd, bool file, struct evbuffer *out)
{
	struct evbuffer_iovec	 vec[SINKNET_IOV];
	struct iovec		 iov[SINKNET_IOV];
	struct msghdr		 msg;
	int			 i, niov;

	niov = evbuffer_peek(out, -1, NULL, vec, SINKNET_IOV);
	if (niov > SINKNET_IOV)
		niov = SINKNET_IOV;
	for (i = 0; i < niov; i++) {
		iov[i].iov_base = vec[i].iov_base;
		iov[i].iov_len = vec[i].iov_len;
	}
	if (file)
		return writev(fd, iov, niov);
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = iov;
	msg.msg_iovlen = niov;
	return sendmsg(fd, &msg, MSG_NOSIGNAL);
}

/*
 * Send one datagram.  ECONNREFUSED reports an ICMP error caused by an
 * earlier datagram, so this one is sent again once; a second refusal
 * counts it as gone, as UDP gives no delivery guarantee anyway.
 */
int
sinknet_send_udp(int fd, const char *msg, size_t len, int *refused)
{
	if (send(fd, msg, len, MSG_NOSIGNAL) != -1)
		return 0;
	if (errno != ECONNREFUSED)
		return -1;
	(*refused)++;
	if (send(fd, msg, len, MSG_NOSIGNAL) != -1 ||
	    errno == ECONNREFUSED)
		return 0;
	return -1;
}
