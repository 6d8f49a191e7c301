// SPDX-License-Identifier: GPL-2.0
/*
 * tcpstream -l PORT: accept one TCP connection, read it to the end, print
 *   "received N bytes".
 * tcpstream ADDR PORT BYTES: connect (retrying for 10 s while nobody
 *   listens), hand all BYTES to the kernel in one send() loop, close the
 *   sending half, wait for the peer to close, print "sent N bytes".
 *
 * For the lab's gso scenario: busybox nc writes 1 KiB at a time, so TCP
 * mostly sends sub-MSS segments; one large send() lets it build GSO
 * super-packets of several MSS. Both sides give up after 60 s.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_once(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	long long total = 0;
	char buf[65536];
	int one = 1, fd, c;
	ssize_t n;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 1)) {
		perror("tcpstream: listen");
		return 1;
	}
	c = accept(fd, NULL, NULL);
	if (c < 0) {
		perror("tcpstream: accept");
		return 1;
	}
	while ((n = read(c, buf, sizeof(buf))) > 0)
		total += n;
	if (n < 0) {
		perror("tcpstream: read");
		return 1;
	}
	close(c);
	printf("received %lld bytes\n", total);
	return 0;
}

static int send_all(const char *addr, int port, size_t bytes)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };
	size_t off = 0;
	char *buf, tail;
	int fd = -1;

	if (inet_pton(AF_INET, addr, &to.sin_addr) != 1) {
		fprintf(stderr, "tcpstream: bad address %s\n", addr);
		return 2;
	}
	for (int try = 0; try < 100; try++) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0) {
			perror("tcpstream: socket");
			return 1;
		}
		if (connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0)
			break;
		if (errno != ECONNREFUSED) {
			perror("tcpstream: connect");
			return 1;
		}
		close(fd);
		fd = -1;
		usleep(100000);
	}
	if (fd < 0) {
		fprintf(stderr, "tcpstream: nobody listens on %s:%d\n", addr, port);
		return 1;
	}
	buf = malloc(bytes);
	if (!buf) {
		perror("tcpstream: malloc");
		return 1;
	}
	memset(buf, 'x', bytes);
	while (off < bytes) {
		ssize_t n = send(fd, buf + off, bytes - off, 0);

		if (n < 0) {
			perror("tcpstream: send");
			return 1;
		}
		off += n;
	}
	/* Wait for the peer to read everything and close. */
	shutdown(fd, SHUT_WR);
	while (read(fd, &tail, 1) > 0)
		;
	close(fd);
	printf("sent %zu bytes\n", off);
	return 0;
}

int main(int argc, char **argv)
{
	alarm(60);
	if (argc == 3 && strcmp(argv[1], "-l") == 0)
		return listen_once(atoi(argv[2]));
	if (argc == 4)
		return send_all(argv[1], atoi(argv[2]), strtoul(argv[3], NULL, 0));
	fprintf(stderr, "usage: tcpstream -l PORT | tcpstream ADDR PORT BYTES\n");
	return 2;
}
