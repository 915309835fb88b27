//! Hand-built Ethernet frames, and the table of packet shapes every parser test runs.
//!
//! # Building a frame
//!
//! A [`Frame`] is assembled layer by layer and rendered with [`Frame::build`] into the
//! bytes a NIC would hand to XDP (Ethernet header first, no FCS):
//!
//! ```ignore
//! use portmon_tests::frames::{Frame, Ipv4, Tcp, TCP_SYN};
//! let syn = Frame::new().ipv4(Ipv4::new()).tcp(Tcp::new(443).flags(TCP_SYN)).build();
//! let qinq_udp = Frame::new()
//!     .vlan(TPID_QINQ, 100)
//!     .vlan(TPID_VLAN, 200)
//!     .ipv6(Ipv6::new().ext(Ext::hop_by_hop(0)))
//!     .udp(Udp::new(53))
//!     .payload(b"query")
//!     .build();
//! ```
//!
//! Every length, version and count field is computed from what the frame holds, and can be
//! overridden to make an inconsistent header (`Ipv4::total_len`, `Ipv4::ihl`,
//! `Ipv6::payload_len`, `Tcp::data_offset`, `Udp::len`, [`Ext::raw`], ...). Checksums
//! (IPv4 header, TCP, UDP, ICMP, ICMPv6) are computed over the bytes actually present, so
//! a well-formed frame is accepted by a real network stack too. [`Frame::truncate`] cuts
//! the rendered frame at any offset; [`Frame::pad_to`] adds Ethernet padding.
//!
//! [`Frame::ip_packet`] renders only the IP packet (no Ethernet header), which is what an
//! ICMP error quotes: see [`Icmp::error`].
//!
//! # The case table
//!
//! [`cases`] is one row per parsing rule of the monitor (issue 2): a name, a frame and the
//! verdict `monitor_common::parse::parse` must reach. The host parser test, the
//! BPF_PROG_TEST_RUN table test and the integration tests all run it.

use monitor_common::{
    layout::{L4, Reason},
    parse::{MAX_IPV6_EXT_HEADERS, Parsed},
};

/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Tag protocol identifier of an 802.1Q VLAN tag.
pub const TPID_VLAN: u16 = 0x8100;
/// Tag protocol identifier of an 802.1ad (QinQ service) tag.
pub const TPID_QINQ: u16 = 0x88a8;

/// IP protocol numbers used by the builder and the tables.
pub mod proto {
    /// IPv6 hop-by-hop options.
    pub const HOPOPTS: u8 = 0;
    /// ICMP (IPv4).
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ESP.
    pub const ESP: u8 = 50;
    /// Authentication header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const NO_NEXT: u8 = 59;
    /// IPv6 destination options.
    pub const DSTOPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// TCP FIN flag.
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag.
pub const TCP_RST: u8 = 0x04;
/// TCP PSH flag.
pub const TCP_PSH: u8 = 0x08;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;

/// Length of an Ethernet header without tags.
pub const ETH_LEN: usize = 14;
/// Length of one VLAN tag.
pub const VLAN_LEN: usize = 4;
/// Length of an IPv4 header without options.
pub const IPV4_LEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_LEN: usize = 40;
/// Length of a TCP header without options.
pub const TCP_LEN: usize = 20;
/// Length of a UDP header.
pub const UDP_LEN: usize = 8;
/// Length of the ICMP / ICMPv6 header (type, code, checksum, 4 bytes of rest).
pub const ICMP_LEN: usize = 8;

/// Default source MAC (locally administered).
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Default destination MAC (locally administered).
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Ethernet header: addresses and up to any number of tags (the parser walks two).
#[derive(Clone, Debug)]
pub struct Eth {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// `(TPID, TCI)` of each tag, outermost first.
    pub tags: Vec<(u16, u16)>,
}

impl Default for Eth {
    fn default() -> Self {
        Self {
            dst: DST_MAC,
            src: SRC_MAC,
            tags: Vec::new(),
        }
    }
}

impl Eth {
    fn render(&self, ethertype: u16, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.dst);
        out.extend_from_slice(&self.src);
        for &(tpid, tci) in &self.tags {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
    }
}

/// An IPv4 header. `Ipv4::new()` is a valid header; setters change one field each.
#[derive(Clone, Debug)]
pub struct Ipv4 {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Version nibble (4 unless overridden).
    pub version: u8,
    /// IHL override (in 32-bit words); `None` computes it from the options.
    pub ihl: Option<u8>,
    /// Total-length override; `None` is the header plus everything after it.
    pub total_len: Option<u16>,
    /// Protocol override; `None` takes the transport's.
    pub protocol: Option<u8>,
    /// Identification.
    pub ident: u16,
    /// DF flag.
    pub dont_fragment: bool,
    /// MF flag.
    pub more_fragments: bool,
    /// Fragment offset, in 8-byte units (13 bits).
    pub fragment_offset: u16,
    /// TTL.
    pub ttl: u8,
    /// Options, zero-padded (EOL) to a multiple of 4 bytes.
    pub options: Vec<u8>,
}

impl Default for Ipv4 {
    fn default() -> Self {
        Self {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
            version: 4,
            ihl: None,
            total_len: None,
            protocol: None,
            ident: 0x1234,
            dont_fragment: true,
            more_fragments: false,
            fragment_offset: 0,
            ttl: 64,
            options: Vec::new(),
        }
    }
}

impl Ipv4 {
    /// A valid header from 10.0.0.1 to 10.0.0.2, DF set, no options.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets both addresses.
    #[must_use]
    pub fn addrs(mut self, src: [u8; 4], dst: [u8; 4]) -> Self {
        self.src = src;
        self.dst = dst;
        self
    }
    /// Overrides the version nibble.
    #[must_use]
    pub fn version(mut self, version: u8) -> Self {
        self.version = version;
        self
    }
    /// Overrides IHL (32-bit words).
    #[must_use]
    pub fn ihl(mut self, ihl: u8) -> Self {
        self.ihl = Some(ihl);
        self
    }
    /// Overrides the total length.
    #[must_use]
    pub fn total_len(mut self, total_len: u16) -> Self {
        self.total_len = Some(total_len);
        self
    }
    /// Overrides the protocol field.
    #[must_use]
    pub fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = Some(protocol);
        self
    }
    /// Makes this a fragment: `offset` in 8-byte units, `more` the MF flag. Clears DF.
    #[must_use]
    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        self.fragment_offset = offset;
        self.more_fragments = more;
        self.dont_fragment = false;
        self
    }
    /// Sets the options (padded to a multiple of 4 with EOL).
    #[must_use]
    pub fn options(mut self, options: &[u8]) -> Self {
        self.options = options.to_vec();
        self
    }

    fn render(&self, protocol: u8, payload: &[u8], out: &mut Vec<u8>) {
        let mut options = self.options.clone();
        options.resize(options.len().next_multiple_of(4), 0);
        let header_len = IPV4_LEN + options.len();
        let ihl = self
            .ihl
            .unwrap_or_else(|| u8::try_from(header_len / 4).unwrap_or(0x0f));
        let total_len = self
            .total_len
            .unwrap_or_else(|| u16::try_from(header_len + payload.len()).unwrap_or(u16::MAX));
        let flags = (u16::from(self.dont_fragment) << 14)
            | (u16::from(self.more_fragments) << 13)
            | (self.fragment_offset & 0x1fff);
        let start = out.len();
        out.push((self.version << 4) | (ihl & 0x0f));
        out.push(0);
        out.extend_from_slice(&total_len.to_be_bytes());
        out.extend_from_slice(&self.ident.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.push(self.ttl);
        out.push(self.protocol.unwrap_or(protocol));
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.src);
        out.extend_from_slice(&self.dst);
        out.extend_from_slice(&options);
        let checksum = internet_checksum(&out[start..], 0);
        out[start + 10..start + 12].copy_from_slice(&checksum.to_be_bytes());
        out.extend_from_slice(payload);
    }

    fn pseudo_header_sum(&self, protocol: u8, l4_len: usize) -> u32 {
        let mut sum = sum_words(&self.src) + sum_words(&self.dst);
        sum += u32::from(protocol);
        sum += u32::try_from(l4_len & 0xffff).unwrap_or(0);
        sum
    }
}

