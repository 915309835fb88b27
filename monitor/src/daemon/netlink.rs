//! The host's interfaces and the XDP programs already attached to them, from one
//! rtnetlink `RTM_GETLINK` dump (what `ip -d link` shows), without running `ip`.
//!
//! The XDP attributes (`IFLA_XDP`, nested `IFLA_XDP_ATTACHED`/`IFLA_XDP_*PROG_ID`) are in
//! `include/uapi/linux/if_link.h` and are filled by `rtnl_xdp_fill()` in
//! net/core/rtnetlink.c for every link of a dump (kernel 4.13+ for the program ids).

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// `NLMSG_ERROR`, `NLMSG_DONE` from `linux/netlink.h`.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// `nlmsghdr` and `ifinfomsg` sizes.
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
/// Attribute types carry two flag bits on top (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `IFLA_IFNAME`, `IFLA_XDP` from `linux/if_link.h`.
const IFLA_IFNAME: u16 = 3;
const IFLA_XDP: u16 = 43;
/// Nested in `IFLA_XDP`.
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
/// `XDP_ATTACHED_*`.
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
/// `IFF_UP`, `IFF_LOOPBACK` from `linux/if.h`.
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Administratively up.
    pub up: bool,
    /// The loopback device.
    pub loopback: bool,
    /// XDP programs attached now, one per mode.
    pub xdp: Vec<XdpProgram>,
}

/// An XDP program attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpProgram {
    /// The kernel's program id (`bpftool prog show id N`).
    pub id: u32,
    /// `native`, `generic`, `offload`.
    pub mode: &'static str,
}

/// Errors of the dump.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A socket call failed.
    #[error("rtnetlink {call}: {source}")]
    Io {
        /// The call.
        call: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The kernel answered with an error.
    #[error("rtnetlink RTM_GETLINK: {0}")]
    Kernel(io::Error),
    /// The answer could not be parsed.
    #[error("rtnetlink RTM_GETLINK: malformed answer ({0})")]
    Malformed(&'static str),
}

/// Every interface of this network namespace, with its XDP programs.
///
/// # Errors
/// When the netlink socket fails or the answer is malformed.
pub fn links() -> Result<Vec<Link>, NetlinkError> {
    let io = |call| move |source| NetlinkError::Io { call, source };
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(io("socket")(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let request = dump_request(1);
    // SAFETY: an all-zero sockaddr_nl is valid; the fields set below address the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or_default();
    // SAFETY: `request` and `kernel` are valid for the lengths given for the whole call.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&raw const kernel).cast(),
            u32::try_from(size_of::<libc::sockaddr_nl>()).unwrap_or(u32::MAX),
        )
    };
    if sent < 0 {
        return Err(io("sendto")(io::Error::last_os_error()));
    }
    let mut links = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: `buffer` is valid for writes of its length during the call. MSG_TRUNC
        // makes the kernel return the real datagram length, so truncation is detected.
        let received = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_TRUNC,
            )
        };
        let received =
            usize::try_from(received).map_err(|_| io("recv")(io::Error::last_os_error()))?;
        let datagram = buffer
            .get(..received)
            .ok_or(NetlinkError::Malformed("datagram larger than 64 KiB"))?;
        if parse_datagram(datagram, &mut links)? {
            return Ok(links);
        }
    }
}

/// `nlmsghdr` + `ifinfomsg` asking for every link.
fn dump_request(sequence: u32) -> Vec<u8> {
    let length = u32::try_from(NLMSG_HDRLEN + IFINFOMSG_LEN).unwrap_or(u32::MAX);
    let mut request = Vec::with_capacity(NLMSG_HDRLEN + IFINFOMSG_LEN);
    request.extend_from_slice(&length.to_ne_bytes());
    request.extend_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request.extend_from_slice(&sequence.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.resize(NLMSG_HDRLEN + IFINFOMSG_LEN, 0); // AF_UNSPEC: every family.
    request
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        bytes.get(offset..offset + 2)?.try_into().ok()?,
    ))
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        bytes.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

const fn align4(length: usize) -> usize {
    (length + 3) & !3
}

/// Parses one datagram of the dump into `links`; true once `NLMSG_DONE` is seen.
fn parse_datagram(datagram: &[u8], links: &mut Vec<Link>) -> Result<bool, NetlinkError> {
    for_each_message(datagram, |kind, message| {
        if kind == libc::RTM_NEWLINK {
            links.push(parse_link(message)?);
        }
        Ok(())
    })
}

