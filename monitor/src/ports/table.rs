//! The builtin security table.
//!
//! The first block is every pair of the project's port document
//! (`shared/ports-and-secure-alternatives.md`, named first in those rows' sources); the rest is what a
//! security engineer expects, each with the RFC or vendor document it comes from.
//!
//! Choices, where the port alone does not settle it:
//! * Protocols: an entry covers the transport the service really uses (telnet tcp, TFTP udp,
//!   DNS both, SNMP udp and tcp per RFC 3430). Port 514 is rsh over tcp but syslog over udp.
//! * In-band STARTTLS: the document's pairs are kept as it gives them (SMTP 25 and IMAP 143
//!   plaintext, submission 587 secure), with the STARTTLS caveat in the reason. Elsewhere a port
//!   whose encryption is negotiated in-band or set by server config (MySQL, PostgreSQL, RDP,
//!   XMPP, VNC, etcd, ...) is `ambiguous`.
//! * NTP 123, the document's replacement for Time 37, is `ambiguous`: NTP is unauthenticated
//!   unless NTS (RFC 8915) or symmetric keys protect it.
//! * SNMP: the document says SNMPv2 or v3 adds encryption; only SNMPv3 with authPriv does
//!   (v2c sends the community string in clear), and the reason says so.
//! * SMB 445 keeps the document's alternative, NFS 2049, and both are flagged
//!   `never_across_perimeter` as the document asks; NFS is `ambiguous` (krb5p or RPC-with-TLS
//!   encrypt it, on the same port). NetBIOS, MS-RPC, rpcbind, memcached and the Docker API
//!   without TLS are flagged too.

use std::borrow::Cow;

use monitor_common::layout::L4;

use super::{Entry, Security};

/// Which transports an entry covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transports {
    Tcp,
    Udp,
    Both,
}

impl Transports {
    fn protocols(self) -> &'static [L4] {
        match self {
            Transports::Tcp => &[L4::Tcp],
            Transports::Udp => &[L4::Udp],
            Transports::Both => &L4::ALL,
        }
    }
}

/// One builtin row; expands to one [`Entry`] per transport.
#[derive(Clone, Copy, Debug)]
pub(super) struct Builtin {
    pub(super) port: u16,
    pub(super) transports: Transports,
    pub(super) service: &'static str,
    pub(super) security: Security,
    pub(super) secure_alternative: Option<&'static str>,
    pub(super) reason: Option<&'static str>,
    pub(super) never_across_perimeter: bool,
    pub(super) source: &'static str,
}

impl Builtin {
    /// The row's entries, one per transport.
    pub(super) fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.transports.protocols().iter().map(|&protocol| Entry {
            port: self.port,
            protocol,
            service: Cow::Borrowed(self.service),
            security: self.security,
            secure_alternative: self.secure_alternative.map(Cow::Borrowed),
            reason: self.reason.map(Cow::Borrowed),
            never_across_perimeter: self.never_across_perimeter,
            source: Cow::Borrowed(self.source),
        })
    }

    /// Flags the row as traffic that must never cross the perimeter.
    const fn perimeter(mut self) -> Self {
        self.never_across_perimeter = true;
        self
    }
}

/// A plaintext row: its secure alternative (if any) and why it is plaintext.
const fn plain(
    port: u16,
    transports: Transports,
    service: &'static str,
    secure_alternative: Option<&'static str>,
    reason: &'static str,
    source: &'static str,
) -> Builtin {
    Builtin {
        port,
        transports,
        service,
        security: Security::Plaintext,
        secure_alternative,
        reason: Some(reason),
        never_across_perimeter: false,
        source,
    }
}

/// A secure row, with an optional caveat as its reason.
const fn secure(
    port: u16,
    transports: Transports,
    service: &'static str,
    caveat: Option<&'static str>,
    source: &'static str,
) -> Builtin {
    Builtin {
        port,
        transports,
        service,
        security: Security::Secure,
        secure_alternative: None,
        reason: caveat,
        never_across_perimeter: false,
        source,
    }
}

/// An ambiguous row: what decides, and what to use to be sure.
const fn ambiguous(
    port: u16,
    transports: Transports,
    service: &'static str,
    secure_alternative: Option<&'static str>,
    reason: &'static str,
    source: &'static str,
) -> Builtin {
    Builtin {
        port,
        transports,
        service,
        security: Security::Ambiguous,
        secure_alternative,
        reason: Some(reason),
        never_across_perimeter: false,
        source,
    }
}

