//! AF_PACKET sockets on the peer end: sending raw frames, and a two-way capture that
//! tells which way each frame crossed and whether it was a GSO super-packet.

use std::{
    io, mem,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, ensure};

/// Largest frame the capture records whole (a GSO frame is at most 64 KiB plus headers).
const CAPTURE_BUFFER: usize = 256 * 1024;
/// Receive buffer of the capture socket: a burst of a few thousand full frames fits.
const CAPTURE_RCVBUF: libc::c_int = 64 << 20;
/// How often the capture thread looks at its stop flag while the link is idle.
const CAPTURE_POLL: Duration = Duration::from_millis(20);
/// Size of `struct virtio_net_hdr`, prefixed to every frame with `PACKET_VNET_HDR`.
const VNET_HDR_LEN: usize = 10;

/// An AF_PACKET socket bound to one interface.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl PacketSocket {
    /// A socket that only sends (protocol 0: it receives nothing).
    pub(super) fn sender(ifindex: u32) -> Result<Self> {
        Self::bound(ifindex, 0)
    }

    /// A socket that receives every frame of the interface, both directions, each frame
    /// prefixed with a `virtio_net_hdr` that tells GSO packets apart.
    pub(super) fn capture(ifindex: u32) -> Result<Self> {
        // Protocol 0 at creation, ETH_P_ALL at bind: no frame of another interface slips in
        // between the two calls.
        let socket = Self::bound(ifindex, 0)?;
        socket.set_option(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &CAPTURE_RCVBUF)?;
        socket.set_option(libc::SOL_PACKET, libc::PACKET_VNET_HDR, &1)?;
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: libc::suseconds_t::try_from(CAPTURE_POLL.as_micros()).unwrap_or(20_000),
        };
        socket.set_option(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)?;
        socket.bind(u16::try_from(libc::ETH_P_ALL).unwrap_or(3))?;
        Ok(socket)
    }

    fn bound(ifindex: u32, protocol: u16) -> Result<Self> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        ensure!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let socket = Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            ifindex,
        };
        socket.bind(protocol)?;
        Ok(socket)
    }

    fn address(&self, protocol: u16) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { mem::zeroed() };
        address.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or(17);
        address.sll_protocol = protocol.to_be();
        address.sll_ifindex = i32::try_from(self.ifindex).unwrap_or(0);
        address
    }

    fn bind(&self, protocol: u16) -> Result<()> {
        let address = self.address(protocol);
        // SAFETY: `address` is a valid sockaddr_ll and the length is its size.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&raw const address).cast(),
                socklen::<libc::sockaddr_ll>(),
            )
        };
        ensure!(
            rc == 0,
            "binding AF_PACKET to ifindex {}: {}",
            self.ifindex,
            io::Error::last_os_error()
        );
        Ok(())
    }

    fn set_option<T>(&self, level: libc::c_int, name: libc::c_int, value: &T) -> Result<()> {
        // SAFETY: `value` is alive for the call and the length is its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                std::ptr::from_ref(value).cast(),
                socklen::<T>(),
            )
        };
        ensure!(
            rc == 0,
            "setsockopt({level}, {name}): {}",
            io::Error::last_os_error()
        );
        Ok(())
    }

    /// Sends `frame` out of the interface.
    ///
    /// # Errors
    /// When the kernel refuses it (too short, longer than the MTU allows, link down).
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: `frame` is a valid buffer of `frame.len()` bytes for the call.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        ensure!(
            usize::try_from(sent).ok() == Some(frame.len()),
            "sending a {}-byte frame: {}",
            frame.len(),
            io::Error::last_os_error()
        );
        Ok(())
    }

    /// Receives one frame into `buffer`: `Ok(None)` on timeout, else the full length of the
    /// frame (which may exceed `buffer`) and its `sll_pkttype`.
    fn receive(&self, buffer: &mut [u8]) -> io::Result<Option<(usize, u8)>> {
        // SAFETY: zeroed sockaddr_ll is valid; the kernel fills at most `length` bytes.
        let mut address: libc::sockaddr_ll = unsafe { mem::zeroed() };
        let mut length = socklen::<libc::sockaddr_ll>();
        // SAFETY: `buffer` is valid for writes of its length; `address`/`length` as above.
        let received = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_TRUNC,
                (&raw mut address).cast(),
                &raw mut length,
            )
        };
        if let Ok(received) = usize::try_from(received) {
            return Ok(Some((received, address.sll_pkttype)));
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(None),
            io::ErrorKind::Interrupted => self.receive(buffer),
            _ => Err(error),
        }
    }

    /// Frames the kernel dropped for this socket since the last call (PACKET_STATISTICS).
    fn drops(&self) -> Result<u32> {
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut length = socklen::<libc::tpacket_stats>();
        // SAFETY: `stats` is writable for `length` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut stats).cast(),
                &raw mut length,
            )
        };
        ensure!(rc == 0, "PACKET_STATISTICS: {}", io::Error::last_os_error());
        Ok(stats.tp_drops)
    }
}

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// Which way a captured frame crossed the peer end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Crossing {
    /// Sent by the peer (`PACKET_OUTGOING`): the host end received it (host ingress).
    PeerSent,
    /// Received by the peer: the host end sent it (host egress).
    PeerReceived,
}

