//! Just enough DNS (RFC 1035) for the demo: a client's A query and a server's answer.
//!
//! Every answer points into TEST-NET-1 (192.0.2.0/24, RFC 5737), which is never contacted.

use std::net::Ipv4Addr;

/// Header flags of a query: RD (recursion desired).
const QUERY_FLAGS: u16 = 0x0100;
/// Header flags of an answer: QR, RD, RA, NOERROR.
const ANSWER_FLAGS: u16 = 0x8180;
/// QTYPE A and QCLASS IN.
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// Header length.
const HEADER: usize = 12;

/// An A query for `name` with transaction `id`.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(HEADER + name.len() + 6);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&QUERY_FLAGS.to_be_bytes());
    packet.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question, no other records
    for label in name.split('.').filter(|label| !label.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        packet.push(u8::try_from(bytes.len()).unwrap_or(63));
        packet.extend_from_slice(bytes);
    }
    packet.push(0);
    packet.extend_from_slice(&TYPE_A.to_be_bytes());
    packet.extend_from_slice(&CLASS_IN.to_be_bytes());
    packet
}

/// The answer to `query`: its question echoed and, for an A question, one A record in
/// 192.0.2.0/24 picked from the name. `None` for anything that is not a one-question query.
pub fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..HEADER)?;
    let is_query = header[2] & 0x80 == 0;
    let questions = u16::from_be_bytes([header[4], header[5]]);
    if !is_query || questions != 1 {
        return None;
    }
    let question_end = question_end(query)?;
    let question = &query[HEADER..question_end];
    let qtype = u16::from_be_bytes([query[question_end - 4], query[question_end - 3]]);
    let answers: u16 = u16::from(qtype == TYPE_A);
    let mut packet = Vec::with_capacity(question_end + 16);
    packet.extend_from_slice(&header[..2]);
    packet.extend_from_slice(&ANSWER_FLAGS.to_be_bytes());
    packet.extend_from_slice(&[0, 1]);
    packet.extend_from_slice(&answers.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0]);
    packet.extend_from_slice(question);
    if answers == 1 {
        let host = question
            .iter()
            .fold(1u8, |acc, byte| acc.wrapping_add(*byte))
            % 254
            + 1;
        packet.extend_from_slice(&[0xc0, 0x0c]); // the name: a pointer to the question's
        packet.extend_from_slice(&TYPE_A.to_be_bytes());
        packet.extend_from_slice(&CLASS_IN.to_be_bytes());
        packet.extend_from_slice(&60u32.to_be_bytes()); // TTL
        packet.extend_from_slice(&4u16.to_be_bytes());
        packet.extend_from_slice(&Ipv4Addr::new(192, 0, 2, host).octets());
    }
    Some(packet)
}

/// The address an answer to transaction `id` carries, if `packet` is one.
pub fn answered_address(id: u16, packet: &[u8]) -> Option<Ipv4Addr> {
    let header = packet.get(..HEADER)?;
    if u16::from_be_bytes([header[0], header[1]]) != id || header[2] & 0x80 == 0 {
        return None;
    }
    let record = packet.get(question_end(packet)?..)?;
    let address: [u8; 4] = record.get(12..16)?.try_into().ok()?;
    Some(Ipv4Addr::from(address))
}

/// Where the (single) question of `packet` ends: after its name, QTYPE and QCLASS.
fn question_end(packet: &[u8]) -> Option<usize> {
    let mut offset = HEADER;
    loop {
        let length = usize::from(*packet.get(offset)?);
        offset += 1;
        if length == 0 {
            break;
        }
        if length > 63 {
            return None; // compression or a bad label: not in a query we sent
        }
        offset += length;
    }
    let end = offset + 4;
    (end <= packet.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_what_was_asked() {
        let cases = [
            ("plain name", "www.example.com", 7),
            ("trailing dot", "mail.example.org.", 0xbeef),
            ("single label", "localhost", 1),
        ];
        for (name, qname, id) in cases {
            let query = query(id, qname);
            let answer =
                answer(&query).unwrap_or_else(|| panic!("{name}: expected an answer, got none"));
            let address = answered_address(id, &answer);
            assert!(
                address.is_some_and(|address| address.octets()[..3] == [192, 0, 2]),
                "{name}: expected an address in 192.0.2.0/24, got {address:?}"
            );
            assert_eq!(
                answered_address(id.wrapping_add(1), &answer),
                None,
                "{name}: another transaction id must not match"
            );
        }
    }

    #[test]
    fn ignores_what_is_not_a_query() {
        let good = query(3, "example.net");
        let mut response = good.clone();
        response[2] |= 0x80;
        let cases: [(&str, Vec<u8>); 3] = [
            ("too short", good[..5].to_vec()),
            ("a response", response),
            ("name cut off", good[..HEADER + 4].to_vec()),
        ];
        for (name, packet) in cases {
            assert_eq!(answer(&packet), None, "{name}: expected no answer");
        }
    }
}
