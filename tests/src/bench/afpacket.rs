//! The alternative users pick today: a user-space counter reading an AF_PACKET TPACKET_V3
//! ring. Each frame is parsed with the shared parser and counted per port in a user-space
//! array of the same layout as portmon's, so the comparison is the data path alone.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use monitor_common::{
    layout::{Counter, Direction, L4, SLICE_ENTRIES, ip_protocol_index, port_index, reason_index},
    parse::{Parsed, parse},
};

use super::cpu;

/// Ring geometry: 16 blocks of 1 MiB (about 8000 minimum-size frames each), more than
/// libpcap's 2 MiB default, so the ring itself is not what limits the counter.
const BLOCK_SIZE: u32 = 1 << 20;
const BLOCK_COUNT: u32 = 16;
const FRAME_SIZE: u32 = 2048;
/// A partly filled block is handed to user space after this many milliseconds.
const BLOCK_TIMEOUT_MS: u32 = 4;
/// After the flood, give up waiting for more frames once none came for this long.
const IDLE_AFTER_FLOOD: Duration = Duration::from_millis(200);

/// An AF_PACKET socket with a mapped TPACKET_V3 receive ring, bound to one interface.
pub struct Ring {
    fd: OwnedFd,
    blocks: NonNull<u8>,
    mapped_len: usize,
}

// SAFETY: the ring is only touched by the thread that owns the `Ring`; moving it between
// threads before use is fine (the mapping and the fd are process-wide).
unsafe impl Send for Ring {}

fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc < 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(error.kind(), format!("{what}: {error}")));
    }
    Ok(())
}

fn setsockopt<T>(fd: &OwnedFd, option: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            option,
            std::ptr::from_ref(value).cast(),
            libc::socklen_t::try_from(size_of::<T>()).unwrap_or(0),
        )
    };
    check(rc, what)
}

impl Ring {
    /// Opens the socket, maps the ring and binds to `ifindex` (ingress only).
    ///
    /// # Errors
    /// When a socket call fails (needs CAP_NET_RAW).
    pub fn open(ifindex: u32) -> io::Result<Self> {
        // Protocol 0: nothing is queued until `bind` names one, after the ring exists.
        // SAFETY: plain socket creation.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        check(raw, "socket(AF_PACKET)")?;
        // SAFETY: `raw` is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(&fd, libc::PACKET_VERSION, &version, "PACKET_VERSION")?;
        // Count what arrives, as the XDP program does, not what the host sends.
        let one: libc::c_int = 1;
        setsockopt(
            &fd,
            libc::PACKET_IGNORE_OUTGOING,
            &one,
            "PACKET_IGNORE_OUTGOING",
        )?;
        let request = libc::tpacket_req3 {
            tp_block_size: BLOCK_SIZE,
            tp_block_nr: BLOCK_COUNT,
            tp_frame_size: FRAME_SIZE,
            tp_frame_nr: BLOCK_SIZE / FRAME_SIZE * BLOCK_COUNT,
            tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::PACKET_RX_RING, &request, "PACKET_RX_RING")?;
        let mapped_len = (BLOCK_SIZE * BLOCK_COUNT) as usize;
        // SAFETY: mapping the ring the kernel just allocated for this fd, at its size.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let blocks = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap of the ring returned null"))?;
        let ring = Self {
            fd,
            blocks,
            mapped_len,
        };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::c_ushort::try_from(libc::AF_PACKET).unwrap_or(17);
        #[expect(clippy::cast_possible_truncation, reason = "ETH_P_ALL is 3")]
        let all = (libc::ETH_P_ALL as u16).to_be();
        address.sll_protocol = all;
        address.sll_ifindex = libc::c_int::try_from(ifindex).unwrap_or(0);
        // SAFETY: `address` is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                (&raw const address).cast(),
                libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or(0),
            )
        };
        check(rc, "bind(AF_PACKET)")?;
        Ok(ring)
    }

    /// Reads and resets the kernel's counters: (packets queued, packets dropped).
    fn take_stats(&self) -> (u64, u64) {
        let mut stats = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = libc::socklen_t::try_from(size_of::<libc::tpacket_stats_v3>()).unwrap_or(0);
        // SAFETY: `stats` and `len` are valid for writing, `len` holds its size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut stats).cast(),
                &raw mut len,
            )
        };
        if rc < 0 {
            return (0, 0);
        }
        (u64::from(stats.tp_packets), u64::from(stats.tp_drops))
    }

    /// The status word of block `index`, shared with the kernel.
    #[expect(
        clippy::cast_ptr_alignment,
        reason = "blocks start on page boundaries, so offset 8 is 4-aligned"
    )]
    fn block_status(&self, index: u32) -> &AtomicU32 {
        // SAFETY: block `index` < BLOCK_COUNT lies in the mapping; its descriptor starts
        // with `version`, `offset_to_priv`, then `block_status` at offset 8, 4-aligned.
        // The kernel writes it concurrently, hence the atomic view.
        unsafe { &*self.block(index).add(8).cast::<AtomicU32>() }
    }

    fn block(&self, index: u32) -> *mut u8 {
        // SAFETY: in bounds of the mapping for index < BLOCK_COUNT.
        unsafe { self.blocks.as_ptr().add((index * BLOCK_SIZE) as usize) }
    }

    /// Counts every frame in block `index` (handed to user space) into `counts`.
    #[expect(
        clippy::cast_ptr_alignment,
        reason = "blocks are page-aligned and the kernel aligns each frame header to \
                  TPACKET_ALIGNMENT (16)"
    )]
    fn count_block(&self, index: u32, counts: &mut Counts) {
        let block = self.block(index);
        // SAFETY: the kernel handed this block to user space (TP_STATUS_USER, read with
        // acquire ordering by the caller), so its descriptor and frames are stable until we
        // give it back; offsets come from the kernel and stay within the block.
        unsafe {
            let descriptor = &*block.cast::<libc::tpacket_block_desc>();
            let header = descriptor.hdr.bh1;
            let mut frame = block.add(header.offset_to_first_pkt as usize);
            for _ in 0..header.num_pkts {
                let packet = &*frame.cast::<libc::tpacket3_hdr>();
                let data = std::slice::from_raw_parts(
                    frame.add(usize::from(packet.tp_mac)),
                    packet.tp_snaplen as usize,
                );
                counts.count(data, packet.tp_len);
                frame = frame.add(packet.tp_next_offset as usize);
            }
        }
    }

    /// Counts frames until `expected` have been counted, or the flood is over (`flood_done`)
    /// and nothing came for a while, or `deadline` passes.
    pub fn count(
        &self,
        expected: u64,
        flood_done: &AtomicBool,
        deadline: Instant,
    ) -> (Counts, RingReport) {
        let _ = self.take_stats();
        let mut counts = Counts::new();
        let cpu_before = cpu::thread_cpu_time();
        let mut block = 0;
        let mut last_frame_at = None;
        let mut idle_since = Instant::now();
        loop {
            let status = self.block_status(block);
            if status.load(Ordering::Acquire) & libc::TP_STATUS_USER != 0 {
                self.count_block(block, &mut counts);
                status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
                block = (block + 1) % BLOCK_COUNT;
                let now = Instant::now();
                last_frame_at = Some(now);
                idle_since = now;
                if counts.frames >= expected {
                    break;
                }
                continue;
            }
            let now = Instant::now();
            if now >= deadline
                || (flood_done.load(Ordering::Acquire) && now - idle_since > IDLE_AFTER_FLOOD)
            {
                break;
            }
            if !flood_done.load(Ordering::Acquire) {
                idle_since = now;
            }
            let mut poll = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a short timeout keeps the deadline checks going.
            unsafe { libc::poll(&raw mut poll, 1, 2) };
        }
        let cpu = cpu::thread_cpu_time().saturating_sub(cpu_before);
        let (kernel_packets, kernel_drops) = self.take_stats();
        (
            counts,
            RingReport {
                last_frame_at,
                cpu,
                kernel_packets,
                kernel_drops,
            },
        )
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `open` mapped; nothing borrows it past `self`.
        unsafe {
            libc::munmap(self.blocks.as_ptr().cast(), self.mapped_len);
        }
    }
}

