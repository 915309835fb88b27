//! The counter map: its name, its entry type and where each counter lives in it.
//!
//! One `BPF_MAP_TYPE_ARRAY` with `BPF_F_MMAPABLE`, holding `slice_count` slices of
//! [`SLICE_ENTRIES`] counters each. A packet is counted in the slice of the CPU that
//! runs the program:
//!
//! * when there are no more possible CPUs than [`DEFAULT_MAX_SLICES`], every CPU owns
//!   one slice and increments it with plain adds (no atomics: a CPU never races itself,
//!   XDP and TC programs run with migration disabled and do not nest on one CPU);
//! * above the cap, CPU `n` writes slice `n & (slice_count - 1)` with atomic adds, so
//!   kernel memory stays bounded on hosts with hundreds of CPUs.
//!
//! The daemon maps the whole array read-only and sums the slices: one linear scan,
//! no syscall per key.
//!
//! The payload maps (the last section of this file) follow the same slicing.

use crate::payload::PayloadKind;

/// Name of the counter map in the eBPF object.
pub const COUNTERS_MAP: &str = "PORTMON_COUNTERS";

/// Load-time global: number of slices in the counter map.
pub const GLOBAL_SLICE_COUNT: &str = "PORTMON_SLICE_COUNT";
/// Load-time global: non-zero turns on per-packet debug logging through aya-log.
pub const GLOBAL_DEBUG: &str = "PORTMON_DEBUG";

/// Load-time global: non-zero turns on payload classification (see [`crate::payload`]).
/// Zero makes the verifier drop the whole payload path: not even the branch is left.
pub const GLOBAL_PAYLOAD: &str = "PORTMON_PAYLOAD_ENABLED";

/// The maps that carry state across daemon restarts: each is pinned per interface and a
/// restarted daemon reuses it instead of creating a fresh one. Every map whose contents must
/// survive (counters, per-port state) belongs here; scratch maps (the log ring, per-packet
/// buffers) do not. A change to any listed map's key, value or size needs a
/// [`LAYOUT_VERSION`] bump, which is all it takes for the old pins to be replaced.
///
/// The payload maps are pinned together: the counts are only meaningful with the slot map
/// that says which port each slot belongs to.
pub const PINNED_MAPS: &[&str] = &[COUNTERS_MAP, PAYLOAD_SLOT_MAP, PAYLOAD_MAP];

/// Version of the map layout. Bump it whenever [`Counter`], the index functions or any map
/// of [`PINNED_MAPS`] change, so that a pinned map from an older build is replaced instead
/// of misread (the daemon keys its pin directory on it). 2: the payload maps.
pub const LAYOUT_VERSION: u32 = 2;

/// Default cap on the number of slices. A power of two.
///
/// 8 slices of [`SLICE_BYTES`] are about 48 MiB, within the 64 MiB budget for big hosts.
pub const DEFAULT_MAX_SLICES: u32 = 8;

/// Number of destination ports per L4 protocol.
pub const PORTS: u32 = 1 << 16;
/// Number of IP protocol numbers.
pub const IP_PROTOCOLS: u32 = 256;
/// Room kept for [`Reason`] counters per direction (more than the variants, for growth).
pub const REASON_SLOTS: u32 = 16;

/// Where the per-port counters start in a slice: `[direction][l4][port]`.
pub const PORT_BASE: u32 = 0;
/// Where the per-IP-protocol counters start: `[direction][ip_protocol]`.
pub const IP_PROTOCOL_BASE: u32 = PORT_BASE + Direction::COUNT * L4::COUNT * PORTS;
/// Where the unparsed-reason counters start: `[direction][reason]`.
pub const REASON_BASE: u32 = IP_PROTOCOL_BASE + Direction::COUNT * IP_PROTOCOLS;
/// Counters in one slice.
pub const SLICE_ENTRIES: u32 = REASON_BASE + Direction::COUNT * REASON_SLOTS;
/// Bytes of one slice.
pub const SLICE_BYTES: u64 = SLICE_ENTRIES as u64 * core::mem::size_of::<Counter>() as u64;

/// One counter cell. Shared by the kernel (writer) and the daemon (reader).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets counted.
    pub packets: u64,
    /// Bytes: the frame length seen at the hook, link-layer header included.
    pub bytes: u64,
    /// TCP segments with SYN set and ACK clear (connection attempts). Zero elsewhere.
    pub syns: u64,
}

const _: () = assert!(core::mem::size_of::<Counter>() == 24);
const _: () = assert!(core::mem::align_of::<Counter>() == 8);

#[cfg(feature = "user")]
// SAFETY: `Counter` is `repr(C)`, made only of `u64`s, has no padding (asserted above)
// and every bit pattern is a valid value.
unsafe impl aya::Pod for Counter {}

impl Counter {
    /// Adds `other` into `self`, wrapping like the kernel's u64 counters do.
    #[inline]
    pub fn accumulate(&mut self, other: &Counter) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.syns = self.syns.wrapping_add(other.syns);
    }
}

