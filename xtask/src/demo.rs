//! `cargo xtask demo`: portmon's first contact. Sets up and builds, creates a sandbox (a
//! namespace for the clients, joined to the host by a veth pair), runs `portmon run` on the
//! host end as in production, drives a realistic traffic mix through it (HTTPS, SSH, DNS,
//! HTTP, then a telnet burst and a port scan), says where the metrics are and shows the live
//! view (`portmon top`, or a summary line every few seconds).
//!
//! It stops by itself after `--duration`, on Ctrl-C (SIGINT), SIGTERM or SIGHUP, on any
//! error and on a panic, and removes everything it created on the way out: traffic, portmon
//! (which detaches), servers, veth, namespace, work directory. Each is an RAII guard, dropped
//! in the reverse order of creation.

mod console;
mod dns;
mod metrics;
mod process;
mod sandbox;
mod scan;
mod servers;
mod stop;
mod traffic;
mod view;

use std::{
    fs,
    io::IsTerminal as _,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use process::ChildGuard;
use sandbox::Sandbox;
use servers::Servers;
use stop::Stop;
use traffic::Traffic;

use crate::{bench, command, setup};

/// The metrics port the demo prefers (portmon's default), when it is free.
const PREFERRED_PORT: u16 = 9797;
/// How long portmon may take to answer `/healthz`.
const START_LIMIT: Duration = Duration::from_mins(1);
/// portmon's read interval in the demo, and how long the last read may lag the traffic.
const READ_INTERVAL: Duration = Duration::from_secs(1);

/// What `cargo xtask demo` was asked for.
#[derive(Debug)]
pub struct Options {
    /// How long the demo runs before it cleans up by itself.
    pub duration: Duration,
    /// Print a summary line every few seconds instead of running `portmon top`.
    pub no_top: bool,
    /// portmon's metrics address; `None` picks 127.0.0.1:9797 or, if taken, a free port.
    pub listen: Option<SocketAddr>,
    /// A `portmon` binary to use instead of building one in release.
    pub portmon: Option<PathBuf>,
    /// Where to write the last scrape of `/metrics`.
    pub metrics_out: Option<PathBuf>,
}

/// Parses `30s`, `10m`, `1h`, `500ms` or a number of seconds.
///
/// # Errors
/// A message saying what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not a duration like 30s, 10m, 1h or 500ms");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if duration.is_zero() {
        return Err(format!("{text:?}: the demo needs a duration above zero"));
    }
    Ok(duration)
}

