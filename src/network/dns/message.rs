//! The DNS wire format, only as far as the embedded server needs it (RFC 1035, RFC 6891): a
//! query's header and single question are parsed (names lower-cased for lookups, the raw
//! question kept to echo back), EDNS's UDP payload size is read, and responses are built from
//! the query (A and PTR answers, header-only errors). Everything else is relayed as bytes.
//!
//! Parsing never panics and never reads past the packet: every access is bounds-checked, names
//! are limited to 255 bytes and compression pointers in the question are refused.

use std::net::Ipv4Addr;

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Largest UDP response without EDNS.
pub const CLASSIC_UDP_SIZE: usize = 512;
/// Largest UDP response we build even when a client announces more.
pub const MAX_UDP_SIZE: usize = 4096;
/// The UDP payload size we announce in our own OPT record.
pub const OUR_UDP_SIZE: u16 = 1232;

pub const TYPE_A: u16 = 1;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
pub const CLASS_ANY: u16 = 255;

pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;
pub const RCODE_REFUSED: u8 = 5;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;

/// A parsed query with one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// The header's flags word as received.
    pub flags: u16,
    /// The question's name: lower-case labels joined by dots, no trailing dot, `""` for the
    /// root; bytes outside printable ASCII and dots inside labels are escaped (`\046`), so such
    /// a name never equals a table entry.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question section exactly as received (name, type, class), echoed in responses.
    pub question: Vec<u8>,
    /// The EDNS UDP payload size, when the query carries an OPT record.
    pub edns_size: Option<u16>,
}

/// What a packet turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A standard query with one well-formed question.
    Query(Query),
    /// A packet to answer with a header-only error (FORMERR, NOTIMP) carrying this id.
    Error { id: u16, flags: u16, rcode: u8 },
    /// Not worth an answer: too short for a header, or a response rather than a query.
    Ignore,
}

fn u16_at(packet: &[u8], at: usize) -> Option<u16> {
    let b = packet.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The id of a packet long enough to have one.
pub fn id_of(packet: &[u8]) -> Option<u16> {
    u16_at(packet, 0)
}

/// Whether a packet is a response (QR set) with the given id.
pub fn is_response_to(packet: &[u8], id: u16) -> bool {
    packet.len() >= HEADER_LEN
        && u16_at(packet, 0) == Some(id)
        && u16_at(packet, 2).is_some_and(|f| f & FLAG_QR != 0)
}

/// Whether a response has its TC (truncated) bit set.
pub fn is_truncated(packet: &[u8]) -> bool {
    u16_at(packet, 2).is_some_and(|f| f & FLAG_TC != 0)
}

/// The RCODE of a message.
pub fn rcode_of(packet: &[u8]) -> Option<u8> {
    u16_at(packet, 2).map(|f| (f & 0x000f) as u8)
}

/// Parses an uncompressed question name starting at `at`; returns the display name and the
/// offset after it.
fn parse_name(packet: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut wire_len = 0usize;
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        wire_len += 1 + len;
        if wire_len > MAX_NAME {
            return None;
        }
        if len == 0 {
            return Some((name, at));
        }
        if len > MAX_LABEL {
            // Compression pointers (0xC0) and the reserved label types are refused here.
            return None;
        }
        let label = packet.get(at..at + len)?;
        at += len;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            match b {
                b'.' | b'\\' => name.push_str(&format!("\\{b:03}")),
                0x21..=0x7e => name.push(char::from(b.to_ascii_lowercase())),
                _ => name.push_str(&format!("\\{b:03}")),
            }
        }
    }
}

