//! Running frames through portmon's real kernel programs with BPF_PROG_TEST_RUN, and
//! measuring exactly what each run changed in the counter map.
//!
//! A [`Runner`] loads the data plane (all three programs sharing one counter map) and runs
//! a frame through one [`Hook`]. It reads every counter before and after and returns the
//! difference of ALL of them ([`Delta`]), so a test can assert that one packet landed in
//! exactly one place and nothing else moved. [`expected_delta`] turns a parser verdict
//! into the delta the kernel must produce, so tests compare two deltas.
//!
//! # Frames the kernel refuses to test-run
//!
//! BPF_PROG_TEST_RUN does not accept every frame a real hook can see:
//!
//! * shorter than `ETH_HLEN` (14 bytes), for XDP and TC alike: `bpf_test_init()` in
//!   `net/bpf/test_run.c` returns `-EINVAL` when `user_size < ETH_HLEN` (since v4.12,
//!   commit 1cf1cae963c2 which introduced BPF_PROG_TEST_RUN);
//! * for TC (`bpf_prog_test_run_skb()`), an IPv4-ethertype frame shorter than an Ethernet
//!   plus an IPv4 header (34 bytes), or an IPv6-ethertype frame shorter than an Ethernet
//!   plus an IPv6 header (54 bytes): `-EINVAL` as well. Only the outer ethertype matters
//!   (a VLAN-tagged frame is not looked into) and only the length, not the header's
//!   contents. Observed on 6.18 and pinned by `kernel_table.rs`, so a kernel that changes
//!   it fails a test instead of silently skipping rows.
//!
//! [`refusal`] states these rules; [`Runner::run`] returns [`TestRunError::Refused`] for
//! such frames without calling the kernel, and [`Runner::run_unchecked`] lets a test
//! confirm the kernel's answer. The parser's verdict on them (`malformed`) is covered by
//! the host tests with the same table, and XDP runs every frame of 14 bytes or more. On a
//! real link, drivers drop frames shorter than the Ethernet header before XDP; TC egress
//! can see a short IP frame (from a packet socket), which the netns tests send live.

use std::{collections::BTreeMap, fmt};

use aya::{
    TestRunOptions, TestRunResult,
    programs::{ProgramError, TestRun as _},
};
use monitor_common::{
    layout::{Counter, Direction, IP_PROTOCOLS, L4, PORTS, Reason, SlicePlan},
    parse::Parsed,
    payload::PayloadKind,
};
use portmon::{
    counters::{CounterMap, Totals},
    dataplane::{
        DataPlane, LoadError, LoadOptions, TC_EGRESS_PROGRAM, TC_INGRESS_PROGRAM, XDP_PROGRAM,
    },
    payload_map::{PayloadMapError, PayloadTotals, PayloadTracker, PortKey, Tracking},
};

/// `XDP_PASS` from `include/uapi/linux/bpf.h`.
pub const XDP_PASS: u32 = 2;
/// `TC_ACT_OK` from `include/uapi/linux/pkt_cls.h`.
pub const TC_ACT_OK: u32 = 0;
/// The shortest frame BPF_PROG_TEST_RUN accepts: `ETH_HLEN`.
pub const MIN_TEST_RUN_LEN: usize = 14;
/// The shortest IPv4-ethertype frame TC test runs accept: Ethernet + IPv4 header.
pub const MIN_TC_IPV4_LEN: usize = 14 + 20;
/// The shortest IPv6-ethertype frame TC test runs accept: Ethernet + IPv6 header.
pub const MIN_TC_IPV6_LEN: usize = 14 + 40;

/// Why the kernel refuses to test-run `frame` through `hook`, or `None` when it accepts it.
/// See the module documentation.
#[must_use]
pub fn refusal(hook: Hook, frame: &[u8]) -> Option<&'static str> {
    if frame.len() < MIN_TEST_RUN_LEN {
        return Some("shorter than ETH_HLEN");
    }
    if hook == Hook::Xdp {
        return None;
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 if frame.len() < MIN_TC_IPV4_LEN => {
            Some("TC: IPv4 ethertype, shorter than an IPv4 header")
        }
        0x86dd if frame.len() < MIN_TC_IPV6_LEN => {
            Some("TC: IPv6 ethertype, shorter than an IPv6 header")
        }
        _ => None,
    }
}

/// One of portmon's kernel programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `portmon_xdp`, ingress.
    Xdp,
    /// `portmon_tc_egress`.
    TcEgress,
    /// `portmon_tc_ingress`.
    TcIngress,
}

