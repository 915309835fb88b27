//! Switching a veth end's offloads through the legacy ethtool ioctls (no ethtool binary
//! needed).

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Result, ensure};

/// An offload that [`super::Topology::set_offload`] switches, through the legacy ethtool ioctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    /// TCP segmentation offload (`ETHTOOL_STSO`). Off, the kernel segments GSO packets in
    /// software after the TC egress hook, so the other end receives wire-sized frames.
    Tso,
    /// Generic segmentation offload (`ETHTOOL_SGSO`).
    Gso,
    /// Generic receive offload (`ETHTOOL_SGRO`). On a veth, on also turns on NAPI for the
    /// receive queue, so received segments are merged before TC ingress sees them. Not
    /// before generic XDP: a device with a generic XDP program skips GRO
    /// (`netif_elide_gro()`, include/linux/netdevice.h).
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

pub(super) fn set_offload(interface: &str, offload: Offload, on: bool) -> Result<()> {
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