/// One IPv6 extension header. The builder fills in each header's next-header byte.
#[derive(Clone, Debug)]
pub enum Ext {
    /// Hop-by-hop options: `(len + 1) * 8` bytes, filled with PadN.
    HopByHop {
        /// Hdr Ext Len (8-octet units beyond the first 8).
        len: u8,
    },
    /// Routing header: `(len + 1) * 8` bytes.
    Routing {
        /// Hdr Ext Len.
        len: u8,
        /// Routing type.
        routing_type: u8,
        /// Segments left.
        segments_left: u8,
    },
    /// Destination options: `(len + 1) * 8` bytes, filled with PadN.
    DestOpts {
        /// Hdr Ext Len.
        len: u8,
    },
    /// Fragment header (8 bytes).
    Fragment {
        /// Fragment offset in 8-byte units (13 bits).
        offset: u16,
        /// M flag.
        more: bool,
        /// Identification.
        ident: u32,
    },
    /// Authentication header: `(payload_len + 2) * 4` bytes (RFC 4302).
    Ah {
        /// Payload Len (4-octet units, minus 2).
        payload_len: u8,
    },
    /// Any header: `protocol` is what the previous header names, `bytes` the header itself;
    /// its first byte is replaced by the next header's protocol, the rest is kept as given.
    Raw {
        /// The protocol number announcing it.
        protocol: u8,
        /// Its bytes (at least one).
        bytes: Vec<u8>,
    },
}

impl Ext {
    /// Hop-by-hop options of `(len + 1) * 8` bytes.
    #[must_use]
    pub fn hop_by_hop(len: u8) -> Self {
        Ext::HopByHop { len }
    }
    /// Destination options of `(len + 1) * 8` bytes.
    #[must_use]
    pub fn dest_opts(len: u8) -> Self {
        Ext::DestOpts { len }
    }
    /// A routing header of `(len + 1) * 8` bytes, type 0 (deprecated, parsed anyway), no
    /// segments left.
    #[must_use]
    pub fn routing(len: u8) -> Self {
        Ext::Routing {
            len,
            routing_type: 0,
            segments_left: 0,
        }
    }
    /// A fragment header.
    #[must_use]
    pub fn fragment(offset: u16, more: bool) -> Self {
        Ext::Fragment {
            offset,
            more,
            ident: 0xdead_beef,
        }
    }
    /// An authentication header with `payload_len` (1 is the shortest valid: no ICV).
    #[must_use]
    pub fn ah(payload_len: u8) -> Self {
        Ext::Ah { payload_len }
    }
    /// An arbitrary header.
    #[must_use]
    pub fn raw(protocol: u8, bytes: &[u8]) -> Self {
        Ext::Raw {
            protocol,
            bytes: bytes.to_vec(),
        }
    }

    /// The protocol number that announces this header.
    #[must_use]
    pub fn protocol(&self) -> u8 {
        match self {
            Ext::HopByHop { .. } => proto::HOPOPTS,
            Ext::Routing { .. } => proto::ROUTING,
            Ext::DestOpts { .. } => proto::DSTOPTS,
            Ext::Fragment { .. } => proto::FRAGMENT,
            Ext::Ah { .. } => proto::AH,
            Ext::Raw { protocol, .. } => *protocol,
        }
    }

    /// Its length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            Ext::HopByHop { len } | Ext::DestOpts { len } | Ext::Routing { len, .. } => {
                (usize::from(*len) + 1) * 8
            }
            Ext::Fragment { .. } => 8,
            Ext::Ah { payload_len } => (usize::from(*payload_len) + 2) * 4,
            Ext::Raw { bytes, .. } => bytes.len(),
        }
    }

    /// Whether it renders to no bytes (only an empty [`Ext::Raw`]).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn render(&self, next_header: u8, out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            Ext::HopByHop { len } | Ext::DestOpts { len } => {
                out.extend_from_slice(&[next_header, *len]);
                pad_options(self.len() - 2, out);
            }
            Ext::Routing {
                len,
                routing_type,
                segments_left,
            } => {
                out.extend_from_slice(&[next_header, *len, *routing_type, *segments_left]);
                out.resize(start + self.len(), 0);
            }
            Ext::Fragment {
                offset,
                more,
                ident,
            } => {
                let field = ((offset & 0x1fff) << 3) | u16::from(*more);
                out.extend_from_slice(&[next_header, 0]);
                out.extend_from_slice(&field.to_be_bytes());
                out.extend_from_slice(&ident.to_be_bytes());
            }
            Ext::Ah { payload_len } => {
                out.extend_from_slice(&[next_header, *payload_len, 0, 0]);
                out.extend_from_slice(&0x0000_1000_u32.to_be_bytes()); // SPI
                out.extend_from_slice(&1_u32.to_be_bytes()); // sequence number
                // The ICV (zeros), or nothing when the length is shorter than the fixed part.
                out.resize(start + self.len(), 0);
            }
            Ext::Raw { bytes, .. } => {
                out.extend_from_slice(bytes);
                if let Some(first) = out.get_mut(start) {
                    *first = next_header;
                }
            }
        }
    }
}

/// Fills `len` bytes of an options header with PadN (or Pad1 for a single byte).
fn pad_options(len: usize, out: &mut Vec<u8>) {
    match len {
        0 => {}
        1 => out.push(0),
        _ => {
            out.push(1);
            out.push(u8::try_from(len - 2).unwrap_or(u8::MAX));
            out.resize(out.len() + len - 2, 0);
        }
    }
}

/// An IPv6 header and its extension-header chain.
#[derive(Clone, Debug)]
pub struct Ipv6 {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Version nibble (6 unless overridden).
    pub version: u8,
    /// Payload-length override; `None` is everything after the fixed header.
    pub payload_len: Option<u16>,
    /// Override of the protocol the last extension header (or the fixed header) names;
    /// `None` takes the transport's.
    pub next_header: Option<u8>,
    /// Hop limit.
    pub hop_limit: u8,
    /// The extension headers, in order.
    pub exts: Vec<Ext>,
}

impl Default for Ipv6 {
    fn default() -> Self {
        let mut src = [0u8; 16];
        src[..2].copy_from_slice(&[0xfd, 0x00]);
        src[15] = 1;
        let mut dst = src;
        dst[15] = 2;
        Self {
            src,
            dst,
            version: 6,
            payload_len: None,
            next_header: None,
            hop_limit: 64,
            exts: Vec::new(),
        }
    }
}

impl Ipv6 {
    /// A valid header from fd00::1 to fd00::2 without extension headers.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets both addresses.
    #[must_use]
    pub fn addrs(mut self, src: [u8; 16], dst: [u8; 16]) -> Self {
        self.src = src;
        self.dst = dst;
        self
    }
    /// Overrides the version nibble.
    #[must_use]
    pub fn version(mut self, version: u8) -> Self {
        self.version = version;
        self
    }
    /// Overrides the payload length.
    #[must_use]
    pub fn payload_len(mut self, payload_len: u16) -> Self {
        self.payload_len = Some(payload_len);
        self
    }
    /// Overrides the protocol after the extension headers.
    #[must_use]
    pub fn next_header(mut self, next_header: u8) -> Self {
        self.next_header = Some(next_header);
        self
    }
    /// Appends an extension header.
    #[must_use]
    pub fn ext(mut self, ext: Ext) -> Self {
        self.exts.push(ext);
        self
    }

