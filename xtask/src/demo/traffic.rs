//! The clients, in the sandbox's namespace: a steady, rate-limited mix of HTTPS, SSH, DNS and
//! HTTP for the whole demo, and episodes of a telnet burst and a port scan.
//!
//! One thread per kind of traffic; each enters the namespace first (only that thread moves,
//! and the processes it spawns, `openssl s_client` and `nmap`, start there too). Every loop
//! is bounded in count and by the demo's [`Stop`] (deadline, Ctrl-C, teardown), and every
//! socket operation by [`IO_TIMEOUT`].

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    console::say,
    process::ChildGuard,
    sandbox, scan,
    servers::{IO_TIMEOUT, SSH_BANNER, Service, TELNET_LOGIN},
    stop::Stop,
};

/// How long one `openssl s_client` handshake-and-fetch may take.
const TLS_LIMIT: Duration = Duration::from_secs(5);
/// Sessions in one telnet burst, and the pause between them.
const TELNET_SESSIONS: u32 = 25;
const TELNET_GAP: Duration = Duration::from_millis(100);
/// Names the DNS clients ask for (RFC 2606 names; the answers are in 192.0.2.0/24).
const DNS_NAMES: [&str; 4] = [
    "www.example.com",
    "mail.example.org",
    "api.example.net",
    "cdn.example.com",
];

/// When each kind of traffic runs: every `every`, first after `first` (never before the
/// steady mix has had a moment, never after the demo's end).
#[derive(Clone, Copy, Debug)]
struct Schedule {
    first: Duration,
    every: Duration,
}

impl Schedule {
    /// The steady mix: at once, then every `every`.
    fn steady(every: Duration) -> Self {
        Self {
            first: Duration::ZERO,
            every,
        }
    }

    /// An episode: first at `preferred`, or at `fraction` of a short demo, then every `every`.
    fn episode(total: Duration, preferred: Duration, fraction: f64, every: Duration) -> Self {
        Self {
            first: preferred.min(total.mul_f64(fraction)),
            every,
        }
    }

    /// How many runs fit in `total` (the loop's hard bound).
    fn runs_within(self, total: Duration) -> u64 {
        let span = total.saturating_sub(self.first);
        let every = self.every.max(Duration::from_millis(1));
        u64::try_from(span.as_millis() / every.as_millis()).unwrap_or(u64::MAX) + 1
    }
}

/// Per-service outcomes, read by the summary.
#[derive(Debug, Default)]
pub struct Stats {
    ok: [AtomicU64; Service::ALL.len()],
    failed: [AtomicU64; Service::ALL.len()],
    scans: AtomicU64,
}