/// Which hook saw the packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Received: the XDP program (or TC ingress).
    Ingress = 0,
    /// Sent: the TC egress program.
    Egress = 1,
}

impl Direction {
    /// Number of directions.
    pub const COUNT: u32 = 2;
    /// Every direction, in index order.
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// The label used in metrics and output.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// The L4 protocols counted per destination port.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4 {
    /// TCP, IP protocol 6.
    Tcp = 0,
    /// UDP, IP protocol 17.
    Udp = 1,
}

impl L4 {
    /// Number of per-port L4 protocols.
    pub const COUNT: u32 = 2;
    /// Every per-port protocol, in index order.
    pub const ALL: [L4; 2] = [L4::Tcp, L4::Udp];

    /// The label used in metrics and output.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }
}

/// Why a packet was not counted under a port.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The ethertype is not IPv4 or IPv6 (ARP, LLDP, more than two VLAN tags, ...).
    NonIp = 0,
    /// An IPv4 fragment with a non-zero offset, or an IPv6 fragment header with one.
    Fragment = 1,
    /// ICMP or ICMPv6. A TCP/UDP header quoted in an ICMP error is never counted as a port.
    Icmp = 2,
    /// An IP protocol other than TCP, UDP and ICMP (SCTP, GRE, ESP, ...).
    OtherL4 = 3,
    /// A truncated or inconsistent header.
    Malformed = 4,
    /// More IPv6 extension headers than [`crate::parse::MAX_IPV6_EXT_HEADERS`].
    Ipv6ExtLimit = 5,
    /// The kernel program failed internally (a map lookup returned nothing); the packet passed.
    InternalError = 6,
}

impl Reason {
    /// Every reason, in index order.
    pub const ALL: [Reason; 7] = [
        Reason::NonIp,
        Reason::Fragment,
        Reason::Icmp,
        Reason::OtherL4,
        Reason::Malformed,
        Reason::Ipv6ExtLimit,
        Reason::InternalError,
    ];

    /// The label used in metrics and output.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::NonIp => "non_ip",
            Reason::Fragment => "fragment",
            Reason::Icmp => "icmp",
            Reason::OtherL4 => "other_l4",
            Reason::Malformed => "malformed",
            Reason::Ipv6ExtLimit => "ipv6_ext_limit",
            Reason::InternalError => "internal_error",
        }
    }
}

const _: () = assert!(Reason::ALL.len() <= REASON_SLOTS as usize);

/// Index, within a slice, of the counter for `port` of `l4` seen in `direction`.
#[inline(always)]
#[must_use]
pub const fn port_index(direction: Direction, l4: L4, port: u16) -> u32 {
    PORT_BASE + ((direction as u32 * L4::COUNT + l4 as u32) * PORTS) + port as u32
}

/// Index, within a slice, of the counter for IP protocol `ip_protocol` seen in `direction`.
#[inline(always)]
#[must_use]
pub const fn ip_protocol_index(direction: Direction, ip_protocol: u8) -> u32 {
    IP_PROTOCOL_BASE + direction as u32 * IP_PROTOCOLS + ip_protocol as u32
}

/// Index, within a slice, of the counter for `reason` seen in `direction`.
#[inline(always)]
#[must_use]
pub const fn reason_index(direction: Direction, reason: Reason) -> u32 {
    REASON_BASE + direction as u32 * REASON_SLOTS + reason as u32
}

/// How many slices the counter map gets for `possible_cpus` CPUs under a cap of `max_slices`
/// (rounded down to a power of two, at least 1), and whether CPUs share slices.
#[must_use]
pub const fn slice_plan(possible_cpus: u32, max_slices: u32) -> SlicePlan {
    let cpus = if possible_cpus == 0 { 1 } else { possible_cpus };
    let cap = if max_slices == 0 {
        1
    } else {
        1 << max_slices.ilog2()
    };
    if cpus <= cap {
        SlicePlan {
            slices: cpus,
            shared: false,
        }
    } else {
        SlicePlan {
            slices: cap,
            shared: true,
        }
    }
}

/// The outcome of [`slice_plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlicePlan {
    /// Slices in the counter map.
    pub slices: u32,
    /// Whether several CPUs write one slice (atomic adds).
    pub shared: bool,
}

impl SlicePlan {
    /// Entries of the whole counter map.
    #[must_use]
    pub const fn map_entries(self) -> u32 {
        self.slices * SLICE_ENTRIES
    }

    /// Bytes of counter values in the whole map (the kernel rounds up to pages).
    #[must_use]
    pub const fn map_bytes(self) -> u64 {
        self.slices as u64 * SLICE_BYTES
    }
}