impl Hook {
    /// Every program.
    pub const ALL: [Hook; 3] = [Hook::Xdp, Hook::TcEgress, Hook::TcIngress];

    /// The program's name in the object.
    #[must_use]
    pub const fn program(self) -> &'static str {
        match self {
            Hook::Xdp => XDP_PROGRAM,
            Hook::TcEgress => TC_EGRESS_PROGRAM,
            Hook::TcIngress => TC_INGRESS_PROGRAM,
        }
    }

    /// The direction it counts under.
    #[must_use]
    pub const fn direction(self) -> Direction {
        match self {
            Hook::Xdp | Hook::TcIngress => Direction::Ingress,
            Hook::TcEgress => Direction::Egress,
        }
    }

    /// The verdict that lets the packet pass unchanged.
    #[must_use]
    pub const fn pass_verdict(self) -> u32 {
        match self {
            Hook::Xdp => XDP_PASS,
            Hook::TcEgress | Hook::TcIngress => TC_ACT_OK,
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program())
    }
}

/// Where a counter lives in the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CounterKey {
    /// A destination port.
    Port(Direction, L4, u16),
    /// An IP protocol number (ICMP and other L4).
    IpProtocol(Direction, u8),
    /// An unparsed reason.
    Reason(Direction, Reason),
}

/// Every counter that changed, with how much (wrapping difference per field).
pub type Delta = BTreeMap<CounterKey, Counter>;

/// Every payload count that changed, by tracked port and kind, with how much.
pub type PayloadDelta = BTreeMap<(PortKey, PayloadKind), u64>;

/// Why a test run could not be made.
#[derive(Debug)]
pub enum TestRunError {
    /// Loading the data plane failed.
    Load(LoadError),
    /// The kernel would refuse to test-run this frame through this program ([`refusal`]).
    Refused {
        /// The program.
        hook: Hook,
        /// Why.
        why: &'static str,
    },
    /// The BPF_PROG_TEST_RUN call failed.
    Run {
        /// The program.
        hook: Hook,
        /// Why.
        source: ProgramError,
    },
    /// The program returned something other than its pass verdict.
    Verdict {
        /// The program.
        hook: Hook,
        /// What it returned.
        returned: u32,
    },
    /// The program changed the packet (a passive monitor never does).
    Modified {
        /// The program.
        hook: Hook,
        /// The frame that went in.
        data_in: Vec<u8>,
        /// What came out.
        data_out: Vec<u8>,
    },
}

impl fmt::Display for TestRunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestRunError::Load(error) => write!(f, "loading the data plane: {error}"),
            TestRunError::Refused { hook, why } => {
                write!(f, "BPF_PROG_TEST_RUN refuses this frame for {hook}: {why}")
            }
            TestRunError::Run { hook, source } => write!(f, "test-running {hook}: {source}"),
            TestRunError::Verdict { hook, returned } => write!(
                f,
                "{hook} returned {returned}, expected its pass verdict {}",
                hook.pass_verdict()
            ),
            TestRunError::Modified {
                hook,
                data_in,
                data_out,
            } => write!(
                f,
                "{hook} changed the packet:\n  in  {}\n  out {}",
                crate::frames::hex(data_in),
                crate::frames::hex(data_out)
            ),
        }
    }
}

