//! The packet-shape table through the real kernel programs (BPF_PROG_TEST_RUN): for every
//! row and every program, exactly one packet is counted, in exactly the expected counter,
//! with the frame's length in bytes, the packet passes unchanged, and nothing else moves.
#![expect(clippy::expect_used, reason = "tests panic with what they expected")]

use aya::programs::ProgramError;
use monitor_common::layout::{Counter, Direction, L4, Reason};
use portmon::dataplane::LoadOptions;
use portmon_tests::{
    frames::{ETHERTYPE_ARP, Frame, Ipv4, Ipv6, TCP_SYN, Tcp, arp_request, cases, hex},
    testrun::{
        CounterKey, Delta, Hook, MIN_TC_IPV4_LEN, MIN_TC_IPV6_LEN, MIN_TEST_RUN_LEN, Runner,
        TestRunError, describe, expected_delta, refusal,
    },
};

#[test]
fn every_case_is_counted_once_in_its_counter_by_every_program() {
    every_case_is_counted_once(LoadOptions::default(), "a slice per CPU");
}

/// The same table through the programs' other build, for slices shared by several CPUs
/// (atomic adds), which `--max-slices 1` selects on any host.
#[test]
fn every_case_is_counted_once_by_the_shared_slice_build() {
    every_case_is_counted_once(
        LoadOptions {
            max_slices: 1,
            ..LoadOptions::default()
        },
        "one slice shared by every CPU",
    );
}