/// Calls `f(type, payload)` for every message of `datagram` but `NLMSG_DONE` and
/// `NLMSG_ERROR`; true once `NLMSG_DONE` is seen, a kernel error ends it as an error.
pub(super) fn for_each_message(
    mut datagram: &[u8],
    mut f: impl FnMut(u16, &[u8]) -> Result<(), NetlinkError>,
) -> Result<bool, NetlinkError> {
    while datagram.len() >= NLMSG_HDRLEN {
        let length = u32_at(datagram, 0).ok_or(NetlinkError::Malformed("header"))? as usize;
        let kind = u16_at(datagram, 4).ok_or(NetlinkError::Malformed("header"))?;
        let message = datagram
            .get(NLMSG_HDRLEN..length)
            .ok_or(NetlinkError::Malformed("message length"))?;
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = message
                    .get(..4)
                    .and_then(|bytes| bytes.try_into().ok())
                    .map(i32::from_ne_bytes)
                    .ok_or(NetlinkError::Malformed("error message"))?;
                if code != 0 {
                    return Err(NetlinkError::Kernel(io::Error::from_raw_os_error(-code)));
                }
            }
            _ => f(kind, message)?,
        }
        datagram = datagram.get(align4(length)..).unwrap_or_default();
    }
    Ok(false)
}

/// Iterates the `(type, payload)` attributes of `bytes`.
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let length = usize::from(u16_at(bytes, 0)?);
        let kind = u16_at(bytes, 2)? & NLA_TYPE_MASK;
        let payload = bytes.get(4..length)?;
        bytes = bytes.get(align4(length)..).unwrap_or_default();
        Some((kind, payload))
    })
}

/// Parses an `ifinfomsg` with its attributes (`RTM_NEWLINK`, `RTM_DELLINK`).
pub(super) fn parse_link(message: &[u8]) -> Result<Link, NetlinkError> {
    let index = u32_at(message, 4).ok_or(NetlinkError::Malformed("ifinfomsg"))?;
    let flags = u32_at(message, 8).ok_or(NetlinkError::Malformed("ifinfomsg"))?;
    let mut link = Link {
        index,
        name: String::new(),
        up: flags & IFF_UP != 0,
        loopback: flags & IFF_LOOPBACK != 0,
        xdp: Vec::new(),
    };
    for (kind, payload) in attributes(message.get(IFINFOMSG_LEN..).unwrap_or_default()) {
        match kind {
            IFLA_IFNAME => {
                let name = payload.split(|&byte| byte == 0).next().unwrap_or_default();
                link.name = String::from_utf8_lossy(name).into_owned();
            }
            IFLA_XDP => link.xdp = parse_xdp(payload),
            _ => {}
        }
    }
    Ok(link)
}