/// How the ring's reader fared.
#[derive(Clone, Copy, Debug)]
pub struct RingReport {
    /// When the last frame was counted.
    pub last_frame_at: Option<Instant>,
    /// CPU time of the counting thread while counting.
    pub cpu: Duration,
    /// Frames the kernel queued to the ring, and frames it dropped (ring full).
    pub kernel_packets: u64,
    /// Frames the kernel dropped because the ring was full.
    pub kernel_drops: u64,
}

/// The user-space counters: one slice of portmon's layout.
pub struct Counts {
    /// Frames counted.
    pub frames: u64,
    counters: Vec<Counter>,
}

impl Counts {
    fn new() -> Self {
        Self {
            frames: 0,
            counters: vec![Counter::default(); SLICE_ENTRIES as usize],
        }
    }

    fn add(&mut self, index: u32, bytes: u64, syns: u64) {
        if let Some(counter) = self.counters.get_mut(index as usize) {
            counter.packets += 1;
            counter.bytes += bytes;
            counter.syns += syns;
        }
    }

    fn count(&mut self, frame: &[u8], frame_len: u32) {
        self.frames += 1;
        let direction = Direction::Ingress;
        let bytes = u64::from(frame_len);
        match parse(frame, frame_len as usize) {
            Parsed::Port { l4, port, syn, .. } => {
                self.add(port_index(direction, l4, port), bytes, u64::from(syn));
            }
            Parsed::Unparsed {
                reason,
                ip_protocol,
            } => {
                self.add(reason_index(direction, reason), bytes, 0);
                if let Some(protocol) = ip_protocol {
                    self.add(ip_protocol_index(direction, protocol), bytes, 0);
                }
            }
        }
    }

    /// Packets counted for UDP `port`.
    #[must_use]
    pub fn udp_packets(&self, port: u16) -> u64 {
        self.counters
            .get(port_index(Direction::Ingress, L4::Udp, port) as usize)
            .map_or(0, |counter| counter.packets)
    }
}
