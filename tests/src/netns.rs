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
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsFd,
    process::{Command, Output},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    thread::{self, JoinHandle},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use nix::sched::{CloneFlags, setns};

mod offload;
mod packet;

pub use offload::Offload;
use offload::set_offload;
pub use packet::{Capture, Captured, Crossing, Gso, PacketSocket};

/// Slots of `10.201.0.0/16` in /30s.
const SLOTS: u32 = 1 << 14;
/// Slots tried before giving up (leftover links from crashed runs each hold one).
const SLOT_ATTEMPTS: u32 = 64;
/// A MAC no interface of a topology has: frames sent to it reach the host end's hooks
/// (XDP, TC ingress) and are then dropped by the host stack as `PACKET_OTHERHOST`, before
/// IP looks at them, so crafted frames never draw a reply or leave state behind.
pub const NOBODY_MAC: [u8; 6] = [0x02, 0x70, 0x6d, 0xff, 0xff, 0xfe];

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
        Self::build(stack, None)
    }

    /// Like [`Topology::new`], with the host end renamed to `host_name` (at most 15 bytes,
    /// unique to the caller) before it is configured: for tests of name patterns.
    ///
    /// # Errors
    /// As [`Topology::new`], or when the rename fails.
    pub fn with_host_name(stack: Stack, host_name: &str) -> Result<Self> {
        Self::build(stack, Some(host_name))
    }

    fn build(stack: Stack, host_name: Option<&str>) -> Result<Self> {
        let ns = NetNs::new()?;
        let (mut veth, slot) = create_veth(&ns.name)?;
        if let Some(name) = host_name {
            ip(&["link", "set", &veth.host, "name", name])?;
            name.clone_into(&mut veth.host);
        }
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

    /// Deletes the veth pair and creates it again under the same names, MACs and
    /// addresses, configured and up as by [`Topology::new`]: both ends get new ifindexes,
    /// as when an interface is deleted and recreated under a running portmon.
    ///
    /// # Errors
    /// When a command fails.
    pub fn recreate(&mut self) -> Result<()> {
        ip(&["link", "del", &self.veth.host])?;
        let output = add_veth(&self.veth.host, &self.peer, self.slot, &self.ns.name)?;
        ensure!(
            output.status.success(),
            "ip link add {} type veth: {}",
            self.veth.host,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        self.host_ifindex = ifindex(&self.veth.host)?;
        let peer = self.peer.clone();
        self.peer_ifindex = self.in_peer(|| ifindex(&peer))??;
        // The raw sender was bound to the old peer's ifindex.
        self.raw_sender = OnceLock::new();
        self.configure()
    }

    /// Sets the host end down (`up` false) or up.
    ///
    /// # Errors
    /// When `ip link set` fails.
    pub fn set_host_up(&self, up: bool) -> Result<()> {
        ip(&[
            "link",
            "set",
            &self.veth.host,
            if up { "up" } else { "down" },
        ])
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
        let output = add_veth(&host, &peer, slot, ns)?;
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

/// `ip link add <host> type veth peer name <peer> netns <ns>` with the slot's MACs.
fn add_veth(host: &str, peer: &str, slot: u32, ns: &str) -> Result<Output> {
    Command::new("ip")
        .args([
            "link",
            "add",
            host,
            "address",
            &mac_string(slot_mac(0x00, slot)),
        ])
        .args(["type", "veth", "peer", "name", peer])
        .args(["address", &mac_string(slot_mac(0x01, slot)), "netns", ns])
        .output()
        .context("running ip (install iproute2)")
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
