//! Smoke tests of the parser on hand-built frames. The full table of packet shapes, run
//! both here on the host and in the kernel, lives in the `portmon-tests` crate.

use super::*;

extern crate std;
use std::vec::Vec;

fn ipv4_tcp(dst_port: u16, flags: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00]);
    f.extend_from_slice(&[
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    let p = dst_port.to_be_bytes();
    f.extend_from_slice(&[
        0x30, 0x39, p[0], p[1], 0, 0, 0, 0, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f
}

#[test]
fn tcp_syn_is_counted_under_its_destination_port() {
    let frame = ipv4_tcp(443, 0x02);
    assert_eq!(
        parse(frame.as_slice(), frame.len()),
        Parsed::Port {
            l4: L4::Tcp,
            port: 443,
            syn: true,
            payload_offset: 54
        }
    );
}

#[test]
fn syn_ack_is_not_a_syn() {
    let frame = ipv4_tcp(443, 0x12);
    assert_eq!(
        parse(frame.as_slice(), frame.len()),
        Parsed::Port {
            l4: L4::Tcp,
            port: 443,
            syn: false,
            payload_offset: 54
        }
    );
}

#[test]
fn every_truncation_of_a_valid_frame_is_malformed() {
    let frame = ipv4_tcp(80, 0x10);
    for cut in 0..frame.len() {
        let short = &frame[..cut];
        assert_eq!(
            parse(short, short.len()),
            Parsed::MALFORMED,
            "frame cut to {cut} bytes"
        );
    }
}

#[test]
fn trailing_ethernet_padding_is_ignored() {
    let mut frame = ipv4_tcp(22, 0x10);
    frame.resize(60, 0);
    assert_eq!(
        parse(frame.as_slice(), frame.len()),
        Parsed::Port {
            l4: L4::Tcp,
            port: 22,
            syn: false,
            payload_offset: 54
        }
    );
}