    fn render(&self, protocol: u8, payload: &[u8], out: &mut Vec<u8>) {
        let last = self.next_header.unwrap_or(protocol);
        let mut body = Vec::new();
        for (i, ext) in self.exts.iter().enumerate() {
            let next = self.exts.get(i + 1).map_or(last, Ext::protocol);
            ext.render(next, &mut body);
        }
        body.extend_from_slice(payload);
        let first = self.exts.first().map_or(last, Ext::protocol);
        let payload_len = self
            .payload_len
            .unwrap_or_else(|| u16::try_from(body.len()).unwrap_or(u16::MAX));
        out.extend_from_slice(&[self.version << 4, 0, 0, 0]);
        out.extend_from_slice(&payload_len.to_be_bytes());
        out.push(first);
        out.push(self.hop_limit);
        out.extend_from_slice(&self.src);
        out.extend_from_slice(&self.dst);
        out.extend_from_slice(&body);
    }

    fn pseudo_header_sum(&self, protocol: u8, l4_len: usize) -> u32 {
        let mut sum = sum_words(&self.src) + sum_words(&self.dst);
        let len = u32::try_from(l4_len).unwrap_or(u32::MAX);
        sum += (len >> 16) + (len & 0xffff);
        sum += u32::from(protocol);
        sum
    }

    fn exts_len(&self) -> usize {
        self.exts.iter().map(Ext::len).sum()
    }
}

/// A TCP header.
#[derive(Clone, Debug)]
pub struct Tcp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte (FIN 0x01 .. CWR 0x80).
    pub flags: u8,
    /// Data-offset override (32-bit words); `None` computes it from the options.
    pub data_offset: Option<u8>,
    /// Window.
    pub window: u16,
    /// Options, zero-padded (EOL) to a multiple of 4 bytes.
    pub options: Vec<u8>,
}

impl Tcp {
    /// An ACK from port 40000 to `dst_port`.
    #[must_use]
    pub fn new(dst_port: u16) -> Self {
        Self {
            src_port: 40000,
            dst_port,
            seq: 1000,
            ack: 2000,
            flags: TCP_ACK,
            data_offset: None,
            window: 0xffff,
            options: Vec::new(),
        }
    }
    /// Sets the flags byte.
    #[must_use]
    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }
    /// Sets the source port.
    #[must_use]
    pub fn src_port(mut self, src_port: u16) -> Self {
        self.src_port = src_port;
        self
    }
    /// Overrides the data offset (32-bit words).
    #[must_use]
    pub fn data_offset(mut self, data_offset: u8) -> Self {
        self.data_offset = Some(data_offset);
        self
    }
    /// Sets the options (padded to a multiple of 4 with EOL).
    #[must_use]
    pub fn options(mut self, options: &[u8]) -> Self {
        self.options = options.to_vec();
        self
    }

    fn render(&self, payload: &[u8]) -> Vec<u8> {
        let mut options = self.options.clone();
        options.resize(options.len().next_multiple_of(4), 0);
        let data_offset = self
            .data_offset
            .unwrap_or_else(|| u8::try_from((TCP_LEN + options.len()) / 4).unwrap_or(0x0f));
        let mut out = Vec::with_capacity(TCP_LEN + options.len() + payload.len());
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ack.to_be_bytes());
        out.push(data_offset << 4);
        out.push(self.flags);
        out.extend_from_slice(&self.window.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        out.extend_from_slice(&options);
        out.extend_from_slice(payload);
        out
    }
}

/// A UDP header.
#[derive(Clone, Debug)]
pub struct Udp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Length override; `None` is the header plus the payload.
    pub len: Option<u16>,
}

impl Udp {
    /// A datagram from port 40000 to `dst_port`.
    #[must_use]
    pub fn new(dst_port: u16) -> Self {
        Self {
            src_port: 40000,
            dst_port,
            len: None,
        }
    }
    /// Sets the source port.
    #[must_use]
    pub fn src_port(mut self, src_port: u16) -> Self {
        self.src_port = src_port;
        self
    }
    /// Overrides the length field.
    #[must_use]
    pub fn len(mut self, len: u16) -> Self {
        self.len = Some(len);
        self
    }

    fn render(&self, payload: &[u8]) -> Vec<u8> {
        let len = self
            .len
            .unwrap_or_else(|| u16::try_from(UDP_LEN + payload.len()).unwrap_or(u16::MAX));
        let mut out = Vec::with_capacity(UDP_LEN + payload.len());
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(payload);
        out
    }
}

/// An ICMP or ICMPv6 message (which one depends on the IP version of the frame).
#[derive(Clone, Debug)]
pub struct Icmp {
    /// Type.
    pub kind: u8,
    /// Code.
    pub code: u8,
    /// The 4 bytes after the checksum (identifier/sequence, unused, MTU, ...).
    pub rest: [u8; 4],
    /// The body: echo data, or the quoted IP packet of an error.
    pub body: Vec<u8>,
}

impl Icmp {
    /// An ICMP echo request (type 8).
    #[must_use]
    pub fn echo_v4() -> Self {
        Self {
            kind: 8,
            code: 0,
            rest: [0x12, 0x34, 0, 1],
            body: b"ping".to_vec(),
        }
    }
    /// An ICMPv6 echo request (type 128).
    #[must_use]
    pub fn echo_v6() -> Self {
        Self {
            kind: 128,
            ..Self::echo_v4()
        }
    }
    /// An error of `kind`/`code` quoting `quoted` (an IP packet, e.g. from
    /// [`Frame::ip_packet`]): ICMP 3/3 port unreachable, ICMPv6 1/4 port unreachable.
    #[must_use]
    pub fn error(kind: u8, code: u8, quoted: &[u8]) -> Self {
        Self {
            kind,
            code,
            rest: [0; 4],
            body: quoted.to_vec(),
        }
    }

    fn render(&self) -> Vec<u8> {
        let mut out = vec![self.kind, self.code, 0, 0];
        out.extend_from_slice(&self.rest);
        out.extend_from_slice(&self.body);
        out
    }
}

/// What follows the Ethernet header.
#[derive(Clone, Debug)]
pub enum Net {
    /// IPv4.
    Ipv4(Ipv4),
    /// IPv6.
    Ipv6(Ipv6),
    /// Any ethertype; the transport and payload follow the Ethernet header directly.
    Other(u16),
}

/// What follows the IP header(s).
#[derive(Clone, Debug)]
pub enum Transport {
    /// Nothing but the payload, under IP protocol `0` unless the IP header overrides it.
    None,
    /// TCP.
    Tcp(Tcp),
    /// UDP.
    Udp(Udp),
    /// ICMP over IPv4, ICMPv6 over IPv6.
    Icmp(Icmp),
    /// Any IP protocol; its header belongs in the payload.
    Other(u8),
}

/// A whole frame, built layer by layer. See the module documentation.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Ethernet header and tags.
    pub eth: Eth,
    /// The network layer.
    pub net: Net,
    /// The transport layer.
    pub transport: Transport,
    /// Bytes after the transport header.
    pub payload: Vec<u8>,
    /// Cut the rendered frame to this many bytes.
    pub truncate: Option<usize>,
    /// Pad the rendered frame with zeros to at least this many bytes.
    pub pad_to: Option<usize>,
}

impl Default for Frame {
    fn default() -> Self {
        Self::new()
    }
}

