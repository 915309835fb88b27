//! A quiet two-ended test link: a veth pair whose host end stays in this (the host)
//! network namespace, where portmon attaches as in production, and whose peer end lives in
//! a network namespace of its own. Everything is removed on drop, also when a test panics.
//!
//! ```ignore
//! let topo = Topology::new(Stack::Dual).expect("the topology is set up (run as root)");
//! // attach portmon to topo.host_if() ...
//! let capture = topo.capture().expect("capturing on the peer");
//! topo.send_raw(&frame).expect("the peer sends the frame");
//! topo.in_peer(|| std::net::TcpStream::connect((topo.host_v4(), 80))).expect("in the peer");
//! capture.wait_quiet(Duration::from_millis(200), Duration::from_secs(5));
//! let frames = capture.finish().expect("the capture lost nothing");
//! ```
//!
//! # Silence
//!
//! Counts can only be exact if nothing crosses the link but the test's own traffic. Both ends
//! are configured before they come up so that the kernel sends nothing by itself:
//!
//! * `arp off` (IFF_NOARP) on both ends, with permanent neighbour entries both ways (IPv4
//!   and IPv6), so no ARP or neighbour solicitation is ever sent. IFF_NOARP also keeps IPv6
//!   from joining solicited-node groups, so no MLD report is sent
//!   (`addrconf_join_solict()` in `net/ipv6/addrconf.c` returns early for IFF_NOARP);
//! * IPv6 ([`Stack::Dual`]): `addr_gen_mode=1` (no link-local address, hence no router
//!   solicitation, which needs one), `accept_dad=0`, `dad_transmits=0`,
//!   `router_solicitations=0`, `accept_ra=0`, and the addresses are added `nodad`;
//! * IPv4 only ([`Stack::Ipv4`]): `disable_ipv6=1` on both ends.
//!
//! Measured on 6.18: not one frame crosses an idle link in several seconds after it comes
//! up. The all-nodes group (ff02::1) is joined without a report, as RFC 3810 says.
//!
//! # Names and addresses
//!
//! The namespace is `pm<pid>-<n>` (unique per process and topology). The veth ends are
//! `pmh<slot>` (host) and `pmp<slot>` (peer), where `slot` is claimed atomically by
//! creating the host link (the kernel refuses a name that exists, so two test processes
//! can never claim the same slot). The slot picks the addresses: IPv4 `10.201.0.0/16` cut
//! into /30s (host `.1`, peer `.2` of the slot's /30) and IPv6 `fd00:201:<slot>::/64` (host
//! `::1`, peer `::2`), and the MACs ([`Topology::host_mac`], [`Topology::peer_mac`]).

use std::{
    fs::File,
    io, mem,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    process::{Command, Output},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use nix::sched::{CloneFlags, setns};

/// Slots of `10.201.0.0/16` in /30s.
const SLOTS: u32 = 1 << 14;
/// Slots tried before giving up (leftover links from crashed runs each hold one).
const SLOT_ATTEMPTS: u32 = 64;
/// A MAC no interface of a topology has: frames sent to it reach the host end's hooks
/// (XDP, TC ingress) and are then dropped by the host stack as `PACKET_OTHERHOST`, before
/// IP looks at them, so crafted frames never draw a reply or leave state behind.
pub const NOBODY_MAC: [u8; 6] = [0x02, 0x70, 0x6d, 0xff, 0xff, 0xfe];
/// Largest frame the capture records whole (a GSO frame is at most 64 KiB plus headers).
const CAPTURE_BUFFER: usize = 256 * 1024;
/// Receive buffer of the capture socket: a burst of a few thousand full frames fits.
const CAPTURE_RCVBUF: libc::c_int = 64 << 20;
/// How often the capture thread looks at its stop flag while the link is idle.
const CAPTURE_POLL: Duration = Duration::from_millis(20);
/// Size of `struct virtio_net_hdr`, prefixed to every frame with `PACKET_VNET_HDR`.
const VNET_HDR_LEN: usize = 10;

/// Which IP versions the topology carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// IPv4 only: IPv6 is disabled on both ends.
    Ipv4,
    /// IPv4 and IPv6.
    Dual,
}

/// One end of the veth pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The end in the host namespace (where portmon attaches).
    Host,
    /// The end in the peer namespace.
    Peer,
}

/// An offload that [`Topology::set_offload`] switches, through the legacy ethtool ioctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    /// TCP segmentation offload (`ETHTOOL_STSO`). Off, the kernel segments GSO packets in
    /// software after the TC egress hook, so the other end receives wire-sized frames.
    Tso,
    /// Generic segmentation offload (`ETHTOOL_SGSO`).
    Gso,
    /// Generic receive offload (`ETHTOOL_SGRO`). On a veth, on also turns on NAPI for the
    /// receive queue, so received segments are merged before generic XDP and TC see them.
    Gro,
}