impl Stats {
    fn record(&self, service: Service, ok: bool) {
        let index = index(service);
        let counter = if ok {
            &self.ok[index]
        } else {
            &self.failed[index]
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Exchanges (sessions, queries, handshakes) that succeeded and failed for `service`.
    pub fn outcomes(&self, service: Service) -> (u64, u64) {
        let index = index(service);
        (
            self.ok[index].load(Ordering::Relaxed),
            self.failed[index].load(Ordering::Relaxed),
        )
    }

    /// Port scans finished.
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }

    /// One line: what each client did.
    pub fn report(&self, services: &[Service]) -> String {
        let mut parts: Vec<String> = services
            .iter()
            .map(|service| {
                let (ok, failed) = self.outcomes(*service);
                format!("{} {ok} ok/{failed} failed", service.name())
            })
            .collect();
        parts.push(format!("port scans {}", self.scans()));
        parts.join(", ")
    }
}

fn index(service: Service) -> usize {
    Service::ALL
        .iter()
        .position(|candidate| *candidate == service)
        .unwrap_or(0)
}

/// The running clients; stopped (and joined) on drop.
pub struct Traffic {
    stop: Stop,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl Traffic {
    /// Starts a client thread for each of `services` (those whose server runs), plus the
    /// port scan, in namespace `ns`, against `server`. `stop` ends them.
    pub fn start(ns: &str, server: Ipv4Addr, services: &[Service], stop: &Stop) -> Self {
        let total = stop.deadline().saturating_duration_since(Instant::now());
        let stats = Arc::new(Stats::default());
        let mut threads = Vec::new();
        for &service in services {
            let schedule = match service {
                Service::Https | Service::Ssh => Schedule::steady(Duration::from_secs(1)),
                Service::Dns => Schedule::steady(Duration::from_millis(200)),
                Service::Http => Schedule::steady(Duration::from_millis(500)),
                Service::Telnet => {
                    Schedule::episode(total, Duration::from_secs(8), 0.2, Duration::from_mins(2))
                }
            };
            let client = Client {
                ns: ns.to_owned(),
                server,
                stop: stop.clone(),
                stats: Arc::clone(&stats),
            };
            threads.push(thread::spawn(move || {
                client.run(schedule, total, |client, round| client.once(service, round));
            }));
        }
        let scan = Schedule::episode(total, Duration::from_secs(15), 0.4, Duration::from_mins(3));
        let client = Client {
            ns: ns.to_owned(),
            server,
            stop: stop.clone(),
            stats: Arc::clone(&stats),
        };
        threads.push(thread::spawn(move || {
            client.run(scan, total, |client, _| client.scan());
        }));
        Self {
            stop: stop.clone(),
            threads,
            stats,
        }
    }

    /// Stops every client, waits for them and says what they achieved.
    pub fn finish(mut self) -> Arc<Stats> {
        self.join();
        Arc::clone(&self.stats)
    }

    fn join(&mut self) {
        self.stop.trigger();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.join();
    }
}

/// What one client thread needs.
struct Client {
    ns: String,
    server: Ipv4Addr,
    stop: Stop,
    stats: Arc<Stats>,
}

impl Client {
    /// Enters the namespace, then calls `once` on `schedule` until the stop or the bound.
    fn run(&self, schedule: Schedule, total: Duration, once: impl Fn(&Self, u64)) {
        if let Err(error) = sandbox::enter(&self.ns) {
            say(format!(
                "demo: a client thread cannot enter the sandbox: {error:#}"
            ));
            self.stop.trigger();
            return;
        }
        if !self.stop.sleep(schedule.first) {
            return;
        }
        let start = Instant::now();
        for round in 0..schedule.runs_within(total) {
            once(self, round);
            // Paced from the start, so a slow exchange does not push every later one back.
            let next = schedule
                .every
                .saturating_mul(u32::try_from(round + 1).unwrap_or(u32::MAX));
            if !self.stop.sleep(next.saturating_sub(start.elapsed())) {
                return;
            }
        }
    }

    fn once(&self, service: Service, round: u64) {
        let ok = match service {
            Service::Https => self.https(),
            Service::Ssh => self.ssh(),
            Service::Dns => self.dns(round),
            Service::Http => self.http(),
            Service::Telnet => {
                self.telnet_burst();
                return;
            }
        };
        self.stats.record(service, ok.is_ok());
    }

    fn connect(&self, port: u16) -> anyhow::Result<TcpStream> {
        let addr = SocketAddr::from((self.server, port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(stream)
    }

    /// A TLS 1.3 handshake and one request, through `openssl s_client`.
    fn https(&self) -> anyhow::Result<()> {
        let mut command = Command::new("openssl");
        command
            .args([
                "s_client",
                "-quiet",
                "-servername",
                "portmon-demo",
                "-connect",
            ])
            .arg(format!("{}:443", self.server))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut client = ChildGuard::spawn("openssl s_client", &mut command)?;
        if let Some(mut stdin) = client.take_stdin() {
            stdin.write_all(b"GET / HTTP/1.0\r\nHost: portmon-demo\r\n\r\n")?;
        }
        let deadline = Instant::now() + TLS_LIMIT;
        loop {
            if let Some(status) = client.try_wait()? {
                if !status.success() {
                    bail!("openssl s_client exited with {status}");
                }
                return Ok(());
            }
            if Instant::now() >= deadline || !self.stop.sleep(Duration::from_millis(10)) {
                bail!("openssl s_client did not finish");
            }
        }
    }

    fn ssh(&self) -> anyhow::Result<()> {
        let mut stream = self.connect(22)?;
        let mut banner = String::new();
        BufReader::new(stream.try_clone()?.take(255)).read_line(&mut banner)?;
        if banner != SSH_BANNER {
            bail!("unexpected SSH banner {banner:?}");
        }
        stream.write_all(b"SSH-2.0-OpenSSH_9.6 portmon-demo-client\r\n")?;
        Ok(())
    }

    fn dns(&self, round: u64) -> anyhow::Result<()> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_read_timeout(Some(IO_TIMEOUT))?;
        socket.connect((self.server, 53))?;
        let id = u16::try_from(round & 0xffff).unwrap_or(0);
        let name = DNS_NAMES[usize::try_from(round).unwrap_or(0) % DNS_NAMES.len()];
        socket.send(&super::dns::query(id, name))?;
        let mut buffer = [0u8; 512];
        let length = socket.recv(&mut buffer)?;
        super::dns::answered_address(id, &buffer[..length])
            .map(|_| ())
            .with_context(|| format!("no answer for {name}"))
    }

    fn http(&self) -> anyhow::Result<()> {
        let mut stream = self.connect(80)?;
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: portmon-demo\r\nConnection: close\r\n\r\n",
            self.server
        )?;
        let mut response = String::new();
        stream.take(64 * 1024).read_to_string(&mut response)?;
        if !response.starts_with("HTTP/1.1 200") {
            bail!("unexpected HTTP response {response:.40?}");
        }
        Ok(())
    }