/// GSO metadata of a captured super-packet (from its `virtio_net_hdr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    /// `VIRTIO_NET_HDR_GSO_*`: 1 TCPv4, 3 UDP, 4 TCPv6, 5 UDP_L4.
    pub kind: u8,
    /// Payload bytes per segment.
    pub size: u16,
}

/// One frame seen on the peer end.
#[derive(Clone, Debug)]
pub struct Captured {
    /// Which way it crossed.
    pub crossing: Crossing,
    /// `sll_pkttype` (`PACKET_HOST`, `PACKET_OTHERHOST`, `PACKET_OUTGOING`, ...).
    pub pkttype: u8,
    /// The frame, Ethernet header first.
    pub frame: Vec<u8>,
    /// Set when the frame is a GSO super-packet that a wire would carry as several frames.
    pub gso: Option<Gso>,
}

struct CaptureState {
    frames: Mutex<Vec<Captured>>,
    seen: AtomicUsize,
    last_frame: Mutex<Instant>,
    stop: AtomicBool,
}

/// A running capture on the peer end; see [`super::Topology::capture`].
pub struct Capture {
    state: Arc<CaptureState>,
    reader: Option<JoinHandle<Result<u32>>>,
}

impl Capture {
    pub(super) fn start(socket: PacketSocket) -> Self {
        let state = Arc::new(CaptureState {
            frames: Mutex::new(Vec::new()),
            seen: AtomicUsize::new(0),
            last_frame: Mutex::new(Instant::now()),
            stop: AtomicBool::new(false),
        });
        let reader_state = Arc::clone(&state);
        let reader = thread::spawn(move || read_frames(&socket, &reader_state));
        Self {
            state,
            reader: Some(reader),
        }
    }

    /// Frames recorded so far.
    #[must_use]
    pub fn seen(&self) -> usize {
        self.state.seen.load(Ordering::Acquire)
    }

    /// Waits until no frame has crossed for `quiet`, for at most `limit`. Returns whether
    /// the link went quiet.
    #[must_use]
    pub fn wait_quiet(&self, quiet: Duration, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let last = *self
                .state
                .last_frame
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() >= quiet {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the capture after reading every frame already queued, and returns them in
    /// arrival order.
    ///
    /// # Errors
    /// When the socket failed, the kernel dropped frames for it, or a frame was longer than
    /// the capture buffer: a comparison against an incomplete capture would be meaningless.
    pub fn finish(mut self) -> Result<Vec<Captured>> {
        self.state.stop.store(true, Ordering::Release);
        let reader = self
            .reader
            .take()
            .ok_or_else(|| anyhow!("capture already finished"))?;
        let drops = reader
            .join()
            .map_err(|_| anyhow!("the capture thread panicked"))??;
        ensure!(
            drops == 0,
            "the capture lost {drops} frames (socket buffer overrun)"
        );
        let frames = mem::take(
            &mut *self
                .state
                .frames
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Ok(frames)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The capture thread: records frames until stopped and the socket is drained. Returns the
/// kernel's drop count.
fn read_frames(socket: &PacketSocket, state: &CaptureState) -> Result<u32> {
    let mut buffer = vec![0u8; CAPTURE_BUFFER];
    loop {
        // Read the flag before receiving: once it is set, a timeout means drained.
        let stopping = state.stop.load(Ordering::Acquire);
        let Some((length, pkttype)) = socket.receive(&mut buffer).context("capture recvfrom")?
        else {
            if stopping {
                return socket.drops();
            }
            continue;
        };
        ensure!(
            length <= buffer.len(),
            "a {length}-byte frame exceeds the {CAPTURE_BUFFER}-byte capture buffer"
        );
        ensure!(length >= VNET_HDR_LEN, "a frame without its virtio_net_hdr");
        let (header, frame) = buffer[..length].split_at(VNET_HDR_LEN);
        // struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
        // (little-endian on x86: PACKET_VNET_HDR uses the host's byte order).
        let gso = (header[1] != 0).then(|| Gso {
            kind: header[1] & 0x7f,
            size: u16::from_ne_bytes([header[4], header[5]]),
        });
        let captured = Captured {
            crossing: if pkttype == libc::PACKET_OUTGOING {
                Crossing::PeerSent
            } else {
                Crossing::PeerReceived
            },
            pkttype,
            frame: frame.to_vec(),
            gso,
        };
        state
            .frames
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(captured);
        *state
            .last_frame
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        state.seen.fetch_add(1, Ordering::Release);
    }
}