use Transports::{Both, Tcp, Udp};

/// The builtin rows, in no particular order ([`super::Policy::builtin`] sorts them).
// Kept as a table, one row per entry: rustfmt would spread each row over eight lines.
#[rustfmt::skip]
pub(super) const BUILTIN: &[Builtin] = &[
    // --- The project's port document: every pair. ---
    plain(21, Tcp, "ftp", Some("sftp (22/tcp)"),
        "FTP sends the username, password and files in plaintext",
        "shared/ports-and-secure-alternatives.md; RFC 959"),
    secure(22, Tcp, "ssh", None, "shared/ports-and-secure-alternatives.md; RFC 4251 (SSH, SFTP runs over it)"),
    plain(23, Tcp, "telnet", Some("ssh (22/tcp)"),
        "Telnet sends the whole session, username and password included, in plaintext",
        "shared/ports-and-secure-alternatives.md; RFC 854"),
    plain(25, Tcp, "smtp", Some("submission (587/tcp)"),
        "SMTP is unencrypted unless both ends opt into STARTTLS; mail can be read in transit",
        "shared/ports-and-secure-alternatives.md; RFC 5321"),
    secure(587, Tcp, "submission",
        Some("STARTTLS on submission: a client that does not require TLS can be downgraded; RFC 8314 prefers 465"),
        "shared/ports-and-secure-alternatives.md; RFC 6409, RFC 3207"),
    plain(37, Both, "time", Some("ntp (123/udp)"),
        "RFC 868 Time: legacy, unauthenticated, no error handling; replaced by NTP",
        "shared/ports-and-secure-alternatives.md; RFC 868"),
    ambiguous(123, Udp, "ntp", Some("ntp with nts (ntske 4460/tcp)"),
        "NTP is unauthenticated unless NTS or symmetric keys protect it; the port alone cannot tell",
        "shared/ports-and-secure-alternatives.md; RFC 5905, RFC 8915 (NTS)"),
    plain(53, Both, "dns", Some("dot (853/tcp)"),
        "DNS queries and answers are unencrypted and unauthenticated: they can be read or modified in transit",
        "shared/ports-and-secure-alternatives.md; RFC 1035"),
    secure(853, Tcp, "dot", None, "shared/ports-and-secure-alternatives.md; RFC 7858 (DNS over TLS)"),
    plain(80, Tcp, "http", Some("https (443/tcp)"),
        "HTTP is unencrypted: pages, cookies and credentials can be sniffed",
        "shared/ports-and-secure-alternatives.md; RFC 9110"),
    secure(443, Tcp, "https",
        Some("only as good as its TLS: SSL and TLS before 1.2 are broken, TLS 1.3 is recommended"),
        "shared/ports-and-secure-alternatives.md; RFC 9110, RFC 8446 (TLS 1.3)"),
    plain(143, Tcp, "imap", Some("imaps (993/tcp)"),
        "IMAP on 143 is unencrypted unless STARTTLS is negotiated, which an attacker can strip",
        "shared/ports-and-secure-alternatives.md; RFC 9051"),
    secure(993, Tcp, "imaps", None, "shared/ports-and-secure-alternatives.md; RFC 8314"),
    ambiguous(161, Both, "snmp", Some("snmpv3 authPriv (same port)"),
        "the version decides: SNMPv1/v2c send the community string in clear, only SNMPv3 authPriv encrypts",
        "shared/ports-and-secure-alternatives.md; RFC 3411, RFC 3414, RFC 3430 (tcp)"),
    ambiguous(162, Both, "snmptrap", Some("snmpv3 authPriv (same port)"),
        "the version decides: SNMPv1/v2c traps are in clear, only SNMPv3 authPriv encrypts",
        "shared/ports-and-secure-alternatives.md; RFC 3411, RFC 3414, RFC 3430 (tcp)"),
    plain(445, Tcp, "smb", Some("nfs (2049/tcp)"),
        "SMB moves files unencrypted unless SMB 3 encryption is on, and has well-known wormable flaws",
        "shared/ports-and-secure-alternatives.md; Microsoft MS-SMB2, MS17-010").perimeter(),
    ambiguous(2049, Both, "nfs", None,
        "encrypted only with Kerberos krb5p or RPC-with-TLS on the same port; AUTH_SYS NFS is in clear",
        "shared/ports-and-secure-alternatives.md; RFC 7530, RFC 9289 (RPC-with-TLS)").perimeter(),
    plain(389, Both, "ldap", Some("ldaps (636/tcp)"),
        "LDAP binds and directory data are unencrypted and can be modified in transit, unless StartTLS is used",
        "shared/ports-and-secure-alternatives.md; RFC 4511, RFC 1798 (udp)"),
    secure(636, Tcp, "ldaps", None, "shared/ports-and-secure-alternatives.md; RFC 8314 (implicit TLS)"),

    // --- Mail, news, file transfer. ---
    plain(20, Tcp, "ftp-data", Some("sftp (22/tcp)"),
        "FTP data channel: files cross the network unencrypted", "RFC 959"),
    plain(110, Tcp, "pop3", Some("pop3s (995/tcp)"),
        "POP3 sends the password and mail unencrypted unless STLS is negotiated", "RFC 1939, RFC 2595"),
    secure(995, Tcp, "pop3s", None, "RFC 8314"),
    secure(465, Tcp, "submissions", None, "RFC 8314 (mail submission over implicit TLS)"),
    secure(989, Tcp, "ftps-data", None, "RFC 4217 (FTP over TLS), IANA ftps-data"),
    secure(990, Tcp, "ftps", None, "RFC 4217 (FTP over TLS), IANA ftps"),
    plain(69, Udp, "tftp", Some("sftp (22/tcp)"),
        "TFTP has no authentication and no encryption", "RFC 1350"),
    plain(119, Tcp, "nntp", Some("nntps (563/tcp)"),
        "NNTP articles and AUTHINFO passwords are unencrypted", "RFC 3977"),
    secure(563, Tcp, "nntps", None, "RFC 8143 (NNTP over implicit TLS)"),
    plain(873, Tcp, "rsync", Some("ssh (22/tcp)"),
        "the rsync daemon protocol is unencrypted; rsync over ssh is not", "rsync(1), rsyncd.conf(5)"),
    plain(9418, Tcp, "git", Some("ssh (22/tcp)"),
        "git:// is unauthenticated and unencrypted: fetched code can be tampered with in transit",
        "git-daemon(1); Pro Git 4.1 (the Git protocol)"),

    // --- Remote access. ---
    plain(512, Tcp, "rexec", Some("ssh (22/tcp)"),
        "BSD rexec sends the username and password in plaintext", "rexecd(8) (4.2BSD), IANA exec"),
    plain(513, Tcp, "rlogin", Some("ssh (22/tcp)"),
        "rlogin is unencrypted and trusts the client's address (.rhosts)", "RFC 1282"),
    plain(514, Tcp, "rsh", Some("ssh (22/tcp)"),
        "rsh runs commands on address-based trust, unencrypted", "rsh(1) (4.2BSD), IANA shell"),
    plain(6000, Tcp, "x11", Some("ssh (22/tcp)"),
        "X11 sends keystrokes and screen contents unencrypted; ssh -X tunnels it",
        "X Window System protocol; IANA x11 6000-6063"),
    ambiguous(3389, Both, "rdp", None,
        "TLS or CredSSP is negotiated in-band; legacy Standard RDP Security (RC4, no server auth) uses the same port",
        "Microsoft MS-RDPBCGR 5.3, 5.4"),
    ambiguous(5900, Tcp, "vnc", Some("ssh (22/tcp)"),
        "RFB itself encrypts nothing; TLS only comes from vendor extensions negotiated in-band (VeNCrypt)",
        "RFC 6143"),
    ambiguous(5985, Tcp, "winrm-http", Some("winrm-https (5986/tcp)"),
        "HTTP transport: Kerberos/NTLM seal messages by default, but Basic auth with AllowUnencrypted is in clear",
        "Microsoft Learn: Security considerations for PowerShell Remoting using WinRM"),
    secure(5986, Tcp, "winrm-https", None, "Microsoft Learn: Installation and configuration for Windows Remote Management"),

    // --- Logging, time, directory, authentication. ---
    plain(514, Udp, "syslog", Some("syslog-tls (6514/tcp)"),
        "syslog over UDP is unencrypted and unauthenticated: messages can be read or forged", "RFC 5426"),
    secure(6514, Both, "syslog-tls", None, "RFC 5425 (TLS), RFC 6012 (DTLS)"),
    secure(4460, Tcp, "ntske", None, "RFC 8915 (Network Time Security key establishment)"),
    plain(3268, Tcp, "ldap-gc", Some("ldap-gc-ssl (3269/tcp)"),
        "Active Directory global catalog over plain LDAP", "Microsoft Learn: Service overview and network port requirements for Windows"),
    secure(3269, Tcp, "ldap-gc-ssl", None, "Microsoft Learn: Service overview and network port requirements for Windows"),
    secure(88, Both, "kerberos", Some("tickets are encrypted, but RC4 and DES enctypes are weak: allow AES only"), "RFC 4120, RFC 8429"),
    plain(1812, Udp, "radius", Some("radsec (2083/tcp)"),
        "only the password is hidden, with MD5; the rest is in clear and Blast-RADIUS forges replies",
        "RFC 2865; CVE-2024-3596"),
    plain(1813, Udp, "radius-acct", Some("radsec (2083/tcp)"),
        "accounting records are unencrypted, authenticated only with MD5", "RFC 2866"),
    secure(2083, Both, "radsec", None, "RFC 6614 (RADIUS over TLS), RFC 7360 (DTLS)"),
    secure(10161, Both, "snmptls", None, "RFC 6353 (SNMP over TLS and DTLS)"),
    secure(10162, Both, "snmptls-trap", None, "RFC 6353 (SNMP over TLS and DTLS)"),

    // --- Windows and Unix file sharing: keep inside. ---
    ambiguous(135, Both, "msrpc", None,
        "DCE/RPC endpoint mapper: encryption depends on each interface's auth level; long exploit history",
        "Microsoft MS-RPCE").perimeter(),
    plain(137, Udp, "netbios-ns", None,
        "NetBIOS name service: unauthenticated, leaks host and user names, spoofable (NBT-NS poisoning)",
        "RFC 1001, RFC 1002").perimeter(),
    plain(138, Udp, "netbios-dgm", None,
        "NetBIOS datagrams: unauthenticated and unencrypted", "RFC 1001, RFC 1002").perimeter(),
    plain(139, Tcp, "netbios-ssn", None,
        "SMB over NetBIOS sessions: SMB1-era, unencrypted", "RFC 1001, RFC 1002").perimeter(),
    plain(111, Both, "rpcbind", None,
        "lists RPC services to anyone and amplifies UDP floods; keep it with NFS inside",
        "RFC 1833; US-CERT TA14-017A").perimeter(),

    // --- Web, messaging, IoT. ---
    plain(8080, Tcp, "http-alt", Some("https-alt (8443/tcp)"),
        "alternate HTTP port, unencrypted like port 80", "IANA http-alt"),
    secure(8443, Tcp, "https-alt", None, "common HTTPS alternate port (IANA registers it as pcsync-https)"),
    secure(443, Udp, "https", None, "RFC 9000 (QUIC), RFC 9114 (HTTP/3)"),
    secure(853, Udp, "doq", None, "RFC 9250 (DNS over QUIC)"),
    ambiguous(631, Tcp, "ipp", Some("ipps (443/tcp or TLS upgrade)"),
        "IPP upgrades to TLS in-band and IANA lists ipps on the same port", "RFC 8011, RFC 7472"),
    plain(1883, Tcp, "mqtt", Some("secure-mqtt (8883/tcp)"),
        "MQTT on 1883 is unencrypted: credentials and payloads in clear", "OASIS MQTT 5.0, section 4.2"),
    secure(8883, Tcp, "secure-mqtt", None, "OASIS MQTT 5.0, section 4.2; IANA secure-mqtt"),
    plain(5672, Tcp, "amqp", Some("amqps (5671/tcp)"),
        "AMQP without TLS sends SASL PLAIN credentials and messages in clear", "OASIS AMQP 1.0, part 5; RabbitMQ TLS guide"),
    secure(5671, Tcp, "amqps", None, "OASIS AMQP 1.0, part 5; IANA amqps"),
    plain(5683, Udp, "coap", Some("coaps (5684/udp)"), "CoAP without DTLS is unencrypted and unauthenticated", "RFC 7252"),
    secure(5684, Udp, "coaps", None, "RFC 7252 (CoAP over DTLS)"),
    plain(5060, Both, "sip", Some("sips (5061/tcp)"),
        "SIP signalling (digest credentials, call metadata) is unencrypted", "RFC 3261"),
    secure(5061, Tcp, "sips", None, "RFC 3261 (SIP over TLS)"),
    plain(6667, Tcp, "irc", Some("ircs-u (6697/tcp)"), "IRC is unencrypted: messages and NickServ passwords in clear", "RFC 7194"),
    secure(6697, Tcp, "ircs-u", None, "RFC 7194"),
    ambiguous(5222, Tcp, "xmpp-client", Some("xmpps-client (5223/tcp)"),
        "XMPP negotiates STARTTLS in-band; mandatory to implement, but the port alone cannot tell", "RFC 6120"),
    secure(5223, Tcp, "xmpps-client", None, "XEP-0368 (direct TLS)"),
    ambiguous(5269, Tcp, "xmpp-server", None,
        "server-to-server XMPP negotiates STARTTLS in-band; the port alone cannot tell", "RFC 6120"),
    plain(502, Tcp, "modbus", Some("mbap-s (802/tcp)"), "Modbus/TCP has no authentication and no encryption",
        "Modbus Organization: Modbus/TCP Security protocol specification"),
    secure(802, Tcp, "mbap-s", None, "Modbus Organization: Modbus/TCP Security protocol specification"),

    // --- Databases and caches. ---
    ambiguous(3306, Tcp, "mysql", None,
        "TLS is negotiated in-band after the greeting; clients that do not require it can be downgraded",
        "MySQL Reference Manual: Using Encrypted Connections"),
    ambiguous(5432, Tcp, "postgresql", None,
        "TLS is negotiated in-band (SSLRequest); sslmode=prefer falls back to plaintext",
        "PostgreSQL documentation: libpq SSL support (sslmode)"),
    ambiguous(1433, Tcp, "mssql", None,
        "TDS negotiates TLS in its pre-login packet; Encrypt=false or old drivers leave queries in clear",
        "Microsoft MS-TDS 2.2.6.5"),
    ambiguous(27017, Tcp, "mongodb", None,
        "TLS is a server setting (net.tls.mode) on the same port; the default is off",
        "MongoDB manual: Configure mongod and mongos for TLS/SSL"),
    plain(6379, Tcp, "redis", Some("redis tls (tls-port)"),
        "RESP is unencrypted and by default unauthenticated; TLS (Redis 6+) needs a tls-port",
        "Redis documentation: TLS"),
    plain(11211, Both, "memcached", None,
        "no encryption and no authentication by default; UDP memcached is a huge DDoS amplifier",
        "memcached documentation; CVE-2018-1000115").perimeter(),
    ambiguous(9200, Tcp, "elasticsearch", None,
        "HTTPS by default since Elasticsearch 8.0, plain HTTP before; the port alone cannot tell",
        "Elastic: Start the Elastic Stack with security enabled automatically"),

    // --- Containers and orchestration. ---
    plain(2375, Tcp, "docker", Some("docker-s (2376/tcp)"),
        "unauthenticated, unencrypted Docker API: whoever reaches it is root on the host",
        "Docker docs: Protect the Docker daemon socket").perimeter(),
    secure(2376, Tcp, "docker-s", None, "Docker docs: Protect the Docker daemon socket (TLS)"),
    secure(2377, Tcp, "docker-swarm", None, "Docker docs: Swarm mode networking (mutual TLS)"),
    secure(6443, Tcp, "kube-apiserver", None, "Kubernetes docs: Ports and Protocols"),
    secure(10250, Tcp, "kubelet", Some("HTTPS; anonymous auth must be off"), "Kubernetes docs: Ports and Protocols, Kubelet authentication"),
    plain(10255, Tcp, "kubelet-readonly", Some("kubelet (10250/tcp)"),
        "unauthenticated read-only HTTP (pods, node details); deprecated", "Kubernetes docs: kubelet --read-only-port"),
    ambiguous(2379, Tcp, "etcd-client", None,
        "plain HTTP unless etcd is given certificates; whoever reads etcd reads every Kubernetes secret",
        "etcd docs: Transport security model"),
    ambiguous(2380, Tcp, "etcd-peer", None,
        "plain HTTP between members unless peer certificates are set", "etcd docs: Transport security model"),

    // --- Tunnels. ---
    secure(500, Udp, "ike", None, "RFC 7296 (IKEv2)"),
    secure(4500, Udp, "ipsec-nat-t", None, "RFC 3948 (ESP in UDP)"),
    secure(1194, Both, "openvpn", None, "OpenVPN documentation; IANA openvpn"),
    secure(51820, Udp, "wireguard", None, "WireGuard default port (wg(8)); not IANA-registered"),
];
