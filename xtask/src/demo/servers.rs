//! The servers the clients talk to, on the host end's address in the host namespace:
//! HTTPS (`openssl s_server`, a real TLS handshake), and in threads of this process an SSH
//! banner exchange, DNS over UDP, a tiny HTTP server and a telnet login prompt.
//!
//! A port that a service of this host already holds on every address (say sshd on
//! `0.0.0.0:22`) cannot be bound on the sandbox's address: that service is skipped with a
//! warning rather than letting the demo's clients reach the host's real one.

use std::{
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{dns, process::ChildGuard};

/// How long a server waits for a client's next bytes before closing the connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle server looks at its stop flag.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// How long `openssl s_server` may take to listen.
const TLS_START: Duration = Duration::from_secs(10);

/// The SSH server's identification string (RFC 4253 section 4.2).
pub const SSH_BANNER: &str = "SSH-2.0-OpenSSH_9.6 portmon-demo\r\n";
/// What the telnet server asks first.
pub const TELNET_LOGIN: &str = "portmon-demo login: ";
/// The page the HTTP server serves.
const PAGE: &str = "<!doctype html><title>portmon demo</title>\
    <h1>It works</h1><p>This page travelled in plaintext: portmon counts it on port 80.</p>";

/// The services of the demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Https,
    Ssh,
    Dns,
    Http,
    Telnet,
}

impl Service {
    /// Every service, in the order the summary shows them.
    pub const ALL: [Self; 5] = [Self::Https, Self::Ssh, Self::Dns, Self::Http, Self::Telnet];

    /// Its port.
    pub fn port(self) -> u16 {
        match self {
            Self::Https => 443,
            Self::Ssh => 22,
            Self::Dns => 53,
            Self::Http => 80,
            Self::Telnet => 23,
        }
    }

    /// `tcp` or `udp`, as in portmon's `protocol` label.
    pub fn protocol(self) -> &'static str {
        match self {
            Self::Dns => "udp",
            _ => "tcp",
        }
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Ssh => "ssh",
            Self::Dns => "dns",
            Self::Http => "http",
            Self::Telnet => "telnet",
        }
    }
}

/// The running servers; stopped on drop.
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tls: Option<ChildGuard>,
    running: Vec<Service>,
}

impl Servers {
    /// Starts every service that can bind on `addr`; `workdir` holds the TLS key and cert.
    ///
    /// # Errors
    /// When a bind fails for another reason than the port being taken, or `openssl` fails.
    pub fn start(addr: Ipv4Addr, workdir: &Path) -> anyhow::Result<Self> {
        let mut servers = Self {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            tls: None,
            running: Vec::new(),
        };
        for service in Service::ALL {
            let socket = SocketAddr::from((addr, service.port()));
            let started = match service {
                Service::Https => servers.start_tls(socket, workdir),
                Service::Dns => servers.start_dns(socket),
                Service::Ssh => servers.start_tcp(socket, ssh),
                Service::Http => servers.start_tcp(socket, http),
                Service::Telnet => servers.start_tcp(socket, telnet),
            };
            match started {
                Ok(()) => servers.running.push(service),
                Err(error) if is_addr_in_use(&error) => println!(
                    "demo: WARNING: {}/{} on {addr} is taken by a service of this host listening \
                     on every address; the demo sends no {} traffic (it would reach that service)",
                    service.port(),
                    service.protocol(),
                    service.name()
                ),
                Err(error) => {
                    return Err(error.context(format!("starting the {} server", service.name())));
                }
            }
        }
        Ok(servers)
    }

    /// The services that are up.
    pub fn running(&self) -> &[Service] {
        &self.running
    }

    fn start_tcp(
        &mut self,
        socket: SocketAddr,
        handler: fn(&mut TcpStream) -> io::Result<()>,
    ) -> anyhow::Result<()> {
        let listener = TcpListener::bind(socket).with_context(|| format!("binding {socket}"))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::clone(&self.stop);
        self.threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        // A client that misbehaves costs one connection, never the server.
                        let _ = stream
                            .set_nonblocking(false)
                            .and_then(|()| stream.set_read_timeout(Some(IO_TIMEOUT)))
                            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
                            .and_then(|()| handler(&mut stream));
                    }
                    Err(_) => thread::sleep(IDLE_POLL),
                }
            }
        }));
        Ok(())
    }

    fn start_dns(&mut self, socket: SocketAddr) -> anyhow::Result<()> {
        let server = UdpSocket::bind(socket).with_context(|| format!("binding {socket}"))?;
        server.set_read_timeout(Some(IDLE_POLL))?;
        let stop = Arc::clone(&self.stop);
        self.threads.push(thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while !stop.load(Ordering::Acquire) {
                if let Ok((length, client)) = server.recv_from(&mut buffer)
                    && let Some(reply) = dns::answer(&buffer[..length])
                {
                    let _ = server.send_to(&reply, client);
                }
            }
        }));
        Ok(())
    }

    /// `openssl s_server -www` with a fresh self-signed P-256 certificate.
    fn start_tls(&mut self, socket: SocketAddr, workdir: &Path) -> anyhow::Result<()> {
        // Binding first tells a taken port apart from an openssl failure.
        drop(TcpListener::bind(socket).with_context(|| format!("binding {socket}"))?);
        let (key, cert) = (workdir.join("key.pem"), workdir.join("cert.pem"));
        let output = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=portmon-demo", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .output()
            .context("running openssl (install the Debian package openssl)")?;
        if !output.status.success() {
            bail!(
                "openssl req (making the demo's certificate): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let mut command = Command::new("openssl");
        command
            .args(["s_server", "-quiet", "-www", "-accept", &socket.to_string()])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Ctrl-C reaches only the demo, which stops it in order.
            .process_group(0);
        let mut server = ChildGuard::spawn("openssl s_server", &mut command)?;
        let deadline = Instant::now() + TLS_START;
        while TcpStream::connect_timeout(&socket, IO_TIMEOUT).is_err() {
            if let Some(status) = server.try_wait()? {
                bail!("openssl s_server exited with {status} before listening on {socket}");
            }
            if Instant::now() >= deadline {
                bail!("openssl s_server did not listen on {socket} within {TLS_START:?}");
            }
            thread::sleep(IDLE_POLL);
        }
        self.tls = Some(server);
        Ok(())
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // `tls` stops when its guard drops, right after this.
    }
}

fn is_addr_in_use(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|cause| cause.kind() == io::ErrorKind::AddrInUse)
}

/// SSH: both sides send their identification string; the client then leaves.
fn ssh(stream: &mut TcpStream) -> io::Result<()> {
    stream.write_all(SSH_BANNER.as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream.take(255)).read_line(&mut line)?;
    Ok(())
}

/// HTTP/1.1: one request (headers only), one page, then close.
fn http(stream: &mut TcpStream) -> io::Result<()> {
    let mut request = Vec::new();
    let mut reader = BufReader::new(stream.try_clone()?.take(8192));
    loop {
        let read = reader.read_until(b'\n', &mut request)?;
        if read == 0 || request.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nServer: portmon-demo\r\nContent-Type: text/html\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
        PAGE.len()
    )
}

/// Telnet: a login prompt, a user name and a password in clear, and a refusal.
fn telnet(stream: &mut TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?.take(1024));
    let mut line = String::new();
    stream.write_all(format!("\r\nDebian GNU/Linux 12\r\n{TELNET_LOGIN}").as_bytes())?;
    reader.read_line(&mut line)?;
    stream.write_all(b"Password: ")?;
    reader.read_line(&mut line)?;
    stream.write_all(b"\r\nLogin incorrect\r\n")
}
