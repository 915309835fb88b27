//! The tracker on memfd-backed mappings laid out like the payload maps: slot handout,
//! rebuilding from a reused slot map, and summing slices. The kernel side is tested through
//! BPF_PROG_TEST_RUN in `tests/tests/payload_kernel.rs`.

use std::{
    fs::File,
    io::{Seek as _, SeekFrom, Write as _},
    os::fd::{AsFd as _, FromRawFd as _},
};

use monitor_common::layout::slice_plan;

use super::*;

/// A memfd of `words` u64s, with `values[i] = (index, value)` written.
fn memfd(words: usize, values: &[(usize, u64)]) -> File {
    // SAFETY: a NUL-terminated name and no flags; the result is checked.
    let fd = unsafe { libc::memfd_create(c"portmon-payload-test".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.set_len((words * size_of::<u64>()) as u64)
        .expect("the memfd takes the map's size");
    for &(index, value) in values {
        file.seek(SeekFrom::Start((index * size_of::<u64>()) as u64))
            .expect("seek");
        file.write_all(&value.to_ne_bytes()).expect("write");
    }
    file
}

/// A tracker over memfds: the slot map holding `slots`, the counts `counts`, for `plan`.
fn tracker(
    plan: SlicePlan,
    slots: &[(usize, u64)],
    counts: &[(usize, u64)],
) -> (PayloadTracker, File, File) {
    let slot_file = memfd(PAYLOAD_SLOT_ENTRIES as usize, slots);
    let count_file = memfd(plan.payload_map_entries() as usize, counts);
    let slot_map = slot_file
        .as_fd()
        .try_clone_to_owned()
        .expect("the slot memfd's descriptor duplicates");
    let count_map = Mapping::map_fd(
        count_file.as_fd(),
        PAYLOAD_MAP,
        plan.payload_map_entries() as usize,
        false,
    )
    .expect("the count memfd maps");
    (
        PayloadTracker::from_maps(slot_map, count_map, plan).expect("the slot memfd maps"),
        slot_file,
        count_file,
    )
}

fn index(direction: Direction, l4: L4, port: u16) -> usize {
    port_index(direction, l4, port) as usize
}

#[test]
fn key_of_inverts_port_index() {
    for direction in Direction::ALL {
        for l4 in L4::ALL {
            for port in [0, 1, 443, u16::MAX] {
                assert_eq!(
                    key_of(index(direction, l4, port)),
                    Some((direction, l4, port)),
                    "{direction:?} {l4:?} {port}"
                );
            }
        }
    }
    assert_eq!(key_of(PAYLOAD_SLOT_ENTRIES as usize), None);
}

#[test]
fn slots_are_handed_out_in_order_once_each_until_full() {
    let (mut tracker, _slots, _counts) = tracker(slice_plan(2, 8), &[], &[]);
    let cases = [
        (
            "first port",
            (Direction::Ingress, L4::Tcp, 443),
            Tracking::New(1),
        ),
        (
            "second port",
            (Direction::Ingress, L4::Udp, 161),
            Tracking::New(2),
        ),
        (
            "same port again",
            (Direction::Ingress, L4::Tcp, 443),
            Tracking::Already(1),
        ),
        (
            "same number, egress",
            (Direction::Egress, L4::Tcp, 443),
            Tracking::New(3),
        ),
    ];
    for (name, (direction, l4, port), expected) in cases {
        let got = tracker.track(direction, l4, port).expect("tracking works");
        assert_eq!(got, expected, "{name}: expected {expected:?}, got {got:?}");
    }
    assert_eq!(tracker.slot(Direction::Ingress, L4::Udp, 161), Some(2));
    assert_eq!(tracker.slot(Direction::Egress, L4::Udp, 161), None);
    let mapped = map_slots(&tracker.slot_map).expect("the slot memfd maps");
    let words = mapped.words();
    assert_eq!(
        words[index(Direction::Ingress, L4::Udp, 161)].load(Ordering::Relaxed),
        2,
        "the slot is written where the kernel looks it up"
    );
    // Fill every remaining slot: 1023 in all (slot 0 means untracked).
    let mut port = 1000;
    while tracker.free() > 0 {
        let got = tracker
            .track(Direction::Egress, L4::Udp, port)
            .expect("tracking works");
        assert!(matches!(got, Tracking::New(_)), "port {port}: got {got:?}");
        port += 1;
    }
    assert_eq!(tracker.tracked(), PAYLOAD_SLOTS as usize - 1);
    assert_eq!(
        tracker
            .track(Direction::Ingress, L4::Tcp, 22)
            .expect("no error when full"),
        Tracking::Full
    );
    assert_eq!(
        tracker
            .track(Direction::Ingress, L4::Tcp, 443)
            .expect("tracked before"),
        Tracking::Already(1),
        "a tracked port keeps its slot when the map is full"
    );
}

#[test]
fn a_reused_slot_map_is_rebuilt_and_handout_continues_after_its_last_slot() {
    let https = index(Direction::Ingress, L4::Tcp, 443);
    let snmp = index(Direction::Egress, L4::Udp, 161);
    let twice = index(Direction::Egress, L4::Tcp, 443); // after `https` in index order
    let garbage = index(Direction::Ingress, L4::Tcp, 8080);
    let (mut tracker, _slots, _counts) = tracker(
        slice_plan(1, 8),
        &[
            (https, 7),
            (snmp, 2),
            (twice, 7), // slot 7 again: it would mix counts, dropped
            (garbage, u64::from(PAYLOAD_SLOTS)), // past the last slot: dropped
        ],
        &[],
    );
    assert_eq!(tracker.tracked(), 2, "two valid entries survive");
    assert_eq!(tracker.slot(Direction::Ingress, L4::Tcp, 443), Some(7));
    assert_eq!(tracker.slot(Direction::Egress, L4::Udp, 161), Some(2));
    let mapped = map_slots(&tracker.slot_map).expect("the slot memfd maps");
    let words = mapped.words();
    for (name, at) in [("duplicate", twice), ("out of range", garbage)] {
        assert_eq!(words[at].load(Ordering::Relaxed), 0, "{name} entry cleared");
    }
    assert_eq!(
        tracker
            .track(Direction::Ingress, L4::Tcp, 80)
            .expect("tracking works"),
        Tracking::New(8),
        "new slots start after the highest one found, never reusing a slot"
    );
    assert_eq!(
        tracker
            .track(Direction::Egress, L4::Udp, 161)
            .expect("tracking works"),
        Tracking::Already(2)
    );
}

#[test]
fn read_into_sums_the_slices_of_tracked_ports_only() {
    let plan = slice_plan(3, 8);
    let slice = PAYLOAD_SLICE_ENTRIES as usize;
    let cell = |slice_no: usize, slot: u32, kind: PayloadKind| {
        slice_no * slice + payload_index(slot, kind) as usize
    };
    let counts = [
        (cell(0, 1, PayloadKind::Tls), 5),
        (cell(1, 1, PayloadKind::Tls), 6),
        (cell(2, 1, PayloadKind::Tls), 7),
        (cell(2, 1, PayloadKind::SnmpV3), 1),
        (cell(0, 2, PayloadKind::Http), u64::MAX),
        (cell(1, 2, PayloadKind::Http), 3), // wraps like the kernel's counters
        (cell(0, 9, PayloadKind::Ssh), 99), // slot 9: not tracked, not reported
    ];
    let (mut tracker, _slots, _counts) = tracker(plan, &[], &counts);
    for (l4, port) in [(L4::Tcp, 443), (L4::Tcp, 80), (L4::Udp, 53)] {
        tracker
            .track(Direction::Ingress, l4, port)
            .expect("tracking works");
    }
    let mut totals = PayloadTotals::default();
    let capacity = totals.ports.capacity();
    tracker.read_into(&mut totals);
    let mut https = [0; KINDS];
    https[PayloadKind::Tls as usize] = 18;
    https[PayloadKind::SnmpV3 as usize] = 1;
    let mut http = [0; KINDS];
    http[PayloadKind::Http as usize] = 2;
    let expected = [
        ((Direction::Ingress, L4::Tcp, 80), http),
        ((Direction::Ingress, L4::Tcp, 443), https),
        ((Direction::Ingress, L4::Udp, 53), [0; KINDS]),
    ];
    let got: Vec<_> = totals.iter().collect();
    assert_eq!(got, expected, "every tracked port, in key order, summed");
    assert_eq!(totals.get(Direction::Ingress, L4::Tcp, 443), Some(https));
    assert_eq!(totals.get(Direction::Egress, L4::Tcp, 443), None);
    // A second read replaces, not adds, and does not grow the buffers.
    tracker.read_into(&mut totals);
    assert_eq!(totals.iter().collect::<Vec<_>>(), expected);
    assert_eq!(
        totals.ports.capacity(),
        capacity,
        "no reallocation per read"
    );
}
