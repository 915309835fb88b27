//! A veth pair whose peer lives in a network namespace of its own, both made here and
//! removed on drop (also when the benchmark fails half-way).
//!
//! Addresses come from 198.18.0.0/15 (RFC 2544, reserved for benchmarking), one /30 per
//! pair derived from the pid, so parallel runs do not collide.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};

use super::frames::Endpoint;

/// The veth pair and its namespace.
pub struct VethPair {
    /// The namespace holding the peer.
    pub namespace: String,
    /// The host-side interface (in this process's namespace).
    pub host: String,
    /// The peer interface, inside [`Self::namespace`].
    pub peer: String,
    /// Addresses of the host side.
    pub host_end: Endpoint,
    /// Addresses of the peer.
    pub peer_end: Endpoint,
    created_link: bool,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (install iproute2)")?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn dotted(ip: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
}

fn colon_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl VethPair {
    /// Creates the namespace, the pair, and the addresses of both ends, all up.
    ///
    /// # Errors
    /// When `ip` fails; whatever was made is removed again.
    pub fn create() -> anyhow::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // One /30 of 198.18.0.0/15 (2^15 of them) per pair.
        let block = (pid.wrapping_mul(16).wrapping_add(n)) & 0x7fff;
        let base = (198_u32 << 24) | (18 << 16) | (block << 2);
        let [b0, b1, b2, b3] = base.to_be_bytes();
        let [_, _, k_hi, k_lo] = block.to_be_bytes();
        let mut pair = Self {
            namespace: format!("pmbench-{pid}-{n}"),
            host: format!("pmbh{pid}n{n}"),
            peer: format!("pmbp{pid}n{n}"),
            host_end: Endpoint {
                mac: [0x02, 0x70, 0x6d, k_hi, k_lo, 0x01],
                ip: [b0, b1, b2, b3 | 1],
            },
            peer_end: Endpoint {
                mac: [0x02, 0x70, 0x6d, k_hi, k_lo, 0x02],
                ip: [b0, b1, b2, b3 | 2],
            },
            created_link: false,
        };
        if pair.host.len() > 15 {
            bail!("interface name {} is longer than 15 bytes", pair.host);
        }
        ip(&["netns", "add", &pair.namespace])?;
        pair.setup().with_context(|| {
            format!(
                "setting up veth {} <-> {} in namespace {}",
                pair.host, pair.peer, pair.namespace
            )
        })?;
        Ok(pair)
    }

    fn setup(&mut self) -> anyhow::Result<()> {
        let ns = self.namespace.clone();
        let host_mac = colon_mac(self.host_end.mac);
        let peer_mac = colon_mac(self.peer_end.mac);
        ip(&[
            "link", "add", &self.host, "address", &host_mac, "type", "veth", "peer", "name",
            &self.peer, "address", &peer_mac, "netns", &ns,
        ])?;
        self.created_link = true;
        let host_cidr = format!("{}/30", dotted(self.host_end.ip));
        let peer_cidr = format!("{}/30", dotted(self.peer_end.ip));
        ip(&["addr", "add", &host_cidr, "dev", &self.host])?;
        ip(&["link", "set", &self.host, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns, "addr", "add", &peer_cidr, "dev", &self.peer])?;
        ip(&["-n", &ns, "link", "set", &self.peer, "up"])?;
        // Static neighbours: no ARP exchange in the middle of a measurement.
        ip(&[
            "neigh",
            "replace",
            &dotted(self.peer_end.ip),
            "lladdr",
            &peer_mac,
            "dev",
            &self.host,
            "nud",
            "permanent",
        ])?;
        ip(&[
            "-n",
            &ns,
            "neigh",
            "replace",
            &dotted(self.host_end.ip),
            "lladdr",
            &host_mac,
            "dev",
            &self.peer,
            "nud",
            "permanent",
        ])?;
        Ok(())
    }

    /// Moves the calling thread (only it) into the peer's namespace.
    ///
    /// # Errors
    /// When the namespace cannot be opened or entered.
    pub fn enter_namespace(&self) -> anyhow::Result<()> {
        let path = format!("/run/netns/{}", self.namespace);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        // SAFETY: a valid namespace fd; setns only changes the calling thread's namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("setns into the peer namespace");
        }
        Ok(())
    }
}

/// The index of `interface` in the calling thread's namespace.
///
/// # Errors
/// When there is no such interface.
pub fn ifindex(interface: &str) -> anyhow::Result<u32> {
    let name = std::ffi::CString::new(interface).context("interface name with a NUL")?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("no interface {interface}"));
    }
    Ok(index)
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; the namespace goes after it.
        if self.created_link
            && let Err(error) = ip(&["link", "del", &self.host])
        {
            eprintln!("bench: cleaning up {}: {error:#}", self.host);
        }
        if let Err(error) = ip(&["netns", "del", &self.namespace]) {
            eprintln!("bench: cleaning up namespace {}: {error:#}", self.namespace);
        }
    }
}