/// Runs the demo.
///
/// # Errors
/// When not root, when setup or the build fails, or when a part of the sandbox cannot start;
/// everything created before is removed first.
pub fn run(options: &Options) -> anyhow::Result<()> {
    command::require_root("demo")?;
    setup::ensure()?;
    let portmon = match &options.portmon {
        Some(path) => path.clone(),
        None => build_portmon()?,
    };
    // From here on Ctrl-C only asks to stop, so that the guards below can clean up.
    stop::install_handlers()?;
    let stop = Stop::new(Instant::now() + options.duration);

    let workdir = WorkDir::new()?;
    let sandbox = Sandbox::new()?;
    println!(
        "demo: sandbox: namespace {ns}, veth {host} (host, {host_addr}/30) <-> {peer} \
         (namespace, {peer_addr}/30), workdir {workdir}",
        ns = sandbox.ns_name(),
        host = sandbox.host_if(),
        peer = sandbox.peer_if(),
        host_addr = sandbox.host_addr(),
        peer_addr = sandbox.peer_addr(),
        workdir = workdir.path().display(),
    );
    let servers = Servers::start(sandbox.host_addr(), workdir.path())?;
    println!(
        "demo: servers on {}: {}",
        sandbox.host_addr(),
        servers
            .running()
            .iter()
            .map(|service| format!(
                "{} {}/{}",
                service.name(),
                service.port(),
                service.protocol()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let listen = match options.listen {
        Some(listen) => listen,
        None => listen_addr()?,
    };
    let mut daemon = Portmon::start(&portmon, sandbox.host_if(), listen, workdir.path())?;
    daemon.wait_healthy(&stop)?;
    let traffic = Traffic::start(
        sandbox.ns_name(),
        sandbox.host_addr(),
        servers.running(),
        &stop,
    );
    print_where(listen, sandbox.host_if(), options.duration);

    let shown = if !options.no_top && std::io::stdout().is_terminal() && view::has_top(&portmon) {
        view::top(&portmon, listen, &stop, &mut daemon)
    } else {
        view::summaries(
            listen,
            sandbox.host_if(),
            servers.running(),
            &stop,
            &mut daemon,
        )
    };

    // The last word: traffic stopped, one more read by portmon, then the final scrape.
    stop.trigger();
    println!(
        "demo: clients: {}",
        traffic.finish().report(servers.running())
    );
    std::thread::sleep(READ_INTERVAL + READ_INTERVAL / 2);
    let closing = finish(listen, sandbox.host_if(), options.metrics_out.as_deref());
    let (ns, host) = (sandbox.ns_name().to_owned(), sandbox.host_if().to_owned());
    drop(daemon);
    drop(servers);
    drop(sandbox);
    drop(workdir);
    shown?;
    closing?;
    if stop::signalled() {
        println!("demo: stopped by a signal");
    }
    println!(
        "demo: cleaned up: portmon stopped (detached), servers stopped, veth {host} and namespace {ns} removed"
    );
    Ok(())
}

/// `cargo build --release` of portmon; its path.
fn build_portmon() -> anyhow::Result<PathBuf> {
    println!("demo: building portmon in release (the first build takes a few minutes)");
    command::run(
        Command::new(env!("CARGO")).args([
            "build",
            "--release",
            "--package",
            "monitor",
            "--bin",
            "portmon",
        ]),
        "building the release portmon binary failed (its message is above)",
    )?;
    Ok(bench::target_dir().join("release").join("portmon"))
}

/// 127.0.0.1:9797 when free, else a free loopback port.
fn listen_addr() -> anyhow::Result<SocketAddr> {
    let preferred = SocketAddr::from((Ipv4Addr::LOCALHOST, PREFERRED_PORT));
    if TcpListener::bind(preferred).is_ok() {
        return Ok(preferred);
    }
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    Ok(listener.local_addr()?)
}

fn print_where(listen: SocketAddr, iface: &str, duration: Duration) {
    println!(
        "\n\
         demo: portmon is counting on {iface}. Look at it while the demo runs ({secs} s, Ctrl-C ends it):\n\
         \x20 curl -s http://{listen}/metrics | grep 'port=\"23\"'\n\
         \x20 curl -s http://{listen}/api/v1/snapshot\n\
         \x20 PromQL, with Prometheus scraping it:\n\
         \x20   sum by (port, service, security) (rate(portmon_packets_total{{interface=\"{iface}\",direction=\"ingress\"}}[1m]))\n\
         \x20   sum by (security) (rate(portmon_bytes_total{{interface=\"{iface}\"}}[5m]))\n\
         \x20   portmon_plaintext_alert == 1\n\
         \x20   sum(rate(portmon_tcp_syn_total{{interface=\"{iface}\",port=\"other\"}}[1m]))   # the port scan\n",
        secs = duration.as_secs()
    );
}

/// The final scrape: highlights printed, and the exposition written to `out` if asked.
fn finish(listen: SocketAddr, iface: &str, out: Option<&Path>) -> anyhow::Result<()> {
    let text = metrics::get(listen, "/metrics").context("the final scrape of portmon")?;
    if let Some(out) = out {
        fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
        println!("demo: last scrape of /metrics written to {}", out.display());
    }
    let samples = metrics::parse(&text);
    println!(
        "\ndemo: highlights from the last scrape (each under the PromQL that gives it):\n{}\n",
        metrics::View::new(&samples, iface).highlights()
    );
    Ok(())
}

/// The demo's `portmon run`, its log in the work directory.
struct Portmon {
    child: ChildGuard,
    listen: SocketAddr,
    log: PathBuf,
}

impl Portmon {
    fn start(
        binary: &Path,
        iface: &str,
        listen: SocketAddr,
        workdir: &Path,
    ) -> anyhow::Result<Self> {
        let log = workdir.join("portmon.log");
        let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .args(["run", "--iface", iface, "--listen", &listen.to_string()])
            .args(["--interval", &format!("{}ms", READ_INTERVAL.as_millis())])
            // The sandbox goes away with the demo: nothing may stay pinned in bpffs.
            .arg("--no-pin")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            // Its own process group: Ctrl-C reaches only the demo, which stops it in order.
            .process_group(0);
        let child = ChildGuard::spawn("portmon run", &mut command)?;
        println!(
            "demo: started {} run --iface {iface} --listen {listen} (pid {})",
            binary.display(),
            child.id().unwrap_or_default()
        );
        Ok(Self { child, listen, log })
    }

    fn wait_healthy(&mut self, stop: &Stop) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if metrics::get(self.listen, "/healthz").is_ok() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                bail!(
                    "portmon did not answer on {} within {START_LIMIT:?}; its log:\n{}",
                    self.listen,
                    self.log_text()
                );
            }
            if !stop.sleep(Duration::from_millis(100)) {
                bail!("stopped before portmon was ready");
            }
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "portmon run exited with {status}; its log:\n{}",
                self.log_text()
            );
        }
        Ok(())
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `/tmp/portmon-demo-<pid>`: the TLS key and certificate, portmon's log. Removed on drop.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("portmon-demo-{}", std::process::id()));
        // A directory of this name can only be left by an earlier process with our pid.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.path) {
            eprintln!("demo: removing {}: {error}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("seconds", "30s", Ok(Duration::from_secs(30))),
            ("minutes", "10m", Ok(Duration::from_mins(10))),
            ("hours", "1h", Ok(Duration::from_hours(1))),
            ("milliseconds", "500ms", Ok(Duration::from_millis(500))),
            ("bare number is seconds", "45", Ok(Duration::from_secs(45))),
            ("zero", "0s", Err(())),
            ("unknown unit", "3d", Err(())),
            ("no number", "s", Err(())),
        ];
        for (name, text, expected) in cases {
            assert_eq!(
                parse_duration(text).map_err(|_| ()),
                expected,
                "{name}: {text}"
            );
        }
    }
}