impl Frame {
    /// An untagged IPv4 frame with no transport and no payload.
    #[must_use]
    pub fn new() -> Self {
        Self {
            eth: Eth::default(),
            net: Net::Ipv4(Ipv4::new()),
            transport: Transport::None,
            payload: Vec::new(),
            truncate: None,
            pad_to: None,
        }
    }
    /// Sets the MAC addresses.
    #[must_use]
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.eth.src = src;
        self.eth.dst = dst;
        self
    }
    /// Appends a VLAN tag (`tpid` [`TPID_VLAN`] or [`TPID_QINQ`], or anything else).
    #[must_use]
    pub fn vlan(mut self, tpid: u16, vid: u16) -> Self {
        self.eth.tags.push((tpid, vid & 0x0fff));
        self
    }
    /// Uses an IPv4 header.
    #[must_use]
    pub fn ipv4(mut self, ip: Ipv4) -> Self {
        self.net = Net::Ipv4(ip);
        self
    }
    /// Uses an IPv6 header.
    #[must_use]
    pub fn ipv6(mut self, ip: Ipv6) -> Self {
        self.net = Net::Ipv6(ip);
        self
    }
    /// Uses a non-IP ethertype; the payload follows the Ethernet header.
    #[must_use]
    pub fn ethertype(mut self, ethertype: u16) -> Self {
        self.net = Net::Other(ethertype);
        self
    }
    /// Uses a TCP header.
    #[must_use]
    pub fn tcp(mut self, tcp: Tcp) -> Self {
        self.transport = Transport::Tcp(tcp);
        self
    }
    /// Uses a UDP header.
    #[must_use]
    pub fn udp(mut self, udp: Udp) -> Self {
        self.transport = Transport::Udp(udp);
        self
    }
    /// Uses an ICMP (IPv4) or ICMPv6 (IPv6) message.
    #[must_use]
    pub fn icmp(mut self, icmp: Icmp) -> Self {
        self.transport = Transport::Icmp(icmp);
        self
    }
    /// Uses IP protocol `protocol`, whose header the payload carries.
    #[must_use]
    pub fn ip_protocol(mut self, protocol: u8) -> Self {
        self.transport = Transport::Other(protocol);
        self
    }
    /// Sets the payload.
    #[must_use]
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }
    /// Cuts the rendered frame to `len` bytes.
    #[must_use]
    pub fn truncate(mut self, len: usize) -> Self {
        self.truncate = Some(len);
        self
    }
    /// Pads the rendered frame with zeros to at least `len` bytes (60 is Ethernet's minimum).
    #[must_use]
    pub fn pad_to(mut self, len: usize) -> Self {
        self.pad_to = Some(len);
        self
    }

    /// The IP protocol number of the transport.
    fn protocol(&self) -> u8 {
        match &self.transport {
            Transport::None => 0,
            Transport::Tcp(_) => proto::TCP,
            Transport::Udp(_) => proto::UDP,
            Transport::Icmp(_) => match self.net {
                Net::Ipv6(_) => proto::ICMPV6,
                _ => proto::ICMP,
            },
            Transport::Other(protocol) => *protocol,
        }
    }

    /// The transport header and payload, checksummed against `net`'s pseudo header.
    fn transport_bytes(&self) -> Vec<u8> {
        let protocol = self.protocol();
        let (mut l4, checksum_at) = match &self.transport {
            Transport::None | Transport::Other(_) => return self.payload.clone(),
            Transport::Tcp(tcp) => (tcp.render(&self.payload), Some(16)),
            Transport::Udp(udp) => (udp.render(&self.payload), Some(6)),
            Transport::Icmp(icmp) => {
                let mut bytes = icmp.render();
                bytes.extend_from_slice(&self.payload);
                (bytes, Some(2))
            }
        };
        let initial = match (&self.net, &self.transport) {
            // ICMP over IPv4 has no pseudo header.
            (Net::Ipv4(_), Transport::Icmp(_)) => Some(0),
            (Net::Ipv4(ip), _) => Some(ip.pseudo_header_sum(protocol, l4.len())),
            (Net::Ipv6(ip), _) => Some(ip.pseudo_header_sum(protocol, l4.len())),
            (Net::Other(_), _) => None,
        };
        if let (Some(at), Some(initial)) = (checksum_at, initial) {
            let mut checksum = internet_checksum(&l4, initial);
            if checksum == 0 && matches!(self.transport, Transport::Udp(_)) {
                checksum = 0xffff; // 0 means "no checksum" in UDP.
            }
            l4[at..at + 2].copy_from_slice(&checksum.to_be_bytes());
        }
        l4
    }

    /// Only the network layer and above, without Ethernet header, truncation or padding:
    /// what an ICMP error quotes.
    #[must_use]
    pub fn ip_packet(&self) -> Vec<u8> {
        let l4 = self.transport_bytes();
        let mut out = Vec::new();
        match &self.net {
            Net::Ipv4(ip) => ip.render(self.protocol(), &l4, &mut out),
            Net::Ipv6(ip) => ip.render(self.protocol(), &l4, &mut out),
            Net::Other(_) => out = l4,
        }
        out
    }

    /// The ethertype the innermost tag (or the Ethernet header) announces.
    fn ethertype_value(&self) -> u16 {
        match self.net {
            Net::Ipv4(_) => ETHERTYPE_IPV4,
            Net::Ipv6(_) => ETHERTYPE_IPV6,
            Net::Other(ethertype) => ethertype,
        }
    }

    /// Renders the frame.
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.eth.render(self.ethertype_value(), &mut out);
        out.extend_from_slice(&self.ip_packet());
        if let Some(len) = self.pad_to
            && out.len() < len
        {
            out.resize(len, 0);
        }
        if let Some(len) = self.truncate {
            out.truncate(len);
        }
        out
    }

    /// Length of every header up to the end of the IP extension headers (the offset of
    /// the transport header), from what the frame holds.
    #[must_use]
    pub fn transport_offset(&self) -> usize {
        let l2 = ETH_LEN + VLAN_LEN * self.eth.tags.len();
        l2 + match &self.net {
            Net::Ipv4(ip) => IPV4_LEN + ip.options.len().next_multiple_of(4),
            Net::Ipv6(ip) => IPV6_LEN + ip.exts_len(),
            Net::Other(_) => 0,
        }
    }
}

/// A 28-byte ARP request (who has 10.0.0.2, tell 10.0.0.1), for non-IP frames.
#[must_use]
pub fn arp_request() -> Vec<u8> {
    let mut out = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    out.extend_from_slice(&SRC_MAC);
    out.extend_from_slice(&[10, 0, 0, 1]);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&[10, 0, 0, 2]);
    out
}

/// `bytes` as lowercase hex without separators, for failure messages (paste it into
/// `xxd -r -p` or scapy's `Ether(bytes.fromhex(...))`).
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn sum_words(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|pair| match *pair {
            [hi, lo] => u32::from(u16::from_be_bytes([hi, lo])),
            [hi] => u32::from(hi) << 8,
            _ => 0,
        })
        .sum()
}

/// The RFC 1071 checksum of `bytes`, starting from `initial` (a pseudo-header sum).
#[must_use]
pub fn internet_checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = u64::from(initial) + u64::from(sum_words(bytes));
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0)
}

/// One row of the packet-shape table.
#[derive(Clone, Debug)]
pub struct Case {
    /// What the row shows; names the row in failure messages.
    pub name: &'static str,
    /// The frame, Ethernet header first.
    pub frame: Vec<u8>,
    /// What the parser must conclude.
    pub expected: Parsed,
}

/// A port verdict without payload, for the table.
#[must_use]
pub fn port(l4: L4, port: u16, syn: bool, payload_offset: usize) -> Parsed {
    port_payload(l4, port, syn, payload_offset, 0)
}

