//! Differential test of payload classification: thousands of generated payloads, in
//! generated carriers, go through the real XDP and TC programs (BPF_PROG_TEST_RUN) and
//! through `payload::reference`, the plain host classifier that shares no code with the
//! kernel's. The payload counts must agree exactly.
//!
//! Payloads are monitor-common's samples of every kind, mutated by its seeded mutator (a
//! byte changed, nudged or case-flipped, inserted, removed, a cut), plus uniform noise.
//! Carriers: IPv4 or IPv6, TCP or UDP, zero to two VLAN tags, sometimes followed by bytes
//! past the IP packet. The reference classifies the bytes the host parser calls payload,
//! so this compares the classifiers, the reads and the counting, not the parser (which
//! `differential.rs` compares against etherparse).
//!
//! Frames run in batches, one payload snapshot per batch; a batch whose counts differ is
//! re-run frame by frame to name the culprit.
#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use monitor_common::{
    layout::{Direction, L4},
    parse::{Parsed, parse},
    payload::{
        PayloadKind, reference,
        samples::{Rng, corpus, mutate},
    },
};
use portmon_tests::{
    frames::{Frame, Ipv4, Ipv6, TCP_ACK, TCP_PSH, TPID_QINQ, TPID_VLAN, Tcp, Udp, hex},
    testrun::{Hook, PayloadDelta, Runner, describe_payload},
};

/// Fixed seed: the same frames on every run.
const SEED: u64 = 0x7061_796c_6f61_646b; // "payloadk"
/// Frames generated.
const FRAMES: usize = 6000;
/// Frames per kernel batch.
const BATCH: usize = 200;
/// Tracked ports: this many TCP ports from [`TCP_BASE`] and UDP ports from [`UDP_BASE`].
const PORTS_PER_L4: u16 = 8;
const TCP_BASE: u16 = 5000;
const UDP_BASE: u16 = 6000;

struct Generated {
    frame: Vec<u8>,
    /// The port it is counted under and what the reference says, if counted.
    expected: Option<((L4, u16), PayloadKind)>,
}

fn payload(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = if rng.below(6) == 0 {
        (0..rng.below(48)).map(|_| rng.byte()).collect()
    } else {
        corpus[rng.below(corpus.len())].clone()
    };
    for _ in 0..rng.below(4) {
        mutate(rng, &mut payload);
    }
    payload
}

fn frame(rng: &mut Rng, payload: &[u8]) -> Vec<u8> {
    let udp = rng.below(2) == 0;
    let port_offset = u16::try_from(rng.below(usize::from(PORTS_PER_L4))).expect("below 8");
    let mut frame = if rng.below(3) == 0 {
        Frame::new().ipv6(Ipv6::new())
    } else {
        Frame::new().ipv4(Ipv4::new())
    };
    frame = if udp {
        frame.udp(Udp::new(UDP_BASE + port_offset))
    } else {
        frame.tcp(Tcp::new(TCP_BASE + port_offset).flags(TCP_ACK | TCP_PSH))
    };
    match rng.below(6) {
        0 => frame = frame.vlan(TPID_VLAN, 7),
        1 => frame = frame.vlan(TPID_QINQ, 8).vlan(TPID_VLAN, 9),
        _ => {}
    }
    // Bytes past the IP packet (padding, a trailer) must never be read as payload.
    let pad = if rng.below(4) == 0 {
        Some(frame.build().len() + 1 + rng.below(24))
    } else {
        None
    };
    let mut built = frame.payload(payload).build();
    if let Some(len) = pad {
        let trailer: Vec<u8> = b"T / HTTP/1.1\r\n\r\n"
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect();
        if built.len() < len {
            built.extend_from_slice(&trailer[..len - built.len()]);
        }
    }
    built
}

fn generate() -> Vec<Generated> {
    let corpus = corpus();
    let mut rng = Rng(SEED);
    (0..FRAMES)
        .map(|_| {
            let payload = payload(&mut rng, &corpus);
            let frame = frame(&mut rng, &payload);
            let expected = match parse(frame.as_slice(), frame.len()) {
                Parsed::Port {
                    l4,
                    port,
                    payload_offset,
                    payload_len,
                    ..
                } => {
                    let start = usize::from(payload_offset);
                    let kind = reference::classify(&frame[start..start + usize::from(payload_len)]);
                    ((kind as u32) < PayloadKind::SIGNATURES).then_some(((l4, port), kind))
                }
                Parsed::Unparsed { .. } => None,
            };
            Generated { frame, expected }
        })
        .collect()
}

fn expected_delta<'a>(
    direction: Direction,
    batch: impl IntoIterator<Item = &'a Generated>,
) -> PayloadDelta {
    let mut delta = PayloadDelta::new();
    for generated in batch {
        if let Some(((l4, port), kind)) = generated.expected {
            *delta.entry(((direction, l4, port), kind)).or_default() += 1;
        }
    }
    delta
}

#[test]
fn the_kernel_classifies_generated_payloads_exactly_as_the_reference() {
    let generated = generate();
    let mut seen = [0usize; PayloadKind::COUNT as usize];
    for g in &generated {
        if let Some((_, kind)) = g.expected {
            seen[kind as usize] += 1;
        }
    }
    for kind in PayloadKind::ALL
        .iter()
        .take(PayloadKind::SIGNATURES as usize)
    {
        assert!(
            seen[*kind as usize] >= 50,
            "expected at least 50 generated payloads of kind {kind:?}, got {} ({seen:?})",
            seen[*kind as usize]
        );
    }
    let mut runner = Runner::new().expect("the data plane loads (run as root)");
    for direction in Direction::ALL {
        for offset in 0..PORTS_PER_L4 {
            for (l4, port) in [(L4::Tcp, TCP_BASE + offset), (L4::Udp, UDP_BASE + offset)] {
                runner.track(direction, l4, port).expect("tracking works");
            }
        }
    }
    let mut failures = Vec::new();
    let mut compared = 0;
    for hook in Hook::ALL {
        for batch in generated.chunks(BATCH) {
            let frames = batch.iter().map(|g| g.frame.as_slice());
            runner
                .run_batch(hook, frames)
                .expect("every generated frame runs");
            let got = runner.payload_delta();
            let expected = expected_delta(hook.direction(), batch);
            compared += batch.len();
            if got == expected {
                continue;
            }
            // Name the culprits.
            for g in batch {
                runner.run(hook, &g.frame).expect("the frame runs");
                let got = runner.payload_delta();
                let expected = expected_delta(hook.direction(), std::iter::once(g));
                if got != expected && failures.len() < 20 {
                    failures.push(format!(
                        "{hook}: expected {}, got {}\n  frame {}",
                        describe_payload(&expected),
                        describe_payload(&got),
                        hex(&g.frame)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "the kernel and the reference disagree:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        compared,
        3 * FRAMES,
        "every frame ran through every program"
    );
}