fn every_case_is_counted_once(options: LoadOptions, layout: &str) {
    let mut runner = Runner::with_options(options).expect("the data plane loads (run as root)");
    // One slice for all CPUs is shared only where there are several possible CPUs.
    assert_eq!(
        runner.plan().shared,
        options.max_slices == 1,
        "{layout}: expected this slice plan on a host with several possible CPUs, got {:?}",
        runner.plan()
    );
    let mut failures = Vec::new();
    let (mut counted, mut refused) = (0, 0);
    for case in cases() {
        for hook in Hook::ALL {
            if let Some(why) = refusal(hook, &case.frame) {
                // The kernel cannot run this frame through this hook (see `testrun`):
                // check that it indeed refuses, and that nothing was counted.
                refused += 1;
                match runner.run_unchecked(hook, &case.frame, None) {
                    Err(ProgramError::SyscallError(error))
                        if error.io_error.raw_os_error() == Some(libc::EINVAL) => {}
                    other => failures.push(format!(
                        "{} / {hook}: expected the kernel to refuse it ({why}), got {other:?}",
                        case.name
                    )),
                }
                let delta = runner.snapshot_delta();
                if !delta.is_empty() {
                    failures.push(format!(
                        "{} / {hook}: a refused run counted {}",
                        case.name,
                        describe(&delta)
                    ));
                }
                continue;
            }
            counted += 1;
            let expected = expected_delta(hook.direction(), &case.expected, case.frame.len());
            match runner.run(hook, &case.frame) {
                Ok(got) if got == expected => {}
                Ok(got) => failures.push(format!(
                    "{} / {hook}:\n  expected {}\n  got      {}\n  frame {}",
                    case.name,
                    describe(&expected),
                    describe(&got),
                    hex(&case.frame)
                )),
                Err(error) => failures.push(format!("{} / {hook}: {error}", case.name)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{layout}: {} of {} runs failed:\n{}",
        failures.len(),
        counted + refused,
        failures.join("\n")
    );
    // Most rows must really run in the kernel, not be skipped as refused.
    assert!(
        counted > 9 * refused,
        "expected nearly every row to run: {counted} ran, {refused} refused"
    );
}

/// N packets in, N counted: through N separate runs, and through the kernel's own repeat
/// loop in one run.
#[test]
fn repeated_runs_count_every_packet() {
    const REPEAT: u32 = 1000;
    let mut runner = Runner::new().expect("the data plane loads (run as root)");
    let frame = Frame::new()
        .ipv4(Ipv4::new())
        .tcp(Tcp::new(443).flags(TCP_SYN))
        .build();
    let expected_counter = Counter {
        packets: REPEAT.into(),
        bytes: u64::from(REPEAT) * frame.len() as u64,
        syns: REPEAT.into(),
    };
    for hook in Hook::ALL {
        let expected = Delta::from([(
            CounterKey::Port(hook.direction(), L4::Tcp, 443),
            expected_counter,
        )]);
        let batch = std::iter::repeat_n(frame.as_slice(), REPEAT as usize);
        let separate = runner.run_batch(hook, batch).expect("the batch runs");
        let in_kernel = runner
            .run_repeated(hook, &frame, REPEAT)
            .expect("the repeated run runs");
        for (how, got) in [("separate runs", separate), ("kernel repeat", in_kernel)] {
            assert_eq!(
                got,
                expected,
                "{hook}, {how}: expected {}, got {}",
                describe(&expected),
                describe(&got)
            );
        }
    }
}

/// Frames shorter than an Ethernet header cannot be test-run: the kernel answers EINVAL
/// for XDP and TC alike (`bpf_test_init()`), the harness says so, and nothing is counted.
#[test]
fn runts_are_refused_by_the_kernel() {
    let mut runner = Runner::new().expect("the data plane loads (run as root)");
    let arp = Frame::new()
        .ethertype(ETHERTYPE_ARP)
        .payload(&arp_request())
        .build();
    let runt = &arp[..MIN_TEST_RUN_LEN - 1];
    for hook in Hook::ALL {
        match runner.run_unchecked(hook, runt, None) {
            Err(ProgramError::SyscallError(error))
                if error.io_error.raw_os_error() == Some(libc::EINVAL) => {}
            other => panic!("{hook}: expected EINVAL for a 13-byte frame, got {other:?}"),
        }
        assert!(
            matches!(runner.run(hook, runt), Err(TestRunError::Refused { .. })),
            "{hook}: expected the harness to report the runt as refused"
        );
        let delta = runner.snapshot_delta();
        assert!(
            delta.is_empty(),
            "{hook}: a refused run counted {}",
            describe(&delta)
        );
    }
    // The shortest frame every hook accepts: a bare Ethernet header (non-IP).
    let header = &arp[..MIN_TEST_RUN_LEN];
    for hook in Hook::ALL {
        let delta = runner.run(hook, header).expect("a 14-byte frame runs");
        let expected = expected_delta(
            hook.direction(),
            &portmon_tests::frames::reason(Reason::NonIp),
            header.len(),
        );
        assert_eq!(
            delta,
            expected,
            "{hook}: expected {}, got {}",
            describe(&expected),
            describe(&delta)
        );
    }
}

/// TC test runs refuse IP-ethertype frames shorter than the IP header; every such frame
/// still runs through XDP, and one byte more runs through TC.
#[test]
fn tc_refuses_ip_frames_shorter_than_the_ip_header() {
    let mut runner = Runner::new().expect("the data plane loads (run as root)");
    let v4 = Frame::new().ipv4(Ipv4::new()).tcp(Tcp::new(1)).build();
    let v6 = Frame::new().ipv6(Ipv6::new()).tcp(Tcp::new(1)).build();
    for (frame, min) in [(&v4, MIN_TC_IPV4_LEN), (&v6, MIN_TC_IPV6_LEN)] {
        for hook in [Hook::TcEgress, Hook::TcIngress] {
            let short = runner.run_unchecked(hook, &frame[..min - 1], None);
            assert!(
                matches!(&short, Err(ProgramError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EINVAL)),
                "{hook}: expected EINVAL for {} bytes, got {short:?}",
                min - 1
            );
            let at_min = runner.run(hook, &frame[..min]);
            assert!(
                at_min.is_ok(),
                "{hook}: expected {min} bytes to run, got {at_min:?}"
            );
        }
        let xdp = runner.run(Hook::Xdp, &frame[..MIN_TEST_RUN_LEN]);
        assert!(xdp.is_ok(), "XDP runs 14 bytes of any frame, got {xdp:?}");
    }
}

/// The two directions never mix: TC egress counts under egress only, XDP and TC ingress
/// under ingress only (checked per row above through `expected_delta`; this makes the
/// direction itself visible in one place).
#[test]
fn directions_do_not_mix() {
    let mut runner = Runner::new().expect("the data plane loads (run as root)");
    let frame = Frame::new().ipv4(Ipv4::new()).tcp(Tcp::new(8443)).build();
    for (hook, direction) in [
        (Hook::Xdp, Direction::Ingress),
        (Hook::TcIngress, Direction::Ingress),
        (Hook::TcEgress, Direction::Egress),
    ] {
        let delta = runner.run(hook, &frame).expect("the frame runs");
        let keys: Vec<_> = delta.keys().copied().collect();
        assert_eq!(
            keys,
            vec![CounterKey::Port(direction, L4::Tcp, 8443)],
            "{hook}: expected one counter under {direction:?}"
        );
    }
}
