//! The sandbox: a network namespace for the demo's clients, joined to the host namespace by
//! a veth pair the demo creates. portmon attaches to the host end, as it would to a server's
//! NIC; the servers listen on the host end's address; the clients run in the namespace.
//!
//! # Names and addresses
//! The namespace is `pmdemo<pid>`. The veth ends are `pmdh<slot>` (host) and `pmdp<slot>`
//! (namespace), where `slot` is claimed by creating the host link (the kernel refuses a name
//! that exists, so two demos never share one). The slot picks a /30 of `10.202.0.0/16`,
//! a private range (RFC 1918) that the tests (`10.201.0.0/16`) do not use: the host end gets
//! `.1` and the namespace end `.2`. Nothing else is ever addressed.
//!
//! Dropping the sandbox deletes the veth (both ends) and then the namespace.

use std::{
    fs::File,
    net::Ipv4Addr,
    os::fd::AsRawFd as _,
    process::{Command, Output},
};

use anyhow::{Context as _, bail};

/// /30 slots in `10.202.0.0/16`.
const SLOTS: u32 = 1 << 14;
/// Slots tried before giving up (links left by killed runs each hold one).
const SLOT_ATTEMPTS: u32 = 64;
/// `10.202.0.0`, the base of the demo's range.
const BASE: u32 = u32::from_be_bytes([10, 202, 0, 0]);

/// A namespace made with `ip netns add`, deleted on drop.
#[derive(Debug)]
struct NetNs {
    name: String,
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(error) = ip(&["netns", "del", &self.name]) {
            eprintln!("demo: removing namespace {}: {error:#}", self.name);
        }
    }
}

/// The veth pair, deleted on drop (deleting the host end deletes its peer).
#[derive(Debug)]
struct Veth {
    host: String,
}

impl Drop for Veth {
    fn drop(&mut self) {
        if let Err(error) = ip(&["link", "del", &self.host]) {
            eprintln!("demo: removing veth {}: {error:#}", self.host);
        }
    }
}

/// The namespace and veth pair, addressed and up; removed on drop.
#[derive(Debug)]
pub struct Sandbox {
    // Field order is drop order: the link goes before its namespace.
    veth: Veth,
    ns: NetNs,
    peer: String,
    slot: u32,
}

impl Sandbox {
    /// Creates the namespace and the veth pair, addresses both ends and brings them up.
    ///
    /// # Errors
    /// When an `ip` command fails or no free slot is found.
    pub fn new() -> anyhow::Result<Self> {
        let name = format!("pmdemo{}", std::process::id());
        ip(&["netns", "add", &name]).context("creating the clients' network namespace")?;
        let ns = NetNs { name };
        let (veth, slot) = claim_veth(&ns.name)?;
        let sandbox = Self {
            peer: format!("pmdp{slot}"),
            veth,
            ns,
            slot,
        };
        sandbox.configure()?;
        Ok(sandbox)
    }

    fn configure(&self) -> anyhow::Result<()> {
        let (host, peer, ns) = (self.host_if(), self.peer_if(), self.ns_name());
        ip(&[
            "addr",
            "add",
            &format!("{}/30", self.host_addr()),
            "dev",
            host,
        ])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/30", self.peer_addr()),
            "dev",
            peer,
        ])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "set", peer, "up"])?;
        ip(&["link", "set", host, "up"])?;
        Ok(())
    }

    /// The host end (portmon attaches here).
    pub fn host_if(&self) -> &str {
        &self.veth.host
    }

    /// The namespace end.
    pub fn peer_if(&self) -> &str {
        &self.peer
    }

    /// The namespace's name (`ip netns exec <name> ...`).
    pub fn ns_name(&self) -> &str {
        &self.ns.name
    }

    /// The host end's address: the servers listen here.
    pub fn host_addr(&self) -> Ipv4Addr {
        slot_addrs(self.slot).0
    }

    /// The namespace end's address: the clients' source.
    pub fn peer_addr(&self) -> Ipv4Addr {
        slot_addrs(self.slot).1
    }
}

/// Moves the calling thread (only it) into namespace `ns`: its sockets, and the processes
/// it spawns, are the clients'.
///
/// # Errors
/// When the namespace cannot be opened or entered.
pub fn enter(ns: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: the descriptor is open for the duration of the call; setns with
    // CLONE_NEWNET only changes the calling thread's network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "entering namespace {ns}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The host (`.1`) and namespace (`.2`) addresses of `slot`'s /30.
fn slot_addrs(slot: u32) -> (Ipv4Addr, Ipv4Addr) {
    let network = BASE + (slot % SLOTS) * 4;
    (Ipv4Addr::from(network + 1), Ipv4Addr::from(network + 2))
}

/// Claims a slot by creating `pmdh<slot>` with its peer `pmdp<slot>` inside `ns`.
fn claim_veth(ns: &str) -> anyhow::Result<(Veth, u32)> {
    let start = std::process::id().wrapping_mul(37) % SLOTS;
    for attempt in 0..SLOT_ATTEMPTS {
        let slot = (start + attempt) % SLOTS;
        let host = format!("pmdh{slot}");
        let peer = format!("pmdp{slot}");
        let output = ip_output(&[
            "link", "add", &host, "type", "veth", "peer", "name", &peer, "netns", ns,
        ])?;
        if output.status.success() {
            return Ok((Veth { host }, slot));
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.contains("exists") {
            bail!("ip link add {host} type veth: {}", stderr.trim());
        }
    }
    bail!(
        "no free veth name among {SLOT_ATTEMPTS} tried: remove leftover pmdh* links \
         (`ip -br link | grep pmdh`) from killed demos"
    )
}

fn ip_output(args: &[&str]) -> anyhow::Result<Output> {
    Command::new("ip")
        .args(args)
        .output()
        .context("running ip (install iproute2)")
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = ip_output(args)?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_map_to_disjoint_slash_30s_of_10_202() {
        let cases = [
            ("first slot", 0, "10.202.0.1", "10.202.0.2"),
            ("second slot", 1, "10.202.0.5", "10.202.0.6"),
            ("crosses an octet", 64, "10.202.1.1", "10.202.1.2"),
            ("last slot", SLOTS - 1, "10.202.255.253", "10.202.255.254"),
        ];
        for (name, slot, host, peer) in cases {
            let (got_host, got_peer) = slot_addrs(slot);
            assert_eq!(
                (got_host.to_string(), got_peer.to_string()),
                (host.to_owned(), peer.to_owned()),
                "{name}: expected host {host} and peer {peer}"
            );
        }
    }
}
