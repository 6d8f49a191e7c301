//! Real frames for the filter harness: Ethernet, 802.1Q, IPv4 (with
//! options, fragments), IPv6, TCP, UDP, ICMP, ICMPv6, ARP, with valid
//! lengths and checksums.

/// One sample packet.
pub struct Sample {
    /// What it is.
    pub name: &'static str,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
    /// Where its network header starts.
    pub l3: usize,
}

const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn vlan(id: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut tag = id.to_be_bytes().to_vec();
    tag.extend_from_slice(&ethertype.to_be_bytes());
    tag.extend_from_slice(payload);
    eth(0x8100, &tag)
}

struct V4 {
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    options: usize,
    frag: u16,
    tos: u8,
}

fn ipv4(h: &V4, payload: &[u8]) -> Vec<u8> {
    let hl = 20 + 4 * h.options;
    let mut p = vec![0u8; hl];
    p[0] = 0x40 | (hl / 4) as u8;
    p[1] = h.tos;
    p[2..4].copy_from_slice(&((hl + payload.len()) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6..8].copy_from_slice(&h.frag.to_be_bytes());
    p[8] = 64;
    p[9] = h.proto;
    p[12..16].copy_from_slice(&h.src);
    p[16..20].copy_from_slice(&h.dst);
    // NOP options.
    for b in &mut p[20..] {
        *b = 1;
    }
    let c = csum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn ipv6(next: u8, src: u8, dst: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8] = 0xfd;
    p[23] = src;
    p[24] = 0xfd;
    p[39] = dst;
    p.extend_from_slice(payload);
    p
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(payload);
    t
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

fn echo(ty: u8, len: usize) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0, 0x12, 0x34, 0, 1];
    m.extend((0..len).map(|i| i as u8));
    let c = csum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn arp() -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&SRC_MAC);
    a.extend_from_slice(&[10, 0, 0, 1]);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&[10, 0, 0, 2]);
    eth(0x0806, &a)
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

fn v4(src: [u8; 4], dst: [u8; 4], proto: u8) -> V4 {
    V4 {
        src,
        dst,
        proto,
        options: 0,
        frag: 0x4000, // DF
        tos: 0,
    }
}

/// The samples, named for the assertions on what libpcap selects.
pub fn samples() -> Vec<Sample> {
    let a = [10, 0, 0, 1];
    let b = [10, 0, 0, 2];
    let ip = |h: V4, l4: Vec<u8>| (eth(0x0800, &ipv4(&h, &l4)), 14);
    let mut out = vec![
        ("tcp syn :80", ip(v4(a, b, 6), tcp(1234, 80, SYN, &[]))),
        (
            "tcp syn-ack from :80",
            ip(v4(b, a, 6), tcp(80, 1234, SYN | ACK, &[])),
        ),
        (
            "tcp data :443",
            ip(
                V4 {
                    tos: 4,
                    ..v4([10, 0, 0, 3], [10, 0, 0, 4], 6)
                },
                tcp(5555, 443, ACK | PSH, &[0x47; 200]),
            ),
        ),
        ("udp :53", ip(v4(a, b, 17), udp(5353, 53, &[0xab; 30]))),
        ("udp :1500", ip(v4(a, b, 17), udp(1500, 9999, &[0; 4]))),
        ("icmp echo", ip(v4(a, b, 1), echo(8, 56))),
        (
            "udp from 200.0.0.1",
            ip(v4([200, 0, 0, 1], b, 17), udp(7, 7, &[1; 1100])),
        ),
        (
            "tcp :80 ip options",
            ip(
                V4 {
                    options: 2,
                    ..v4(a, b, 6)
                },
                tcp(4321, 80, ACK, &[0x47, 1, 2]),
            ),
        ),
        (
            "tcp fragment",
            ip(
                V4 {
                    frag: 0x0010,
                    ..v4(a, b, 6)
                },
                vec![0x47; 40],
            ),
        ),
        (
            "tcp6 :80",
            (eth(0x86dd, &ipv6(6, 1, 2, &tcp(40000, 80, SYN, &[]))), 14),
        ),
        (
            "udp6 :53",
            (eth(0x86dd, &ipv6(17, 1, 2, &udp(40001, 53, &[0; 12]))), 14),
        ),
        (
            "icmp6 echo",
            (eth(0x86dd, &ipv6(58, 1, 2, &echo(128, 8))), 14),
        ),
        ("arp request", (arp(), 14)),
        (
            "vlan udp 53",
            (
                vlan(100, 0x0800, &ipv4(&v4(a, b, 17), &udp(1, 53, &[0; 8]))),
                18,
            ),
        ),
    ];
    out.drain(..)
        .map(|(name, (frame, l3))| Sample { name, frame, l3 })
        .collect()
}