/// A port verdict with `payload_len` bytes of L4 payload, for the table.
#[must_use]
pub fn port_payload(
    l4: L4,
    port: u16,
    syn: bool,
    payload_offset: usize,
    payload_len: usize,
) -> Parsed {
    Parsed::Port {
        l4,
        port,
        syn,
        // Table offsets and lengths are a few hundred bytes at most; a wrong one fails the
        // row anyway.
        payload_offset: u16::try_from(payload_offset).unwrap_or(u16::MAX),
        payload_len: u16::try_from(payload_len).unwrap_or(u16::MAX),
    }
}

/// An unparsed verdict without an IP protocol.
#[must_use]
pub fn reason(reason: Reason) -> Parsed {
    Parsed::Unparsed {
        reason,
        ip_protocol: None,
    }
}

/// An unparsed verdict that also counts `ip_protocol` (ICMP and other L4).
#[must_use]
pub fn with_protocol(reason: Reason, ip_protocol: u8) -> Parsed {
    Parsed::Unparsed {
        reason,
        ip_protocol: Some(ip_protocol),
    }
}

const MALFORMED: Parsed = Parsed::Unparsed {
    reason: Reason::Malformed,
    ip_protocol: None,
};

fn v4_tcp(tcp: Tcp) -> Frame {
    Frame::new().ipv4(Ipv4::new()).tcp(tcp)
}

fn v4_udp(udp: Udp) -> Frame {
    Frame::new().ipv4(Ipv4::new()).udp(udp)
}

fn v6_tcp(ip: Ipv6, tcp: Tcp) -> Frame {
    Frame::new().ipv6(ip).tcp(tcp)
}

fn case(name: &'static str, frame: &Frame, expected: Parsed) -> Case {
    Case {
        name,
        frame: frame.build(),
        expected,
    }
}