fn parse_xdp(payload: &[u8]) -> Vec<XdpProgram> {
    let mut attached = 0;
    let mut single = None;
    let mut programs = Vec::new();
    for (kind, value) in attributes(payload) {
        let id = u32_at(value, 0).filter(|&id| id != 0);
        match (kind, id) {
            (IFLA_XDP_ATTACHED, _) => attached = value.first().copied().unwrap_or(0),
            (IFLA_XDP_PROG_ID, Some(id)) => single = Some(id),
            (IFLA_XDP_DRV_PROG_ID, Some(id)) => programs.push(XdpProgram { id, mode: "native" }),
            (IFLA_XDP_SKB_PROG_ID, Some(id)) => programs.push(XdpProgram {
                id,
                mode: "generic",
            }),
            (IFLA_XDP_HW_PROG_ID, Some(id)) => programs.push(XdpProgram {
                id,
                mode: "offload",
            }),
            _ => {}
        }
    }
    // With one mode attached the kernel sends IFLA_XDP_PROG_ID (and, since 5.x, the
    // per-mode id too); with several (XDP_ATTACHED_MULTI) only the per-mode ids.
    if programs.is_empty()
        && let Some(id) = single
    {
        let mode = match attached {
            XDP_ATTACHED_DRV => "native",
            XDP_ATTACHED_SKB => "generic",
            XDP_ATTACHED_HW => "offload",
            _ => "unknown",
        };
        programs.push(XdpProgram { id, mode });
    }
    programs
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use super::*;

    fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let length = u16::try_from(4 + payload.len()).expect("a small attribute");
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&length.to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(payload);
        bytes.resize(align4(bytes.len()), 0);
        bytes
    }

    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let length = u32::try_from(NLMSG_HDRLEN + payload.len()).expect("a small message");
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&length.to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&[0; 10]);
        bytes.extend_from_slice(payload);
        bytes.resize(align4(bytes.len()), 0);
        bytes
    }

    fn newlink(index: u32, flags: u32, name: &str, xdp: Option<Vec<u8>>) -> Vec<u8> {
        let mut payload = vec![0u8; 4];
        payload.extend_from_slice(&index.to_ne_bytes());
        payload.extend_from_slice(&flags.to_ne_bytes());
        payload.extend_from_slice(&[0; 4]);
        let mut name = name.as_bytes().to_vec();
        name.push(0);
        payload.extend(attribute(IFLA_IFNAME, &name));
        if let Some(xdp) = xdp {
            payload.extend(attribute(IFLA_XDP | 0x8000, &xdp));
        }
        message(libc::RTM_NEWLINK, &payload)
    }

    #[test]
    fn parses_links_flags_and_attached_xdp_programs() {
        let single = [
            attribute(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_SKB]),
            attribute(IFLA_XDP_PROG_ID, &42u32.to_ne_bytes()),
        ]
        .concat();
        let multi = [
            attribute(IFLA_XDP_ATTACHED, &[4]),
            attribute(IFLA_XDP_DRV_PROG_ID, &7u32.to_ne_bytes()),
            attribute(IFLA_XDP_HW_PROG_ID, &8u32.to_ne_bytes()),
        ]
        .concat();
        let none = attribute(IFLA_XDP_ATTACHED, &[0]);
        let mut datagram = newlink(1, IFF_UP | IFF_LOOPBACK, "lo", Some(none));
        datagram.extend(newlink(2, IFF_UP, "eth0", Some(single)));
        datagram.extend(newlink(3, 0, "veth-down", Some(multi)));
        datagram.extend(newlink(4, IFF_UP, "old-kernel", None));
        let mut links = Vec::new();
        let done = parse_datagram(&datagram, &mut links).expect("a well-formed dump");
        assert!(!done, "no NLMSG_DONE yet");
        let summary: Vec<_> = links
            .iter()
            .map(|link| {
                (
                    link.index,
                    link.name.as_str(),
                    link.up,
                    link.loopback,
                    link.xdp.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "lo", true, true, vec![]),
                (
                    2,
                    "eth0",
                    true,
                    false,
                    vec![XdpProgram {
                        id: 42,
                        mode: "generic"
                    }]
                ),
                (
                    3,
                    "veth-down",
                    false,
                    false,
                    vec![
                        XdpProgram {
                            id: 7,
                            mode: "native"
                        },
                        XdpProgram {
                            id: 8,
                            mode: "offload"
                        }
                    ]
                ),
                (4, "old-kernel", true, false, vec![]),
            ]
        );
        assert!(
            parse_datagram(&message(NLMSG_DONE, &[0; 4]), &mut links).expect("done parses"),
            "NLMSG_DONE ends the dump"
        );
    }

    #[test]
    fn a_kernel_error_is_reported_and_garbage_is_malformed() {
        let error = message(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        match parse_datagram(&error, &mut Vec::new()) {
            Err(NetlinkError::Kernel(io)) => assert_eq!(io.raw_os_error(), Some(libc::EPERM)),
            other => panic!("expected EPERM from the kernel, got {other:?}"),
        }
        let mut truncated = newlink(2, IFF_UP, "eth0", None);
        truncated[0] = 200; // Claims more bytes than there are.
        assert!(
            matches!(
                parse_datagram(&truncated, &mut Vec::new()),
                Err(NetlinkError::Malformed(_))
            ),
            "a length past the datagram is malformed"
        );
    }

    #[test]
    fn the_dump_of_this_host_lists_loopback() {
        let links = links().expect("rtnetlink answers in any network namespace");
        assert!(
            links.iter().any(|link| link.loopback && link.name == "lo"),
            "expected lo among {links:?}"
        );
    }
}