impl Offload {
    const fn ethtool_set(self) -> u32 {
        // From include/uapi/linux/ethtool.h.
        match self {
            Offload::Tso => 0x1f,
            Offload::Gso => 0x24,
            Offload::Gro => 0x2c,
        }
    }
}

/// A network namespace created with `ip netns add`, deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new() -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pm{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name])?;
        Ok(Self { name })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(error) = ip(&["netns", "del", &self.name]) {
            eprintln!("netns cleanup: {error:#}");
        }
    }
}

/// The veth pair, deleted on drop (deleting the host end deletes the peer too).
struct Veth {
    host: String,
}

impl Drop for Veth {
    fn drop(&mut self) {
        if let Err(error) = ip(&["link", "del", &self.host]) {
            eprintln!("veth cleanup: {error:#}");
        }
    }
}

/// A veth pair between the host namespace and a fresh peer namespace, addressed, silent
/// (see the module documentation) and up. Dropping it removes the link and the namespace.
pub struct Topology {
    // Field order is drop order: the link goes before its namespace.
    veth: Veth,
    ns: NetNs,
    slot: u32,
    stack: Stack,
    peer: String,
    host_ifindex: u32,
    peer_ifindex: u32,
    raw_sender: OnceLock<PacketSocket>,
}

impl Topology {
    /// Creates the namespace and the veth pair, configures both ends and brings them up.
    ///
    /// # Errors
    /// When a command fails (not root, `ip` missing) or no free slot is found.
    pub fn new(stack: Stack) -> Result<Self> {
        let ns = NetNs::new()?;
        let (veth, slot) = create_veth(&ns.name)?;
        let peer = format!("pmp{slot}");
        let host_ifindex = ifindex(&veth.host)?;
        let mut topology = Self {
            veth,
            ns,
            slot,
            stack,
            peer,
            host_ifindex,
            peer_ifindex: 0,
            raw_sender: OnceLock::new(),
        };
        let peer = topology.peer.clone();
        topology.peer_ifindex = topology.in_peer(|| ifindex(&peer))??;
        topology.configure()?;
        Ok(topology)
    }