/// The packet-shape table: one row per parsing rule (issue 2), frames of at least
/// 14 bytes (the shortest BPF_PROG_TEST_RUN accepts) unless the name says "runt".
#[must_use]
#[expect(
    clippy::too_many_lines,
    reason = "one table, one row per rule: splitting it would hide rows"
)]
pub fn cases() -> Vec<Case> {
    use Reason::{Fragment, Icmp as IcmpR, Ipv6ExtLimit, NonIp, OtherL4};

    const V4_L4: usize = ETH_LEN + IPV4_LEN;
    const V6_L4: usize = ETH_LEN + IPV6_LEN;
    let tcp_ports = |offset: usize| offset + TCP_LEN;
    let udp_ports = |offset: usize| offset + UDP_LEN;

    // Quoted packets for ICMP errors: a TCP SYN and a UDP datagram sent earlier.
    let quoted_v4_tcp = v4_tcp(Tcp::new(443).flags(TCP_SYN)).ip_packet();
    let quoted_v4_udp = v4_udp(Udp::new(53)).payload(b"q").ip_packet();
    let quoted_v6_tcp = v6_tcp(Ipv6::new(), Tcp::new(443).flags(TCP_SYN)).ip_packet();
    // The longest ext chain the parser walks, then one more.
    let ext_chain = |n: usize| {
        (0..n).fold(Ipv6::new(), |ip, i| {
            ip.ext(if i % 2 == 0 {
                Ext::dest_opts(0)
            } else {
                Ext::hop_by_hop(0)
            })
        })
    };
    let at_bound = ext_chain(MAX_IPV6_EXT_HEADERS);
    let over_bound = ext_chain(MAX_IPV6_EXT_HEADERS + 1);
    let a_tcp_frame = v4_tcp(Tcp::new(80)).build();
    // An AH (payload len 1: 12 bytes) announcing TCP.
    let ah_then_tcp = [proto::TCP, 1, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1];

    vec![
        // ---- TCP and UDP over IPv4 -------------------------------------------------
        case(
            "ipv4 tcp syn counts a syn",
            &v4_tcp(Tcp::new(443).flags(TCP_SYN)),
            port(L4::Tcp, 443, true, tcp_ports(V4_L4)),
        ),
        case(
            "ipv4 tcp syn-ack is not a syn",
            &v4_tcp(Tcp::new(443).flags(TCP_SYN | TCP_ACK)),
            port(L4::Tcp, 443, false, tcp_ports(V4_L4)),
        ),
        case(
            "ipv4 tcp ack with payload",
            &v4_tcp(Tcp::new(22).flags(TCP_ACK | TCP_PSH)).payload(b"SSH-2.0-x\r\n"),
            port_payload(L4::Tcp, 22, false, tcp_ports(V4_L4), 11),
        ),
        case(
            "ipv4 tcp fin and rst are not syns",
            &v4_tcp(Tcp::new(8080).flags(TCP_FIN | TCP_RST)),
            port(L4::Tcp, 8080, false, tcp_ports(V4_L4)),
        ),
        case(
            "ipv4 tcp with options (data offset 8)",
            &v4_tcp(
                Tcp::new(443)
                    .flags(TCP_SYN)
                    .options(&[2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0]),
            ),
            port(L4::Tcp, 443, true, V4_L4 + 32),
        ),
        case(
            "ipv4 tcp port 0",
            &v4_tcp(Tcp::new(0).flags(TCP_SYN)),
            port(L4::Tcp, 0, true, tcp_ports(V4_L4)),
        ),
        case(
            "ipv4 tcp port 65535",
            &v4_tcp(Tcp::new(65535)),
            port(L4::Tcp, 65535, false, tcp_ports(V4_L4)),
        ),
        case(
            "ipv4 udp",
            &v4_udp(Udp::new(53)).payload(b"query"),
            port_payload(L4::Udp, 53, false, udp_ports(V4_L4), 5),
        ),
        case(
            "ipv4 udp without payload (length 8)",
            &v4_udp(Udp::new(123)),
            port(L4::Udp, 123, false, udp_ports(V4_L4)),
        ),
        case(
            "ipv4 udp length shorter than the ip payload is accepted",
            &v4_udp(Udp::new(514).len(10)).payload(b"0123456789"),
            port_payload(L4::Udp, 514, false, udp_ports(V4_L4), 2),
        ),
        case(
            "ethernet padding after a short ipv4 tcp packet is ignored",
            &v4_tcp(Tcp::new(25)).pad_to(60),
            port(L4::Tcp, 25, false, tcp_ports(V4_L4)),
        ),
        case(
            "ethernet padding after a short ipv4 udp packet is ignored",
            &v4_udp(Udp::new(161)).payload(b"x").pad_to(60),
            port_payload(L4::Udp, 161, false, udp_ports(V4_L4), 1),
        ),
        case(
            "ethernet padding after a short ipv6 udp packet is ignored",
            &Frame::new().ipv6(Ipv6::new()).udp(Udp::new(547)).pad_to(90),
            port(L4::Udp, 547, false, udp_ports(V6_L4)),
        ),
        // ---- VLAN tags -------------------------------------------------------------
        case(
            "802.1q vlan tcp",
            &v4_tcp(Tcp::new(443).flags(TCP_SYN)).vlan(TPID_VLAN, 10),
            port(L4::Tcp, 443, true, tcp_ports(V4_L4 + VLAN_LEN)),
        ),
        case(
            "802.1ad single tag udp",
            &v4_udp(Udp::new(4789)).vlan(TPID_QINQ, 20),
            port(L4::Udp, 4789, false, udp_ports(V4_L4 + VLAN_LEN)),
        ),
        case(
            "qinq (802.1ad + 802.1q) ipv6 tcp",
            &v6_tcp(Ipv6::new(), Tcp::new(443).flags(TCP_SYN))
                .vlan(TPID_QINQ, 100)
                .vlan(TPID_VLAN, 200),
            port(L4::Tcp, 443, true, tcp_ports(V6_L4 + 2 * VLAN_LEN)),
        ),
        case(
            "two 802.1q tags udp",
            &v4_udp(Udp::new(67)).vlan(TPID_VLAN, 1).vlan(TPID_VLAN, 2),
            port(L4::Udp, 67, false, udp_ports(V4_L4 + 2 * VLAN_LEN)),
        ),
        case(
            "three vlan tags are not walked (non_ip)",
            &v4_tcp(Tcp::new(443))
                .vlan(TPID_QINQ, 1)
                .vlan(TPID_VLAN, 2)
                .vlan(TPID_VLAN, 3),
            reason(NonIp),
        ),
        case(
            "vlan tag cut short",
            &v4_tcp(Tcp::new(443)).vlan(TPID_VLAN, 1).truncate(16),
            MALFORMED,
        ),
        case(
            "vlan tag carrying arp",
            &Frame::new()
                .vlan(TPID_VLAN, 5)
                .ethertype(ETHERTYPE_ARP)
                .payload(&arp_request()),
            reason(NonIp),
        ),
        // ---- IPv4 header -----------------------------------------------------------
        case(
            "ipv4 options (ihl 6)",
            &Frame::new()
                .ipv4(Ipv4::new().options(&[0x94, 0x04, 0, 0])) // router alert
                .tcp(Tcp::new(443).flags(TCP_SYN)),
            port(L4::Tcp, 443, true, tcp_ports(V4_L4 + 4)),
        ),
        case(
            "ipv4 options (ihl 15, the maximum)",
            &Frame::new()
                .ipv4(Ipv4::new().options(&[1; 40])) // 40 NOPs
                .udp(Udp::new(5353)),
            port(L4::Udp, 5353, false, udp_ports(V4_L4 + 40)),
        ),
        case(
            "ipv4 ihl 4 is malformed",
            &Frame::new().ipv4(Ipv4::new().ihl(4)).tcp(Tcp::new(443)),
            MALFORMED,
        ),
        case(
            "ipv4 ihl 0 is malformed",
            &Frame::new().ipv4(Ipv4::new().ihl(0)).tcp(Tcp::new(443)),
            MALFORMED,
        ),
        case(
            "ipv4 ihl past the total length is malformed",
            &Frame::new().ipv4(Ipv4::new().ihl(15)).udp(Udp::new(53)),
            MALFORMED,
        ),
        case(
            "version 6 under the ipv4 ethertype is malformed",
            &Frame::new().ipv4(Ipv4::new().version(6)).tcp(Tcp::new(443)),
            MALFORMED,
        ),
        case(
            "version 4 under the ipv6 ethertype is malformed",
            &v6_tcp(Ipv6::new().version(4), Tcp::new(443)),
            MALFORMED,
        ),
        case(
            "ipv4 total length past the frame is malformed",
            &Frame::new()
                .ipv4(Ipv4::new().total_len(41))
                .tcp(Tcp::new(443)),
            MALFORMED,
        ),
        case(
            "ipv4 total length shorter than its header is malformed",
            &Frame::new()
                .ipv4(Ipv4::new().total_len(19))
                .tcp(Tcp::new(443)),
            MALFORMED,
        ),
        case(
            "ipv4 total length ending inside the tcp header is malformed",
            &Frame::new()
                .ipv4(Ipv4::new().total_len(30))
                .tcp(Tcp::new(443))
                .payload(b"0123456789"),
            MALFORMED,
        ),
        case(
            "ipv4 total length ending inside the udp header is malformed",
            &Frame::new()
                .ipv4(Ipv4::new().total_len(24))
                .udp(Udp::new(53))
                .payload(b"0123456789"),
            MALFORMED,
        ),
        case(
            "ipv4 total length shorter than the frame (trailer) is counted",
            &Frame::new()
                .ipv4(Ipv4::new().total_len(40))
                .tcp(Tcp::new(443))
                .payload(b"trailer"),
            port(L4::Tcp, 443, false, tcp_ports(V4_L4)),
        ),
        case(
            "ipv4 header cut short is malformed",
            &v4_tcp(Tcp::new(443)).truncate(ETH_LEN + 19),
            MALFORMED,
        ),
        case(
            "ipv4 with an empty network layer is malformed",
            &v4_tcp(Tcp::new(443)).truncate(ETH_LEN),
            MALFORMED,
        ),
        // ---- IPv4 fragments --------------------------------------------------------
        case(
            "ipv4 first fragment (offset 0, mf) tcp is counted by port",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(0, true))
                .tcp(Tcp::new(443).flags(TCP_SYN))
                .payload(&[0xab; 16]),
            port_payload(L4::Tcp, 443, true, tcp_ports(V4_L4), 16),
        ),
        case(
            "ipv4 first fragment udp longer than the fragment is counted by port",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(0, true))
                .udp(Udp::new(4500).len(3000))
                .payload(&[0xab; 32]),
            port_payload(L4::Udp, 4500, false, udp_ports(V4_L4), 32),
        ),
        case(
            "ipv4 first fragment udp shorter than the fragment: payload ends with the ip packet",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(0, true))
                .udp(Udp::new(4500).len(10))
                .payload(&[0xab; 20]),
            port_payload(L4::Udp, 4500, false, udp_ports(V4_L4), 20),
        ),
        case(
            "ipv4 first fragment too short for the tcp header is malformed",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(0, true))
                .ip_protocol(proto::TCP)
                .payload(&[0; 8]),
            MALFORMED,
        ),
        case(
            "ipv4 later fragment (offset 185, mf)",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(185, true).protocol(proto::TCP))
                .payload(&[0xab; 64]),
            reason(Fragment),
        ),
        case(
            "ipv4 last fragment (offset 185, no mf)",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(185, false).protocol(proto::UDP))
                .payload(&[0xab; 64]),
            reason(Fragment),
        ),
        case(
            "ipv4 later fragment shorter than a udp header is still a fragment",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(1, false).protocol(proto::UDP))
                .payload(&[0xab; 2]),
            reason(Fragment),
        ),
        case(
            "ipv4 later fragment of icmp is a fragment",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(1, false).protocol(proto::ICMP))
                .payload(&[0xab; 8]),
            reason(Fragment),
        ),
        // ---- IPv6 and its extension headers ----------------------------------------
        case(
            "ipv6 tcp syn",
            &v6_tcp(Ipv6::new(), Tcp::new(443).flags(TCP_SYN)),
            port(L4::Tcp, 443, true, tcp_ports(V6_L4)),
        ),
        case(
            "ipv6 udp",
            &Frame::new()
                .ipv6(Ipv6::new())
                .udp(Udp::new(53))
                .payload(b"q"),
            port_payload(L4::Udp, 53, false, udp_ports(V6_L4), 1),
        ),
        case(
            "ipv6 hop-by-hop",
            &v6_tcp(Ipv6::new().ext(Ext::hop_by_hop(0)), Tcp::new(443)),
            port(L4::Tcp, 443, false, tcp_ports(V6_L4 + 8)),
        ),
        case(
            "ipv6 routing",
            &v6_tcp(Ipv6::new().ext(Ext::routing(2)), Tcp::new(443)),
            port(L4::Tcp, 443, false, tcp_ports(V6_L4 + 24)),
        ),
        case(
            "ipv6 destination options",
            &Frame::new()
                .ipv6(Ipv6::new().ext(Ext::dest_opts(1)))
                .udp(Udp::new(53)),
            port(L4::Udp, 53, false, udp_ports(V6_L4 + 16)),
        ),
        case(
            "ipv6 authentication header (payload len 4: 24 bytes)",
            &v6_tcp(Ipv6::new().ext(Ext::ah(4)), Tcp::new(443).flags(TCP_SYN)),
            port(L4::Tcp, 443, true, tcp_ports(V6_L4 + 24)),
        ),
        case(
            "ipv6 authentication header (payload len 1: 12 bytes, no icv)",
            &v6_tcp(Ipv6::new().ext(Ext::ah(1)), Tcp::new(443)),
            port(L4::Tcp, 443, false, tcp_ports(V6_L4 + 12)),
        ),
        case(
            "ipv6 hop-by-hop, routing, fragment, ah, destination options",
            &Frame::new()
                .ipv6(
                    Ipv6::new()
                        .ext(Ext::hop_by_hop(0))
                        .ext(Ext::routing(0))
                        .ext(Ext::fragment(0, false))
                        .ext(Ext::ah(4))
                        .ext(Ext::dest_opts(0)),
                )
                .udp(Udp::new(443)),
            port(L4::Udp, 443, false, udp_ports(V6_L4 + 8 + 8 + 8 + 24 + 8)),
        ),
        case(
            "ipv6 ext headers at the walk bound",
            &v6_tcp(at_bound, Tcp::new(443).flags(TCP_SYN)),
            port(
                L4::Tcp,
                443,
                true,
                tcp_ports(V6_L4 + 8 * MAX_IPV6_EXT_HEADERS),
            ),
        ),
        case(
            "ipv6 ext headers past the walk bound",
            &v6_tcp(over_bound, Tcp::new(443)),
            reason(Ipv6ExtLimit),
        ),
        case(
            "ipv6 ext headers at the bound then icmpv6",
            &Frame::new()
                .ipv6(ext_chain(MAX_IPV6_EXT_HEADERS))
                .icmp(Icmp::echo_v6()),
            with_protocol(IcmpR, proto::ICMPV6),
        ),
        case(
            "ipv6 hop-by-hop running past the payload length is malformed",
            &v6_tcp(
                Ipv6::new().ext(Ext::hop_by_hop(0)).payload_len(4),
                Tcp::new(443),
            )
            .pad_to(120),
            MALFORMED,
        ),
        case(
            "ipv6 ext header length past the packet is malformed",
            &v6_tcp(Ipv6::new().ext(Ext::dest_opts(10)), Tcp::new(443)).truncate(V6_L4 + 40),
            MALFORMED,
        ),
        case(
            "ipv6 ah length past the packet is malformed",
            &Frame::new()
                .ipv6(Ipv6::new().ext(Ext::raw(proto::AH, &[0, 20, 0, 0, 0, 0, 0, 1])))
                .ip_protocol(proto::TCP),
            MALFORMED,
        ),
        case(
            "ipv6 ah payload len 0 (shorter than its fixed fields) is malformed",
            &v6_tcp(
                Ipv6::new().ext(Ext::raw(proto::AH, &[0, 0, 0, 0, 0, 0, 0x10, 0])),
                Tcp::new(443),
            ),
            MALFORMED,
        ),
        case(
            "ipv4 ah is other_l4 51 (ipv4 extension headers are not walked)",
            &Frame::new()
                .ipv4(Ipv4::new())
                .ip_protocol(proto::AH)
                .payload(&[ah_then_tcp.as_slice(), &a_tcp_frame[V4_L4..]].concat()),
            with_protocol(OtherL4, proto::AH),
        ),
        case(
            "ipv6 fragment header offset 0 with m is counted by port",
            &Frame::new()
                .ipv6(Ipv6::new().ext(Ext::fragment(0, true)))
                .udp(Udp::new(53).len(2000))
                .payload(&[0; 16]),
            port_payload(L4::Udp, 53, false, udp_ports(V6_L4 + 8), 16),
        ),
        case(
            "ipv6 atomic fragment (offset 0, no m) tcp",
            &v6_tcp(Ipv6::new().ext(Ext::fragment(0, false)), Tcp::new(443)),
            port(L4::Tcp, 443, false, tcp_ports(V6_L4 + 8)),
        ),
        case(
            "ipv6 two fragment headers, m set on the first, is a first fragment",
            &Frame::new()
                .ipv6(
                    Ipv6::new()
                        .ext(Ext::fragment(0, true))
                        .ext(Ext::fragment(0, false)),
                )
                .udp(Udp::new(53).len(3000))
                .payload(&[0; 16]),
            port_payload(L4::Udp, 53, false, udp_ports(V6_L4 + 16), 16),
        ),
        case(
            "ipv6 two fragment headers, m set on the second, is a first fragment",
            &Frame::new()
                .ipv6(
                    Ipv6::new()
                        .ext(Ext::fragment(0, false))
                        .ext(Ext::fragment(0, true)),
                )
                .udp(Udp::new(53).len(3000))
                .payload(&[0; 16]),
            port_payload(L4::Udp, 53, false, udp_ports(V6_L4 + 16), 16),
        ),
        case(
            "ipv6 fragment header non-zero offset",
            &Frame::new()
                .ipv6(
                    Ipv6::new()
                        .ext(Ext::fragment(100, true))
                        .next_header(proto::TCP),
                )
                .payload(&[0xab; 32]),
            reason(Fragment),
        ),
        case(
            "ipv6 fragment header non-zero offset after hop-by-hop",
            &Frame::new()
                .ipv6(
                    Ipv6::new()
                        .ext(Ext::hop_by_hop(0))
                        .ext(Ext::fragment(1, false))
                        .next_header(proto::UDP),
                )
                .payload(&[0xab; 8]),
            reason(Fragment),
        ),
        case(
            "ipv6 payload length past the frame is malformed",
            &v6_tcp(Ipv6::new().payload_len(21), Tcp::new(443)),
            MALFORMED,
        ),
        case(
            "ipv6 payload length ending inside the tcp header is malformed",
            &v6_tcp(Ipv6::new().payload_len(10), Tcp::new(443)),
            MALFORMED,
        ),
        case(
            "ipv6 fixed header cut short is malformed",
            &v6_tcp(Ipv6::new(), Tcp::new(443)).truncate(ETH_LEN + 39),
            MALFORMED,
        ),
        case(
            "ipv6 no next header is other_l4 59",
            &Frame::new().ipv6(Ipv6::new()).ip_protocol(proto::NO_NEXT),
            with_protocol(OtherL4, proto::NO_NEXT),
        ),
        // ---- ICMP --------------------------------------------------------------------
        case(
            "icmp echo",
            &Frame::new().ipv4(Ipv4::new()).icmp(Icmp::echo_v4()),
            with_protocol(IcmpR, proto::ICMP),
        ),
        case(
            "icmp port unreachable quoting tcp is icmp, not a port",
            &Frame::new()
                .ipv4(Ipv4::new())
                .icmp(Icmp::error(3, 3, &quoted_v4_tcp)),
            with_protocol(IcmpR, proto::ICMP),
        ),
        case(
            "icmp port unreachable quoting udp is icmp, not a port",
            &Frame::new()
                .ipv4(Ipv4::new())
                .icmp(Icmp::error(3, 3, &quoted_v4_udp)),
            with_protocol(IcmpR, proto::ICMP),
        ),
        case(
            "icmp header cut short is still icmp (nothing past the protocol is read)",
            &Frame::new()
                .ipv4(Ipv4::new())
                .ip_protocol(proto::ICMP)
                .payload(&[3]),
            with_protocol(IcmpR, proto::ICMP),
        ),
        case(
            "icmpv6 echo",
            &Frame::new().ipv6(Ipv6::new()).icmp(Icmp::echo_v6()),
            with_protocol(IcmpR, proto::ICMPV6),
        ),
        case(
            "icmpv6 port unreachable quoting tcp is icmp, not a port",
            &Frame::new()
                .ipv6(Ipv6::new())
                .icmp(Icmp::error(1, 4, &quoted_v6_tcp)),
            with_protocol(IcmpR, proto::ICMPV6),
        ),
        case(
            "icmpv6 after a hop-by-hop header (mld)",
            &Frame::new()
                .ipv6(Ipv6::new().ext(Ext::hop_by_hop(0)))
                .icmp(Icmp {
                    kind: 143,
                    code: 0,
                    rest: [0; 4],
                    body: Vec::new(),
                }),
            with_protocol(IcmpR, proto::ICMPV6),
        ),
        case(
            "icmp number 1 inside ipv6 is other_l4, not icmp",
            &Frame::new()
                .ipv6(Ipv6::new())
                .ip_protocol(proto::ICMP)
                .payload(&[8, 0, 0, 0, 0, 0, 0, 0]),
            with_protocol(OtherL4, proto::ICMP),
        ),
        case(
            "icmpv6 number 58 inside ipv4 is other_l4, not icmp",
            &Frame::new()
                .ipv4(Ipv4::new())
                .ip_protocol(proto::ICMPV6)
                .payload(&[128, 0, 0, 0, 0, 0, 0, 0]),
            with_protocol(OtherL4, proto::ICMPV6),
        ),
        // ---- Other L4 protocols ----------------------------------------------------
        case(
            "sctp over ipv4",
            &Frame::new()
                .ipv4(Ipv4::new())
                .ip_protocol(proto::SCTP)
                .payload(&[0x0b, 0x59, 0x0b, 0x59, 0, 0, 0, 1, 0, 0, 0, 0]),
            with_protocol(OtherL4, proto::SCTP),
        ),
        case(
            "gre over ipv4",
            &Frame::new()
                .ipv4(Ipv4::new())
                .ip_protocol(proto::GRE)
                .payload(&[0, 0, 0x08, 0x00]),
            with_protocol(OtherL4, proto::GRE),
        ),
        case(
            "esp over ipv4",
            &Frame::new()
                .ipv4(Ipv4::new())
                .ip_protocol(proto::ESP)
                .payload(&[0, 0, 0x10, 0, 0, 0, 0, 1, 0xaa, 0xbb]),
            with_protocol(OtherL4, proto::ESP),
        ),
        case(
            "esp over ipv6",
            &Frame::new()
                .ipv6(Ipv6::new())
                .ip_protocol(proto::ESP)
                .payload(&[0, 0, 0x10, 0, 0, 0, 0, 1]),
            with_protocol(OtherL4, proto::ESP),
        ),
        case(
            "sctp over ipv6 after destination options",
            &Frame::new()
                .ipv6(Ipv6::new().ext(Ext::dest_opts(0)))
                .ip_protocol(proto::SCTP)
                .payload(&[0; 12]),
            with_protocol(OtherL4, proto::SCTP),
        ),
        case(
            "ipv4 protocol 255 with no payload",
            &Frame::new().ipv4(Ipv4::new()).ip_protocol(255),
            with_protocol(OtherL4, 255),
        ),
        case(
            "ipv4 first fragment of sctp is other_l4",
            &Frame::new()
                .ipv4(Ipv4::new().fragment(0, true))
                .ip_protocol(proto::SCTP)
                .payload(&[0; 12]),
            with_protocol(OtherL4, proto::SCTP),
        ),
        // ---- Non-IP -------------------------------------------------------------------
        case(
            "arp is non_ip",
            &Frame::new()
                .ethertype(ETHERTYPE_ARP)
                .payload(&arp_request())
                .pad_to(60),
            reason(NonIp),
        ),
        case(
            "lldp is non_ip",
            &Frame::new().ethertype(0x88cc).payload(&[0x02, 0x07, 0x04]),
            reason(NonIp),
        ),
        case(
            "an ethernet header alone (arp ethertype) is non_ip",
            &Frame::new().ethertype(ETHERTYPE_ARP),
            reason(NonIp),
        ),
        case(
            "an 802.3 length field is non_ip",
            &Frame::new().ethertype(0x0026).payload(&[0x42; 38]),
            reason(NonIp),
        ),
        // ---- TCP and UDP headers -----------------------------------------------------
        case(
            "tcp data offset 4 is malformed",
            &v4_tcp(Tcp::new(443).data_offset(4)),
            MALFORMED,
        ),
        case(
            "tcp data offset 0 is malformed",
            &v4_tcp(Tcp::new(443).data_offset(0)),
            MALFORMED,
        ),
        case(
            "tcp data offset past the ip end is malformed",
            &v4_tcp(Tcp::new(443).data_offset(6)),
            MALFORMED,
        ),
        case(
            "tcp data offset past the ip end into ethernet padding is malformed",
            &v4_tcp(Tcp::new(443).data_offset(15)).pad_to(200),
            MALFORMED,
        ),
        case(
            "tcp header cut by the frame end is malformed",
            &v4_tcp(Tcp::new(443)).truncate(V4_L4 + 19),
            MALFORMED,
        ),
        case(
            "tcp header cut before the flags is malformed",
            &v4_tcp(Tcp::new(443)).truncate(V4_L4 + 4),
            MALFORMED,
        ),
        case(
            "ipv6 tcp data offset past the ip end is malformed",
            &v6_tcp(Ipv6::new(), Tcp::new(443).data_offset(6)),
            MALFORMED,
        ),
        case(
            "udp length 7 is malformed",
            &v4_udp(Udp::new(53).len(7)).payload(b"abc"),
            MALFORMED,
        ),
        case(
            "udp length 0 is malformed",
            &v4_udp(Udp::new(53).len(0)),
            MALFORMED,
        ),
        case(
            "udp length past the ip end is malformed",
            &v4_udp(Udp::new(53).len(20)).payload(b"abc"),
            MALFORMED,
        ),
        case(
            "udp length past the ip end into ethernet padding is malformed",
            &v4_udp(Udp::new(53).len(30)).payload(b"abc").pad_to(80),
            MALFORMED,
        ),
        case(
            "ipv6 udp length past the ip end is malformed",
            &Frame::new().ipv6(Ipv6::new()).udp(Udp::new(53).len(9)),
            MALFORMED,
        ),
        case(
            "ipv6 udp length 0 (jumbogram style) is malformed",
            &Frame::new()
                .ipv6(Ipv6::new())
                .udp(Udp::new(53).len(0))
                .payload(b"abc"),
            MALFORMED,
        ),
        case(
            "udp header cut by the frame end is malformed",
            &v4_udp(Udp::new(53)).truncate(V4_L4 + 7),
            MALFORMED,
        ),
        // ---- Truncated frames --------------------------------------------------------
        Case {
            name: "runt: a tcp frame cut to 13 bytes is malformed",
            frame: a_tcp_frame[..13].to_vec(),
            expected: MALFORMED,
        },
        Case {
            name: "runt: an empty frame is malformed",
            frame: Vec::new(),
            expected: MALFORMED,
        },
        case(
            "an ipv6 frame cut in the extension header is malformed",
            &v6_tcp(Ipv6::new().ext(Ext::hop_by_hop(1)), Tcp::new(443)).truncate(V6_L4 + 4),
            MALFORMED,
        ),
        case(
            "an ipv6 fragment header cut short is malformed",
            &v6_tcp(Ipv6::new().ext(Ext::fragment(0, false)), Tcp::new(443)).truncate(V6_L4 + 6),
            MALFORMED,
        ),
        case(
            "a qinq frame cut inside the second tag is malformed",
            &v4_tcp(Tcp::new(443))
                .vlan(TPID_QINQ, 1)
                .vlan(TPID_VLAN, 2)
                .truncate(ETH_LEN + VLAN_LEN + 2),
            MALFORMED,
        ),
    ]
}

/// Whether a frame is long enough for BPF_PROG_TEST_RUN (the kernel rejects shorter
/// ones with EINVAL, see [`crate::testrun`]).
#[must_use]
pub fn test_runnable(frame: &[u8]) -> bool {
    frame.len() >= ETH_LEN
}
