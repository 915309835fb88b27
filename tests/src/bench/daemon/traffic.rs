//! The traffic the daemon is measured under, all raw frames addressed to
//! [`NOBODY_MAC`]: they cross the veth and meet portmon's hooks (XDP on the host end for
//! what the peer sends, TC egress on the host end for what the host sends) and are then
//! dropped by the receiving stack as `PACKET_OTHERHOST`. No stack answers, no socket
//! state is made, nothing leaves the pair.
//!
//! * [`realistic_state`]: a sweep of every TCP and UDP port in both directions (so every
//!   `other` bucket and every table port has a series), plus [`BUSY_PORTS`] ports per
//!   lane pushed past the promotion threshold (so every lane fills its top-K slots). The
//!   daemon then exports the most series its default budget allows: the heaviest scrape.
//! * [`flood`]: a paced flood from the peer at a fixed rate, bounded in count and time.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use monitor_common::layout::{Direction, L4};

use crate::{
    frames::{Frame, Ipv4, TCP_SYN, Tcp, Udp},
    netns::{NOBODY_MAC, Topology},
};

/// Non-table ports per lane pushed past the default promotion threshold (100 packets):
/// more than the default K=20, so the lane fills its slots and ranking matters.
pub const BUSY_PORTS: u16 = 25;
/// The first busy port (registered range; 30000-30024 are in no security table).
const FIRST_BUSY_PORT: u16 = 30_000;
/// Packets to the first busy port; each next one gets [`BUSY_STEP`] more.
const BUSY_PACKETS: u64 = 110;
const BUSY_STEP: u64 = 3;
/// Bound on the whole state-building phase.
const STATE_LIMIT: Duration = Duration::from_mins(2);

/// An AF_PACKET socket that sends raw frames out of one interface of the namespace it was
/// made in.
pub struct RawSender {
    fd: OwnedFd,
}

impl RawSender {
    /// A send-only socket (protocol 0 receives nothing) bound to `ifindex` of the calling
    /// thread's namespace.
    ///
    /// # Errors
    /// When the socket cannot be made or bound (not root).
    pub fn new(ifindex: u32) -> anyhow::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        ensure!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or(17);
        address.sll_ifindex = i32::try_from(ifindex).context("ifindex fits in i32")?;
        // SAFETY: `address` is a valid sockaddr_ll and the length is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or(20),
            )
        };
        ensure!(
            rc == 0,
            "binding AF_PACKET to ifindex {ifindex}: {}",
            io::Error::last_os_error()
        );
        Ok(Self { fd })
    }

    /// Sends one frame; false when the kernel refused it (a full veth ring under flood).
    #[must_use]
    pub fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: `frame` is a valid buffer of `frame.len()` bytes for the call.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        usize::try_from(sent).ok() == Some(frame.len())
    }
}

/// The two senders of a topology: the peer's (host ingress) and the host's (host egress).
pub struct Senders {
    peer: RawSender,
    host: RawSender,
}

impl Senders {
    /// Makes both, the peer's inside the peer namespace.
    ///
    /// # Errors
    /// When a socket cannot be made.
    pub fn new(topology: &Topology) -> anyhow::Result<Self> {
        let peer_ifindex = topology.peer_ifindex();
        Ok(Self {
            peer: topology.in_peer(|| RawSender::new(peer_ifindex))??,
            host: RawSender::new(topology.host_ifindex())?,
        })
    }

    /// The sender whose frames the host end sees in `direction`.
    #[must_use]
    pub fn toward(&self, direction: Direction) -> &RawSender {
        match direction {
            Direction::Ingress => &self.peer,
            Direction::Egress => &self.host,
        }
    }
}

