//! Link events from the kernel: a `NETLINK_ROUTE` socket bound to the `RTNLGRP_LINK`
//! multicast group, read in the async runtime through [`AsyncFd`].
//!
//! The kernel sends `RTM_NEWLINK` when a link appears, changes flags (up/down), is
//! renamed or changes other attributes, and `RTM_DELLINK` when it goes
//! (`rtmsg_ifinfo()` callers in net/core/dev.c and net/core/rtnetlink.c). Joining the
//! group needs no capability: rtnetlink's socket is created with
//! `NL_CFG_F_NONROOT_RECV` (`rtnetlink_net_init()` in net/core/rtnetlink.c), so the
//! watcher keeps working after the daemon drops its capabilities.
//!
//! A full receive queue drops messages and the next `recv` fails with `ENOBUFS`
//! (`netlink_overrun()` in net/netlink/af_netlink.c); the caller then re-reads every
//! link with a dump instead of trusting what it has seen.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use tokio::io::{Interest, unix::AsyncFd};

use super::netlink::{Link, NetlinkError, for_each_message, parse_link};

/// `RTMGRP_LINK` from `linux/rtnetlink.h`: the bit of group `RTNLGRP_LINK` (1).
const RTMGRP_LINK: u32 = 1;
/// Receive buffer asked for: bursts (a script creating dozens of veths) fit in it.
/// The kernel caps it at `net.core.rmem_max` without `CAP_NET_ADMIN`.
const RECEIVE_BUFFER: libc::c_int = 1 << 20;

/// What happened to a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// It appeared or changed (flags, name, attributes): its state now.
    Changed(Link),
    /// It is gone; its last state.
    Deleted(Link),
}

/// What one read of the socket brought.
#[derive(Debug)]
pub enum Batch {
    /// Events, in the kernel's order.
    Events(Vec<LinkEvent>),
    /// The socket overran and events were lost: re-read every link.
    Overrun,
}

/// Parses one datagram of link notifications.
///
/// # Errors
/// A malformed message.
pub fn parse_events(datagram: &[u8]) -> Result<Vec<LinkEvent>, NetlinkError> {
    let mut events = Vec::new();
    for_each_message(datagram, |kind, message| {
        match kind {
            libc::RTM_NEWLINK => events.push(LinkEvent::Changed(parse_link(message)?)),
            libc::RTM_DELLINK => events.push(LinkEvent::Deleted(parse_link(message)?)),
            _ => {}
        }
        Ok(())
    })?;
    Ok(events)
}

/// The subscribed socket.
pub struct LinkEvents {
    socket: AsyncFd<OwnedFd>,
    buffer: Vec<u8>,
}

fn syscall_error(call: &'static str) -> NetlinkError {
    NetlinkError::Io {
        call,
        source: io::Error::last_os_error(),
    }
}

impl LinkEvents {
    /// Opens the socket and joins `RTNLGRP_LINK`. Must run inside the runtime.
    ///
    /// # Errors
    /// When a socket call fails.
    pub fn subscribe() -> Result<Self, NetlinkError> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(syscall_error("socket"));
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = RECEIVE_BUFFER;
        // SAFETY: `size` lives for the call and its size is passed with it.
        let resized = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const size).cast(),
                u32::try_from(size_of::<libc::c_int>()).unwrap_or(u32::MAX),
            )
        };
        if resized < 0 {
            // The default buffer still works; an overrun is handled by a re-read.
            log::debug!("link events: SO_RCVBUF: {}", io::Error::last_os_error());
        }
        // SAFETY: an all-zero sockaddr_nl is valid; family and groups are set below.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or_default();
        address.nl_groups = RTMGRP_LINK;
        // SAFETY: `address` is a valid sockaddr_nl for the length given.
        let bound = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&raw const address).cast(),
                u32::try_from(size_of::<libc::sockaddr_nl>()).unwrap_or(u32::MAX),
            )
        };
        if bound < 0 {
            return Err(syscall_error("bind RTNLGRP_LINK"));
        }
        // SAFETY: the `AsyncFd` owns the `OwnedFd`, so the descriptor stays open, and is
        // the same one, until the registration is dropped with it.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|source| NetlinkError::Io {
                call: "registering with the runtime",
                source: source.into(),
            })?;
        Ok(Self {
            socket,
            buffer: vec![0; 64 * 1024],
        })
    }

    /// Waits for the next datagram and parses it.
    ///
    /// # Errors
    /// When the socket fails (other than an overrun, which is [`Batch::Overrun`]) or a
    /// message is malformed.
    pub async fn next(&mut self) -> Result<Batch, NetlinkError> {
        loop {
            let mut guard = self
                .socket
                .readable()
                .await
                .map_err(|source| NetlinkError::Io {
                    call: "waiting for link events",
                    source,
                })?;
            let fd = guard.get_inner().as_raw_fd();
            // SAFETY: `buffer` is valid for writes of its length during the call. MSG_TRUNC
            // makes the kernel return the real datagram length, so truncation is detected.
            let received = unsafe {
                libc::recv(
                    fd,
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                    libc::MSG_TRUNC,
                )
            };
            let Ok(received) = usize::try_from(received) else {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EAGAIN) => {
                        guard.clear_ready();
                        continue;
                    }
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => return Ok(Batch::Overrun),
                    _ => {
                        return Err(NetlinkError::Io {
                            call: "recv link events",
                            source: error,
                        });
                    }
                }
            };
            let Some(datagram) = self.buffer.get(..received) else {
                // Larger than the buffer: something was cut off, so re-read everything.
                return Ok(Batch::Overrun);
            };
            return parse_events(datagram).map(Batch::Events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, index: u32, flags: u32, name: &str) -> Vec<u8> {
        let mut name = name.as_bytes().to_vec();
        name.push(0);
        let attribute_length = 4 + name.len();
        let mut attribute = Vec::new();
        attribute.extend_from_slice(&u16::try_from(attribute_length).unwrap_or(0).to_ne_bytes());
        attribute.extend_from_slice(&3u16.to_ne_bytes()); // IFLA_IFNAME
        attribute.extend_from_slice(&name);
        attribute.resize(attribute_length.next_multiple_of(4), 0);
        let mut payload = vec![0u8; 4];
        payload.extend_from_slice(&index.to_ne_bytes());
        payload.extend_from_slice(&flags.to_ne_bytes());
        payload.extend_from_slice(&[0; 4]);
        payload.extend(attribute);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&u32::try_from(16 + payload.len()).unwrap_or(0).to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&[0; 10]);
        bytes.extend(payload);
        bytes
    }

    #[test]
    fn new_and_deleted_links_are_parsed_in_order_and_others_skipped() {
        let mut datagram = message(libc::RTM_NEWLINK, 7, 1, "pmh1");
        datagram.extend(message(libc::RTM_NEWADDR, 7, 0, "ignored"));
        datagram.extend(message(libc::RTM_DELLINK, 7, 0, "pmh1"));
        let events = parse_events(&datagram)
            .unwrap_or_else(|error| panic!("expected a well-formed datagram, got {error}"));
        let summary: Vec<(bool, u32, &str, bool)> = events
            .iter()
            .map(|event| match event {
                LinkEvent::Changed(link) => (true, link.index, link.name.as_str(), link.up),
                LinkEvent::Deleted(link) => (false, link.index, link.name.as_str(), link.up),
            })
            .collect();
        assert_eq!(
            summary,
            vec![(true, 7, "pmh1", true), (false, 7, "pmh1", false)],
            "expected the new link (up) then its deletion"
        );
    }
}