    fn configure(&self) -> Result<()> {
        let sysctls: &[(&str, &str)] = match self.stack {
            Stack::Ipv4 => &[("disable_ipv6", "1")],
            Stack::Dual => &[
                ("addr_gen_mode", "1"),
                ("accept_dad", "0"),
                ("dad_transmits", "0"),
                ("router_solicitations", "0"),
                ("accept_ra", "0"),
            ],
        };
        write_ipv6_sysctls(&self.veth.host, sysctls)?;
        let peer = self.peer.clone();
        self.in_peer(|| write_ipv6_sysctls(&peer, sysctls))??;

        let (host, ns) = (self.veth.host.as_str(), self.ns.name.as_str());
        let peer = self.peer.as_str();
        ip(&["link", "set", host, "arp", "off"])?;
        ip(&["-n", ns, "link", "set", peer, "arp", "off"])?;
        let mut pairs = vec![(
            format!("{}/30", self.host_v4()),
            format!("{}/30", self.peer_v4()),
        )];
        if let (Some(host_v6), Some(peer_v6)) = (self.host_v6(), self.peer_v6()) {
            pairs.push((format!("{host_v6}/64"), format!("{peer_v6}/64")));
        }
        let (host_mac, peer_mac) = (mac_string(self.host_mac()), mac_string(self.peer_mac()));
        for (host_addr, peer_addr) in &pairs {
            // `nodad`: the address is usable at once and no DAD probe is sent (IPv6 only).
            let nodad: &[&str] = if host_addr.contains(':') {
                &["nodad"]
            } else {
                &[]
            };
            ip(&[&["addr", "add", host_addr, "dev", host], nodad].concat())?;
            ip(&[&["-n", ns, "addr", "add", peer_addr, "dev", peer], nodad].concat())?;
            let (host_ip, peer_ip) = (strip_prefix(host_addr), strip_prefix(peer_addr));
            let permanent = ["nud", "permanent"];
            ip(&[
                &[
                    "neigh", "replace", peer_ip, "lladdr", &peer_mac, "dev", host,
                ][..],
                &permanent,
            ]
            .concat())?;
            ip(&[
                &[
                    "-n", ns, "neigh", "replace", host_ip, "lladdr", &host_mac, "dev", peer,
                ][..],
                &permanent,
            ]
            .concat())?;
        }
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "set", peer, "up"])?;
        ip(&["link", "set", host, "up"])?;
        Ok(())
    }

    /// The host end's name (attach portmon here).
    #[must_use]
    pub fn host_if(&self) -> &str {
        &self.veth.host
    }

    /// The host end's interface index.
    #[must_use]
    pub fn host_ifindex(&self) -> u32 {
        self.host_ifindex
    }

    /// The peer end's name (in the peer namespace).
    #[must_use]
    pub fn peer_if(&self) -> &str {
        &self.peer
    }

    /// The peer end's interface index (in the peer namespace).
    #[must_use]
    pub fn peer_ifindex(&self) -> u32 {
        self.peer_ifindex
    }

    /// The peer namespace's name, for `ip -n` / `ip netns exec`.
    #[must_use]
    pub fn ns_name(&self) -> &str {
        &self.ns.name
    }

    /// Which IP versions are configured.
    #[must_use]
    pub fn stack(&self) -> Stack {
        self.stack
    }

    /// The host end's IPv4 address.
    #[must_use]
    pub fn host_v4(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.v4_base() + 1)
    }

    /// The peer end's IPv4 address.
    #[must_use]
    pub fn peer_v4(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.v4_base() + 2)
    }

    fn v4_base(&self) -> u32 {
        u32::from(Ipv4Addr::new(10, 201, 0, 0)) + self.slot * 4
    }

    /// The host end's IPv6 address, with [`Stack::Dual`].
    #[must_use]
    pub fn host_v6(&self) -> Option<Ipv6Addr> {
        self.v6(1)
    }

    /// The peer end's IPv6 address, with [`Stack::Dual`].
    #[must_use]
    pub fn peer_v6(&self) -> Option<Ipv6Addr> {
        self.v6(2)
    }

    fn v6(&self, host: u16) -> Option<Ipv6Addr> {
        let slot = u16::try_from(self.slot).ok()?;
        (self.stack == Stack::Dual).then(|| Ipv6Addr::new(0xfd00, 0x201, slot, 0, 0, 0, 0, host))
    }

    /// The host end's MAC address.
    #[must_use]
    pub fn host_mac(&self) -> [u8; 6] {
        slot_mac(0x00, self.slot)
    }

    /// The peer end's MAC address.
    #[must_use]
    pub fn peer_mac(&self) -> [u8; 6] {
        slot_mac(0x01, self.slot)
    }

    /// Runs `program args...` in the peer namespace (`ip netns exec`) and returns its output,
    /// whatever its exit status. Note that `ip netns exec` gives it a fresh /sys.
    ///
    /// # Errors
    /// When the command cannot be started.
    pub fn exec_in_peer(&self, program: &str, args: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.ns.name, program])
            .args(args)
            .output()
            .with_context(|| {
                format!(
                    "running {program} in {} (is iproute2 installed?)",
                    self.ns.name
                )
            })
    }

    /// Runs `f` on a thread that has entered the peer namespace, and returns its result.
    /// Sockets made there stay in the peer namespace and can be used from any thread.
    ///
    /// # Errors
    /// When the namespace cannot be entered; a panic in `f` is propagated.
    pub fn in_peer<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        let netns = self.netns_file()?;
        thread::scope(|scope| {
            let handle = scope.spawn(move || -> Result<R> {
                enter(&netns)?;
                Ok(f())
            });
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Like [`Topology::in_peer`], on a detached thread, for work that runs alongside the
    /// test (a server in the peer, for example). Join the handle before the topology drops.
    ///
    /// # Errors
    /// When the namespace file cannot be opened; entering it is reported through the handle.
    pub fn spawn_in_peer<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<JoinHandle<Result<R>>> {
        let netns = self.netns_file()?;
        Ok(thread::spawn(move || {
            enter(&netns)?;
            Ok(f())
        }))
    }

    fn netns_file(&self) -> Result<File> {
        let path = format!("/run/netns/{}", self.ns.name);
        File::open(&path).with_context(|| format!("opening {path}"))
    }

    /// Sends one raw frame (Ethernet header first, no FCS) out of the peer end, through an
    /// AF_PACKET socket in the peer namespace: it arrives at the host end's XDP hook as is.
    /// Frames shorter than 14 bytes are refused by the kernel (`dev_validate_header()`).
    ///
    /// # Errors
    /// When the socket cannot be made or the kernel refuses the frame.
    pub fn send_raw(&self, frame: &[u8]) -> Result<()> {
        if self.raw_sender.get().is_none() {
            let ifindex = self.peer_ifindex;
            let socket = self.in_peer(|| PacketSocket::sender(ifindex))??;
            // Another thread may have raced us; either socket will do.
            let _ = self.raw_sender.set(socket);
        }
        let socket = self
            .raw_sender
            .get()
            .ok_or_else(|| anyhow!("the raw sender was just set"))?;
        socket.send(frame)
    }

    /// Starts capturing every frame on the peer end, both directions, on a thread of its
    /// own. Frames crossing after this returns are recorded.
    ///
    /// # Errors
    /// When the capture socket cannot be made.
    pub fn capture(&self) -> Result<Capture> {
        let ifindex = self.peer_ifindex;
        let socket = self.in_peer(|| PacketSocket::capture(ifindex))??;
        Ok(Capture::start(socket))
    }

    /// Turns an offload of one end on or off.
    ///
    /// # Errors
    /// When the ioctl fails.
    pub fn set_offload(&self, end: End, offload: Offload, on: bool) -> Result<()> {
        match end {
            End::Host => set_offload(&self.veth.host, offload, on),
            End::Peer => {
                let peer = self.peer.clone();
                self.in_peer(move || set_offload(&peer, offload, on))?
            }
        }
    }
}

/// Runs `ip args...`, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (install iproute2)")?;
    ensure!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Claims a slot by creating `pmh<slot>`, with its peer `pmp<slot>` inside `ns`.
fn create_veth(ns: &str) -> Result<(Veth, u32)> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Start where this process is unlikely to meet another one.
    let start = std::process::id().wrapping_mul(37) + NEXT.fetch_add(1, Ordering::Relaxed);
    for attempt in 0..SLOT_ATTEMPTS {
        let slot = (start + attempt) % SLOTS;
        let host = format!("pmh{slot}");
        let peer = format!("pmp{slot}");
        let output = Command::new("ip")
            .args([
                "link",
                "add",
                &host,
                "address",
                &mac_string(slot_mac(0x00, slot)),
            ])
            .args(["type", "veth", "peer", "name", &peer])
            .args(["address", &mac_string(slot_mac(0x01, slot)), "netns", ns])
            .output()
            .context("running ip (install iproute2)")?;
        if output.status.success() {
            return Ok((Veth { host }, slot));
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.contains("File exists") {
            bail!("ip link add {host} type veth: {}", stderr.trim());
        }
    }
    bail!("no free veth slot in {SLOT_ATTEMPTS} attempts: delete leftover pmh* links")
}

fn strip_prefix(address: &str) -> &str {
    address.split_once('/').map_or(address, |(ip, _)| ip)
}

fn slot_mac(end: u8, slot: u32) -> [u8; 6] {
    let [_, _, high, low] = slot.to_be_bytes();
    [0x02, 0x70, 0x6d, end, high, low]
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

fn ifindex(name: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(name).with_context(|| format!("no interface {name}"))
}

/// Writes `/proc/sys/net/ipv6/conf/<interface>/<key>` in the calling thread's namespace
/// (procfs resolves `net` sysctls by the current task's namespace).
fn write_ipv6_sysctls(interface: &str, sysctls: &[(&str, &str)]) -> Result<()> {
    for (key, value) in sysctls {
        let path = format!("/proc/sys/net/ipv6/conf/{interface}/{key}");
        std::fs::write(&path, value).with_context(|| format!("writing {value} to {path}"))?;
    }
    Ok(())
}

fn enter(netns: &File) -> Result<()> {
    setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).context("setns into the peer namespace")
}

/// `struct ifreq` with the `ifr_data` member (SIOCETHTOOL).
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn set_offload(interface: &str, offload: Offload, on: bool) -> Result<()> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    ensure!(
        fd >= 0,
        "socket for ethtool: {}",
        io::Error::last_os_error()
    );
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut value = EthtoolValue {
        cmd: offload.ethtool_set(),
        data: u32::from(on),
    };
    let mut request = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (&raw mut value).cast(),
        _pad: [0; 16],
    };
    ensure!(
        interface.len() < libc::IFNAMSIZ,
        "interface name {interface} too long"
    );
    for (dst, src) in request.name.iter_mut().zip(interface.bytes()) {
        *dst = src.cast_signed();
    }
    // SAFETY: SIOCETHTOOL reads `request` (an ifreq whose data points at an ethtool_value)
    // and the value, both alive and properly laid out for the call's duration.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &raw mut request) };
    ensure!(
        rc == 0,
        "ethtool {offload:?} {} on {interface}: {}",
        if on { "on" } else { "off" },
        io::Error::last_os_error()
    );
    Ok(())
}

/// An AF_PACKET socket bound to one interface.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl PacketSocket {
    /// A socket that only sends (protocol 0: it receives nothing).
    fn sender(ifindex: u32) -> Result<Self> {
        Self::bound(ifindex, 0)
    }

    /// A socket that receives every frame of the interface, both directions, each frame
    /// prefixed with a `virtio_net_hdr` that tells GSO packets apart.
    fn capture(ifindex: u32) -> Result<Self> {
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

/// A running capture on the peer end; see [`Topology::capture`].
pub struct Capture {
    state: Arc<CaptureState>,
    reader: Option<JoinHandle<Result<u32>>>,
}

impl Capture {
    fn start(socket: PacketSocket) -> Self {
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