/// A minimum-size frame that the host end sees in `direction`, to `port` of `l4` (a SYN
/// for TCP), addressed to nobody.
#[must_use]
pub fn frame(topology: &Topology, direction: Direction, l4: L4, port: u16) -> Vec<u8> {
    let (src_mac, src_ip, dst_ip) = match direction {
        Direction::Ingress => (topology.peer_mac(), topology.peer_v4(), topology.host_v4()),
        Direction::Egress => (topology.host_mac(), topology.host_v4(), topology.peer_v4()),
    };
    // Source ports spread over the dynamic range, as a scanner's or a client's would be.
    let src_port = 49_152 + port % 16_384;
    let frame = Frame::new()
        .macs(src_mac, NOBODY_MAC)
        .ipv4(Ipv4::new().addrs(src_ip.octets(), dst_ip.octets()));
    let frame = match l4 {
        L4::Tcp => frame.tcp(Tcp::new(port).src_port(src_port).flags(TCP_SYN)),
        L4::Udp => frame
            .udp(Udp::new(port).src_port(src_port))
            .payload(&[0; 18]),
    };
    frame.pad_to(60).build()
}

/// What [`realistic_state`] sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct StateReport {
    /// Frames sent.
    pub sent: u64,
    /// Frames the kernel refused.
    pub refused: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Sweeps every port 1-65535 of TCP and UDP in both directions, and pushes
/// [`BUSY_PORTS`] ports per lane past the promotion threshold.
///
/// # Errors
/// When it takes longer than its bound.
pub fn realistic_state(topology: &Topology, senders: &Senders) -> anyhow::Result<StateReport> {
    let started = Instant::now();
    let mut report = StateReport::default();
    let mut send = |direction: Direction, frame: &[u8]| -> anyhow::Result<()> {
        if senders.toward(direction).send(frame) {
            report.sent += 1;
        } else {
            report.refused += 1;
        }
        if started.elapsed() > STATE_LIMIT {
            bail!(
                "building the state took more than {STATE_LIMIT:?} ({} frames sent)",
                report.sent
            );
        }
        Ok(())
    };
    for direction in Direction::ALL {
        for l4 in L4::ALL {
            for (rank, port) in (FIRST_BUSY_PORT..FIRST_BUSY_PORT + BUSY_PORTS).enumerate() {
                let frame = frame(topology, direction, l4, port);
                for _ in 0..BUSY_PACKETS + BUSY_STEP * rank as u64 {
                    send(direction, &frame)?;
                }
            }
            for port in 1..=u16::MAX {
                send(direction, &frame(topology, direction, l4, port))?;
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What a [`flood`] sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct FloodReport {
    /// Frames sent.
    pub sent: u64,
    /// Frames the kernel refused (the host end's ring was full).
    pub refused: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

impl FloodReport {
    /// Frames sent per second.
    #[must_use]
    #[expect(clippy::cast_precision_loss, reason = "frame counts far below 2^52")]
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }
}

/// Frames a flood cycles through: TCP SYNs and UDP datagrams to ports spread over the
/// whole range, table ports and busy ports among them.
#[must_use]
pub fn flood_frames(topology: &Topology) -> Vec<Vec<u8>> {
    (0u16..256)
        .map(|i| {
            let l4 = if i % 2 == 0 { L4::Tcp } else { L4::Udp };
            let port = match i % 8 {
                0 => 443,
                1 => 53,
                2 | 3 => FIRST_BUSY_PORT + i % BUSY_PORTS,
                _ => 1 + i.wrapping_mul(257),
            };
            frame(topology, Direction::Ingress, l4, port)
        })
        .collect()
}

/// Sends `frames` round-robin from `sender` at `rate` frames per second until `stop` is
/// set, at most `max_frames` frames and for at most `limit`.
#[must_use]
pub fn flood(
    sender: &RawSender,
    frames: &[Vec<u8>],
    rate: u64,
    max_frames: u64,
    limit: Duration,
    stop: &AtomicBool,
) -> FloodReport {
    let started = Instant::now();
    let mut report = FloodReport::default();
    let mut next = frames.iter().cycle();
    while !stop.load(Ordering::Acquire) && report.sent < max_frames && started.elapsed() < limit {
        // Catch up with the schedule, then sleep a tick: a steady rate, not bursts of a
        // second's worth.
        let due = u64::try_from(started.elapsed().as_micros() * u128::from(rate) / 1_000_000)
            .unwrap_or(u64::MAX)
            .min(max_frames);
        while report.sent + report.refused < due {
            let Some(frame) = next.next() else { break };
            if sender.send(frame) {
                report.sent += 1;
            } else {
                report.refused += 1;
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    report.elapsed = started.elapsed();
    report
}