impl std::error::Error for TestRunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TestRunError::Load(error) => Some(error),
            TestRunError::Run { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The loaded programs, their counter map and the last counter snapshot.
pub struct Runner {
    data_plane: DataPlane,
    counters: CounterMap,
    last: Totals,
    scratch: Totals,
    payload: PayloadTracker,
    payload_last: PayloadTotals,
    payload_scratch: PayloadTotals,
}

impl Runner {
    /// Loads the data plane with default options (needs root).
    ///
    /// # Errors
    /// When loading fails.
    pub fn new() -> Result<Self, TestRunError> {
        Self::with_options(LoadOptions::default())
    }

    /// Loads the data plane with `options` (needs root).
    ///
    /// # Errors
    /// When loading fails.
    pub fn with_options(options: LoadOptions) -> Result<Self, TestRunError> {
        let data_plane = DataPlane::load(options).map_err(TestRunError::Load)?;
        let counters = data_plane.counters().map_err(TestRunError::Load)?;
        let payload = data_plane.payload_tracker().map_err(TestRunError::Load)?;
        let last = counters.read();
        let payload_last = payload.read();
        Ok(Self {
            data_plane,
            counters,
            last,
            scratch: Totals::default(),
            payload,
            payload_last,
            payload_scratch: PayloadTotals::default(),
        })
    }

    /// The slice plan the data plane was loaded with.
    #[must_use]
    pub fn plan(&self) -> SlicePlan {
        self.data_plane.plan()
    }

    /// Starts classifying the payloads of `port` (of `l4`, in `direction`).
    ///
    /// # Errors
    /// As [`PayloadTracker::track`].
    pub fn track(
        &mut self,
        direction: Direction,
        l4: L4,
        port: u16,
    ) -> Result<Tracking, PayloadMapError> {
        self.payload.track(direction, l4, port)
    }

    /// The payload tracker, for tests of tracking itself.
    pub fn payload_tracker(&mut self) -> &mut PayloadTracker {
        &mut self.payload
    }

    /// Every payload count change since the last call (or load), and a new snapshot.
    pub fn payload_delta(&mut self) -> PayloadDelta {
        self.payload.read_into(&mut self.payload_scratch);
        let mut delta = PayloadDelta::new();
        for (key, after) in self.payload_scratch.iter() {
            let (direction, l4, port) = key;
            let before = self
                .payload_last
                .get(direction, l4, port)
                .unwrap_or_default();
            for (kind, (&after, &before)) in PayloadKind::ALL.iter().zip(after.iter().zip(&before))
            {
                if after != before {
                    delta.insert((key, *kind), after.wrapping_sub(before));
                }
            }
        }
        std::mem::swap(&mut self.payload_last, &mut self.payload_scratch);
        delta
    }

    /// Runs `frame` once through `hook` and returns every counter change it caused.
    ///
    /// Checks that the program returned its pass verdict and left the packet unchanged.
    ///
    /// # Errors
    /// See [`TestRunError`]; frames the kernel refuses are [`TestRunError::Refused`].
    pub fn run(&mut self, hook: Hook, frame: &[u8]) -> Result<Delta, TestRunError> {
        self.run_batch(hook, std::iter::once(frame))
    }

    /// Runs each frame once through `hook` and returns the sum of the counter changes:
    /// one snapshot for the whole batch, for tests that run thousands of frames.
    ///
    /// # Errors
    /// As [`Runner::run`], for the first frame that fails; the snapshot is still taken.
    pub fn run_batch<'f>(
        &mut self,
        hook: Hook,
        frames: impl IntoIterator<Item = &'f [u8]>,
    ) -> Result<Delta, TestRunError> {
        let result = frames
            .into_iter()
            .try_for_each(|frame| self.run_checked(hook, frame, 1));
        let delta = self.snapshot_delta();
        result.map(|()| delta)
    }

    /// Runs `frame` through `hook` `repeat` times in one BPF_PROG_TEST_RUN call (the
    /// kernel's own repeat loop) and returns every counter change.
    ///
    /// # Errors
    /// As [`Runner::run`].
    pub fn run_repeated(
        &mut self,
        hook: Hook,
        frame: &[u8],
        repeat: u32,
    ) -> Result<Delta, TestRunError> {
        let result = self.run_checked(hook, frame, repeat);
        let delta = self.snapshot_delta();
        result.map(|()| delta)
    }

    /// Runs `frame` once through `hook` without the refusal check, verdict check or
    /// snapshot: the raw kernel answer, for tests of what the kernel refuses.
    ///
    /// # Errors
    /// When the kernel refuses the run.
    pub fn run_unchecked(
        &mut self,
        hook: Hook,
        frame: &[u8],
        data_out: Option<&mut [u8]>,
    ) -> Result<TestRunResult, ProgramError> {
        self.test_run(hook, frame, data_out, 1)
    }

    fn test_run(
        &mut self,
        hook: Hook,
        frame: &[u8],
        data_out: Option<&mut [u8]>,
        repeat: u32,
    ) -> Result<TestRunResult, ProgramError> {
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out,
            repeat,
            ..TestRunOptions::default()
        };
        match hook {
            Hook::Xdp => self
                .data_plane
                .xdp_mut()
                .map_err(|_| ProgramError::UnexpectedProgramType)?
                .test_run(options),
            Hook::TcEgress | Hook::TcIngress => self
                .data_plane
                .classifier_mut(hook.program())
                .map_err(|_| ProgramError::UnexpectedProgramType)?
                .test_run(options),
        }
    }

    /// Every counter change since the last snapshot (or load), and a new snapshot.
    pub fn snapshot_delta(&mut self) -> Delta {
        self.counters.read_into(&mut self.scratch);
        let delta = diff(&self.last, &self.scratch);
        std::mem::swap(&mut self.last, &mut self.scratch);
        delta
    }

    fn run_checked(&mut self, hook: Hook, frame: &[u8], repeat: u32) -> Result<(), TestRunError> {
        if let Some(why) = refusal(hook, frame) {
            return Err(TestRunError::Refused { hook, why });
        }
        let mut data_out = vec![0u8; frame.len()];
        let result = self
            .test_run(hook, frame, Some(&mut data_out), repeat)
            .map_err(|source| TestRunError::Run { hook, source })?;
        if result.return_value != hook.pass_verdict() {
            return Err(TestRunError::Verdict {
                hook,
                returned: result.return_value,
            });
        }
        data_out.truncate(result.data_size_out as usize);
        if data_out != frame {
            return Err(TestRunError::Modified {
                hook,
                data_in: frame.to_vec(),
                data_out,
            });
        }
        Ok(())
    }
}