// ---- Payload classification ------------------------------------------------------------
//
// Two maps, written per packet only for the ports user space asked for:
//
// * `PORTMON_PAYLOAD_SLOT`, one `u64` per (direction, l4, port) at [`port_index`]: 0 means
//   the port is not tracked, `n` (1 to `PAYLOAD_SLOTS - 1`) that its payloads are counted
//   in slot `n`. Written by user space only, through a writable mapping (`BPF_F_MMAPABLE`):
//   an mmapped map is written with plain stores, so no `bpf()` call and no capability is
//   needed once the daemon has mapped it. The value is a `u64` because the kernel rounds
//   every array element up to 8 bytes anyway (`round_up(value_size, 8)` in
//   `array_map_alloc()`, kernel/bpf/arraymap.c), so a `u16` would take as much memory and
//   leave a mapping with a stride unlike its type.
// * `PORTMON_PAYLOAD`, `BPF_F_MMAPABLE`, sliced per CPU like the counter map: in each
//   slice, `[slot][kind]` counts of [`PayloadKind::SIGNATURES`] `u64`s. Slot 0 is never
//   written (it means "not tracked"), which keeps the index a plain product.

/// Name of the map that says which ports' payloads are classified, and in which slot.
pub const PAYLOAD_SLOT_MAP: &str = "PORTMON_PAYLOAD_SLOT";
/// Name of the payload counter map.
pub const PAYLOAD_MAP: &str = "PORTMON_PAYLOAD";

/// Slots of the payload counter map, including the unused slot 0: at most
/// `PAYLOAD_SLOTS - 1` ports are tracked at a time.
pub const PAYLOAD_SLOTS: u32 = 1024;
/// Entries of the slot map: one per (direction, l4, port), indexed by [`port_index`].
pub const PAYLOAD_SLOT_ENTRIES: u32 = Direction::COUNT * L4::COUNT * PORTS;
/// Counters in one slice of the payload counter map.
pub const PAYLOAD_SLICE_ENTRIES: u32 = PAYLOAD_SLOTS * PayloadKind::SIGNATURES;
/// Bytes of one slice of the payload counter map (56 KiB).
pub const PAYLOAD_SLICE_BYTES: u64 = PAYLOAD_SLICE_ENTRIES as u64 * 8;

const _: () = assert!(port_index(Direction::Egress, L4::Udp, u16::MAX) < PAYLOAD_SLOT_ENTRIES);

/// Index, within a slice of the payload counter map, of the count of `kind` in `slot`.
/// `kind` must be a signature kind (before [`PayloadKind::Other`]), `slot` below
/// [`PAYLOAD_SLOTS`].
#[inline(always)]
#[must_use]
pub const fn payload_index(slot: u32, kind: PayloadKind) -> u32 {
    slot * PayloadKind::SIGNATURES + kind as u32
}

impl SlicePlan {
    /// Entries of the whole payload counter map.
    #[must_use]
    pub const fn payload_map_entries(self) -> u32 {
        self.slices * PAYLOAD_SLICE_ENTRIES
    }

    /// Bytes of the whole payload counter map (the kernel rounds up to pages).
    #[must_use]
    pub const fn payload_map_bytes(self) -> u64 {
        self.slices as u64 * PAYLOAD_SLICE_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_disjoint_and_within_a_slice() {
        let last_port = port_index(Direction::Egress, L4::Udp, u16::MAX);
        assert_eq!(last_port + 1, IP_PROTOCOL_BASE);
        assert_eq!(
            ip_protocol_index(Direction::Egress, u8::MAX) + 1,
            REASON_BASE
        );
        assert!(reason_index(Direction::Egress, Reason::InternalError) < SLICE_ENTRIES);
        assert_eq!(port_index(Direction::Ingress, L4::Udp, 0), PORTS);
    }

    #[test]
    fn slice_plan_owns_slices_up_to_the_cap_then_shares() {
        assert_eq!(
            slice_plan(2, 8),
            SlicePlan {
                slices: 2,
                shared: false
            }
        );
        assert_eq!(
            slice_plan(8, 8),
            SlicePlan {
                slices: 8,
                shared: false
            }
        );
        assert_eq!(
            slice_plan(256, 8),
            SlicePlan {
                slices: 8,
                shared: true
            }
        );
        // A cap that is not a power of two is rounded down so that `cpu & (slices - 1)` works.
        assert_eq!(
            slice_plan(64, 12),
            SlicePlan {
                slices: 8,
                shared: true
            }
        );
        assert_eq!(slice_plan(0, 0).slices, 1);
    }

    #[test]
    fn payload_indices_stay_within_a_slice() {
        assert_eq!(payload_index(0, PayloadKind::Tls), 0);
        assert_eq!(
            payload_index(PAYLOAD_SLOTS - 1, PayloadKind::SnmpV3) + 1,
            PAYLOAD_SLICE_ENTRIES
        );
        assert_eq!(
            payload_index(1, PayloadKind::Tls),
            payload_index(0, PayloadKind::SnmpV3) + 1,
            "slots follow each other without a gap"
        );
        const { assert!(PAYLOAD_SLICE_BYTES <= 64 << 10, "about 64 KiB per slice") };
    }

    #[test]
    fn memory_stays_within_budget() {
        assert!(slice_plan(2, DEFAULT_MAX_SLICES).map_bytes() <= 16 << 20);
        assert!(slice_plan(256, DEFAULT_MAX_SLICES).map_bytes() <= 64 << 20);
    }
}