/// The offset after a possibly compressed name starting at `at` (for skipping records).
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *packet.get(at)?;
        match len {
            0 => return Some(at + 1),
            1..=63 => at += 1 + usize::from(len),
            0xc0..=0xff => {
                packet.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
    None
}

/// The offset after `count` records starting at `at`; `None` when they run past the packet.
fn skip_records(packet: &[u8], mut at: usize, count: u32) -> Option<usize> {
    for _ in 0..count {
        at = skip_name(packet, at)?;
        let rdlen = usize::from(u16_at(packet, at + 8)?);
        at = at.checked_add(10 + rdlen)?;
        if at > packet.len() {
            return None;
        }
    }
    Some(at)
}

/// The UDP payload size of an OPT record among the records after `at`, if any.
fn find_edns(packet: &[u8], mut at: usize, records: u16) -> Option<u16> {
    for _ in 0..records {
        at = skip_name(packet, at)?;
        let rtype = u16_at(packet, at)?;
        let class = u16_at(packet, at + 2)?;
        let rdlen = usize::from(u16_at(packet, at + 8)?);
        if rtype == TYPE_OPT {
            return Some(class);
        }
        at = at.checked_add(10 + rdlen)?;
        if at > packet.len() {
            return None;
        }
    }
    None
}

/// Parses a packet received by the server.
pub fn parse(packet: &[u8]) -> Parsed {
    if packet.len() < HEADER_LEN {
        return Parsed::Ignore;
    }
    let (Some(id), Some(flags)) = (u16_at(packet, 0), u16_at(packet, 2)) else {
        return Parsed::Ignore;
    };
    if flags & FLAG_QR != 0 {
        return Parsed::Ignore;
    }
    let error = |rcode| Parsed::Error { id, flags, rcode };
    let opcode = (flags >> 11) & 0xf;
    if opcode != 0 {
        return error(RCODE_NOTIMP);
    }
    let counts: Vec<u16> = (0..4).filter_map(|i| u16_at(packet, 4 + 2 * i)).collect();
    if counts.len() != 4 || counts[0] != 1 {
        return error(RCODE_FORMERR);
    }
    let Some((name, at)) = parse_name(packet, HEADER_LEN) else {
        return error(RCODE_FORMERR);
    };
    let (Some(qtype), Some(qclass)) = (u16_at(packet, at), u16_at(packet, at + 2)) else {
        return error(RCODE_FORMERR);
    };
    let end = at + 4;
    let question = packet[HEADER_LEN..end].to_vec();
    // EDNS: only the additional section may hold OPT; answer/authority records of a query are
    // skipped. A malformed tail only costs the client its larger payload size.
    let edns_size = skip_records(packet, end, u32::from(counts[1]) + u32::from(counts[2]))
        .and_then(|at| find_edns(packet, at, counts[3]));
    Parsed::Query(Query {
        id,
        flags,
        name,
        qtype,
        qclass,
        question,
        edns_size,
    })
}

fn flags_for(query_flags: u16, rcode: u8, authoritative: bool, truncated: bool) -> u16 {
    let mut f = FLAG_QR | FLAG_RA | (query_flags & FLAG_RD) | u16::from(rcode & 0xf);
    if authoritative {
        f |= FLAG_AA;
    }
    if truncated {
        f |= FLAG_TC;
    }
    f
}

/// A header-only response (no question), for packets whose question could not be read.
pub fn error_response(id: u16, query_flags: u16, rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags_for(query_flags, rcode, false, false).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    A(Ipv4Addr),
    /// A PTR record's target, a dotted name without trailing dot.
    Ptr(String),
}

impl Answer {
    fn encode(&self, ttl: u32, out: &mut Vec<u8>) {
        // The owner name is always the question's, at offset 12: a compression pointer.
        out.extend_from_slice(&[0xc0, 0x0c]);
        let (rtype, rdata) = match self {
            Answer::A(ip) => (TYPE_A, ip.octets().to_vec()),
            Answer::Ptr(name) => (TYPE_PTR, encode_name(name)),
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
}

/// A dotted name in wire form (labels longer than 63 bytes are cut, the name at 255 bytes).
fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(MAX_LABEL)];
        if out.len() + 1 + bytes.len() + 1 > MAX_NAME {
            break;
        }
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
    out
}

/// The response to `query` with `answers`, as many as fit in `max_len` bytes (TC set when
/// some did not); an OPT record is added when the query had one.
pub fn response(
    query: &Query,
    rcode: u8,
    authoritative: bool,
    answers: &[Answer],
    ttl: u32,
    max_len: usize,
) -> Vec<u8> {
    let opt_len = if query.edns_size.is_some() { 11 } else { 0 };
    let mut body = Vec::new();
    let mut count: u16 = 0;
    let mut truncated = false;
    let fixed = HEADER_LEN + query.question.len() + opt_len;
    for answer in answers {
        let mut rr = Vec::new();
        answer.encode(ttl, &mut rr);
        if fixed + body.len() + rr.len() > max_len || count == u16::MAX {
            truncated = true;
            break;
        }
        body.extend_from_slice(&rr);
        count += 1;
    }
    let mut out = Vec::with_capacity(fixed + body.len());
    out.extend_from_slice(&query.id.to_be_bytes());
    out.extend_from_slice(&flags_for(query.flags, rcode, authoritative, truncated).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&u16::from(opt_len > 0).to_be_bytes());
    out.extend_from_slice(&query.question);
    out.extend_from_slice(&body);
    if opt_len > 0 {
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&OUR_UDP_SIZE.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    out
}

/// The largest UDP response `query`'s client accepts.
pub fn udp_limit(query: &Query) -> usize {
    match query.edns_size {
        Some(n) => usize::from(n).clamp(CLASSIC_UDP_SIZE, MAX_UDP_SIZE),
        None => CLASSIC_UDP_SIZE,
    }
}

/// The address of a reverse name (`4.3.2.1.in-addr.arpa` → 1.2.3.4).
pub fn reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let parts: Vec<u8> = rest
        .split('.')
        .map(|p| {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse().ok()
            }
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [d, c, b, a] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut p = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(edns.is_some()),
        ];
        p.extend(encode_name(name));
        p.extend(qtype.to_be_bytes());
        p.extend(CLASS_IN.to_be_bytes());
        if let Some(size) = edns {
            p.push(0);
            p.extend(TYPE_OPT.to_be_bytes());
            p.extend(size.to_be_bytes());
            p.extend([0, 0, 0, 0, 0, 0]);
        }
        p
    }

    #[test]
    fn parses_a_query_and_lowercases_the_name() {
        let Parsed::Query(q) = parse(&query("Web.Example", TYPE_A, None)) else {
            panic!("not a query");
        };
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.name, "web.example");
        assert_eq!(q.qtype, TYPE_A);
        assert_eq!(q.edns_size, None);
        assert_eq!(udp_limit(&q), 512);
        let Parsed::Query(q) = parse(&query("web", TYPE_A, Some(4000))) else {
            panic!("not a query");
        };
        assert_eq!(q.edns_size, Some(4000));
        assert_eq!(udp_limit(&q), 4000);
    }

    #[test]
    fn finds_edns_after_other_records() {
        let mut p = query("web", TYPE_A, None);
        p[7] = 1; // one answer record (odd in a query), then the OPT record
        p[11] = 1;
        p.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        p.extend([0, 0, 41, 0x08, 0x00, 0, 0, 0, 0, 0, 0]);
        let Parsed::Query(q) = parse(&p) else {
            panic!("not a query");
        };
        assert_eq!(q.edns_size, Some(2048));
        // A record running past the end: no EDNS, still a query.
        let cut = &p[..p.len() - 14];
        let Parsed::Query(q) = parse(cut) else {
            panic!("not a query");
        };
        assert_eq!(q.edns_size, None);
    }

    #[test]
    fn escapes_odd_bytes_in_labels() {
        let mut p = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend([3, b'a', b'.', b'b', 1, 0xff, 0]);
        p.extend([0, 1, 0, 1]);
        let Parsed::Query(q) = parse(&p) else {
            panic!("not a query");
        };
        assert_eq!(q.name, "a\\046b.\\255");
    }

    #[test]
    fn refuses_bad_packets() {
        assert_eq!(parse(&[1, 2, 3]), Parsed::Ignore);
        let mut response = query("web", TYPE_A, None);
        response[2] |= 0x80;
        assert_eq!(parse(&response), Parsed::Ignore);
        let mut two = query("web", TYPE_A, None);
        two[5] = 2;
        assert!(matches!(
            parse(&two),
            Parsed::Error {
                rcode: RCODE_FORMERR,
                ..
            }
        ));
        let mut notify = query("web", TYPE_A, None);
        notify[2] = 0x20;
        assert!(matches!(
            parse(&notify),
            Parsed::Error {
                rcode: RCODE_NOTIMP,
                ..
            }
        ));
        let mut pointer = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        pointer.extend([0xc0, 0x0c, 0, 1, 0, 1]);
        assert!(matches!(
            parse(&pointer),
            Parsed::Error {
                rcode: RCODE_FORMERR,
                ..
            }
        ));
        let cut = query("web", TYPE_A, None);
        assert!(matches!(
            parse(&cut[..cut.len() - 2]),
            Parsed::Error {
                rcode: RCODE_FORMERR,
                ..
            }
        ));
    }

    #[test]
    fn builds_answers_and_truncates() {
        let Parsed::Query(q) = parse(&query("web", TYPE_A, None)) else {
            panic!("not a query");
        };
        let answers: Vec<Answer> = (0..100)
            .map(|i| Answer::A(Ipv4Addr::new(10, 0, 0, i)))
            .collect();
        let r = response(&q, RCODE_NOERROR, true, &answers[..2], 600, 512);
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(u16_at(&r, 2), Some(0x8580));
        assert_eq!(u16_at(&r, 6), Some(2));
        assert_eq!(r.len(), 12 + q.question.len() + 32);
        assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 1]);
        let r = response(&q, RCODE_NOERROR, true, &answers, 600, 512);
        assert!(r.len() <= 512);
        assert!(is_truncated(&r));
        assert_eq!(u16_at(&r, 6), Some(((512 - 12 - 9) / 16) as u16));
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_v4("5.0.89.10.in-addr.arpa"),
            Some(Ipv4Addr::new(10, 89, 0, 5))
        );
        assert_eq!(reverse_v4("0.89.10.in-addr.arpa"), None);
        assert_eq!(reverse_v4("x.0.89.10.in-addr.arpa"), None);
        assert_eq!(encode_name("a.bc"), vec![1, b'a', 2, b'b', b'c', 0]);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if p.len() > 5 && next() % 2 == 0 {
                p[2] &= 0x07;
                p[4] = 0;
                p[5] = 1;
            }
            if let Parsed::Query(q) = parse(&p) {
                let _ = response(
                    &q,
                    RCODE_NOERROR,
                    true,
                    &[Answer::A(Ipv4Addr::LOCALHOST)],
                    1,
                    512,
                );
            }
        }
    }
}