/// The difference between two snapshots, over every counter of the layout.
#[must_use]
pub fn diff(before: &Totals, after: &Totals) -> Delta {
    if before == after {
        return Delta::new();
    }
    let mut delta = Delta::new();
    let mut note = |key: CounterKey, before: Counter, after: Counter| {
        if before != after {
            delta.insert(
                key,
                Counter {
                    packets: after.packets.wrapping_sub(before.packets),
                    bytes: after.bytes.wrapping_sub(before.bytes),
                    syns: after.syns.wrapping_sub(before.syns),
                },
            );
        }
    };
    for direction in Direction::ALL {
        for l4 in L4::ALL {
            for port in 0..PORTS {
                let port = u16::try_from(port).unwrap_or(u16::MAX);
                note(
                    CounterKey::Port(direction, l4, port),
                    before.port(direction, l4, port),
                    after.port(direction, l4, port),
                );
            }
        }
        for protocol in 0..IP_PROTOCOLS {
            let protocol = u8::try_from(protocol).unwrap_or(u8::MAX);
            note(
                CounterKey::IpProtocol(direction, protocol),
                before.ip_protocol(direction, protocol),
                after.ip_protocol(direction, protocol),
            );
        }
        for reason in Reason::ALL {
            note(
                CounterKey::Reason(direction, reason),
                before.reason(direction, reason),
                after.reason(direction, reason),
            );
        }
    }
    delta
}

/// The counter changes one packet of `frame_len` bytes with verdict `parsed` must cause
/// in `direction`: its port counter (with a syn), or its reason counter plus, for ICMP and
/// other L4, its IP-protocol counter.
#[must_use]
pub fn expected_delta(direction: Direction, parsed: &Parsed, frame_len: usize) -> Delta {
    let mut delta = Delta::new();
    add_expected(&mut delta, direction, parsed, frame_len);
    delta
}

/// Adds one packet's [`expected_delta`] into `delta` (for batches).
pub fn add_expected(delta: &mut Delta, direction: Direction, parsed: &Parsed, frame_len: usize) {
    let bytes = frame_len as u64;
    let mut add = |key: CounterKey, syns: u64| {
        let counter = delta.entry(key).or_default();
        counter.accumulate(&Counter {
            packets: 1,
            bytes,
            syns,
        });
    };
    match *parsed {
        Parsed::Port { l4, port, syn, .. } => {
            add(CounterKey::Port(direction, l4, port), u64::from(syn));
        }
        Parsed::Unparsed {
            reason,
            ip_protocol,
        } => {
            add(CounterKey::Reason(direction, reason), 0);
            if let Some(protocol) = ip_protocol {
                add(CounterKey::IpProtocol(direction, protocol), 0);
            }
        }
    }
}

/// A payload delta as one line per count, for failure messages.
#[must_use]
pub fn describe_payload(delta: &PayloadDelta) -> String {
    if delta.is_empty() {
        return "no payload counted".to_owned();
    }
    delta
        .iter()
        .map(|((key, kind), count)| format!("{key:?} {}: {count}", kind.as_str()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A delta as one line per counter, for failure messages.
#[must_use]
pub fn describe(delta: &Delta) -> String {
    if delta.is_empty() {
        return "no counter changed".to_owned();
    }
    delta
        .iter()
        .map(|(key, counter)| {
            format!(
                "{key:?}: packets {} bytes {} syns {}",
                counter.packets, counter.bytes, counter.syns
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