    /// Logins with the password in clear: each one should make portmon's telnet alert fire.
    fn telnet_burst(&self) {
        say(format!(
            "demo: telnet burst: {TELNET_SESSIONS} logins to {}:23, passwords in clear",
            self.server
        ));
        for _ in 0..TELNET_SESSIONS {
            let ok = self.telnet().is_ok();
            self.stats.record(Service::Telnet, ok);
            if !self.stop.sleep(TELNET_GAP) {
                return;
            }
        }
    }

    fn telnet(&self) -> anyhow::Result<()> {
        let mut stream = self.connect(23)?;
        let mut reader = BufReader::new(stream.try_clone()?.take(1024));
        let mut prompt = Vec::new();
        while !prompt.ends_with(TELNET_LOGIN.as_bytes()) {
            let mut byte = [0u8; 1];
            if reader.read(&mut byte)? == 0 {
                bail!("no login prompt");
            }
            prompt.push(byte[0]);
        }
        stream.write_all(b"admin\r\n")?;
        let mut line = Vec::new();
        while !line.ends_with(b"Password: ") {
            let mut byte = [0u8; 1];
            if reader.read(&mut byte)? == 0 {
                bail!("no password prompt");
            }
            line.push(byte[0]);
        }
        stream.write_all(b"hunter2\r\n")?;
        let mut rest = String::new();
        reader.read_to_string(&mut rest)?;
        Ok(())
    }

    /// A port scan; see [`scan::run`].
    fn scan(&self) {
        say(format!(
            "demo: port scan: nmap -sS ports {} of {} at {} packets/s",
            scan::PORTS,
            self.server,
            scan::RATE
        ));
        match scan::run(self.server, &self.stop) {
            Ok(Some(open)) => {
                self.stats.scans.fetch_add(1, Ordering::Relaxed);
                say(format!("demo: port scan done: open ports {open}"));
            }
            Ok(None) => {} // the demo stopped first, and nmap with it
            Err(error) => say(format!("demo: port scan: {error:#}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_fit_the_demo() {
        let cases = [
            (
                "steady, 30 s",
                Schedule::steady(Duration::from_secs(1)),
                30,
                0,
                31,
            ),
            (
                "telnet in a 30 s demo: early",
                Schedule::episode(
                    Duration::from_secs(30),
                    Duration::from_secs(8),
                    0.2,
                    Duration::from_mins(2),
                ),
                30,
                6,
                1,
            ),
            (
                "telnet in a 10 min demo: at 8 s, then every 2 min",
                Schedule::episode(
                    Duration::from_mins(10),
                    Duration::from_secs(8),
                    0.2,
                    Duration::from_mins(2),
                ),
                600,
                8,
                5,
            ),
        ];
        for (name, schedule, total, first, runs) in cases {
            assert_eq!(
                (
                    schedule.first.as_secs(),
                    schedule.runs_within(Duration::from_secs(total))
                ),
                (first, runs),
                "{name}: expected first at {first} s and {runs} runs"
            );
        }
    }
}
