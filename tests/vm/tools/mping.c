// SPDX-License-Identifier: GPL-2.0
/*
 * mping MARK COUNT ADDR [GAP_US]: send COUNT ICMP echo requests to ADDR from
 * a raw socket carrying SO_MARK = MARK, wait up to a second for each reply,
 * then GAP_US microseconds (default 200000; 0 is a ping-pong flood), and
 * print "N packets received" like ping. Built static for the lab's
 * library-free image, where there is no iptables to mark packets with and
 * busybox's ping has no -m.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static unsigned short csum(const void *p, int len)
{
	const unsigned short *w = p;
	unsigned int sum = 0;

	for (; len > 1; len -= 2)
		sum += *w++;
	if (len)
		sum += *(const unsigned char *)w;
	sum = (sum >> 16) + (sum & 0xffff);
	return ~(sum + (sum >> 16));
}

int main(int argc, char **argv)
{
	struct timeval tv = { .tv_sec = 1 };
	struct sockaddr_in to = { .sin_family = AF_INET };
	unsigned int mark;
	int fd, count, received = 0;
	long gap = 200000;

	if ((argc != 4 && argc != 5) || inet_pton(AF_INET, argv[3], &to.sin_addr) != 1) {
		fprintf(stderr, "usage: mping MARK COUNT ADDR [GAP_US]\n");
		return 2;
	}
	if (argc == 5)
		gap = atol(argv[4]);
	mark = strtoul(argv[1], NULL, 0);
	count = atoi(argv[2]);
	fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv))) {
		perror("mping: socket");
		return 1;
	}
	for (int seq = 1; seq <= count; seq++) {
		struct icmphdr req = { .type = ICMP_ECHO };
		char buf[1500];

		req.un.echo.id = htons(getpid() & 0xffff);
		req.un.echo.sequence = htons(seq);
		req.checksum = csum(&req, sizeof(req));
		if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			perror("mping: sendto");
			return 1;
		}
		/* The raw socket also sees our own request on loopback: skip it. */
		for (;;) {
			ssize_t n = recv(fd, buf, sizeof(buf), 0);
			struct iphdr *ip = (struct iphdr *)buf;
			struct icmphdr *r;

			if (n < 0)
				break;
			r = (struct icmphdr *)(buf + ip->ihl * 4);
			if (r->type == ICMP_ECHOREPLY && r->un.echo.sequence == htons(seq)) {
				received++;
				break;
			}
		}
		if (gap > 0)
			usleep(gap);
	}
	printf("%d packets transmitted, %d packets received\n", count, received);
	return received == count ? 0 : 1;
}
