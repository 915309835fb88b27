//! The port scan: nmap's SYN scan of the server's low ports from the sandbox, rate-limited
//! and time-bounded, as an attacker's reconnaissance would look on the wire.

use std::{
    io::Read as _,
    net::Ipv4Addr,
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{process::ChildGuard, stop::Stop};

/// The ports scanned.
pub const PORTS: &str = "1-1024";
/// nmap's packet rate cap (`--max-rate`, packets/s).
pub const RATE: &str = "300";
/// How long nmap may run (`--host-timeout`); it is stopped a little after.
const LIMIT: Duration = Duration::from_mins(1);
/// How often the scan's end is looked for.
const POLL: Duration = Duration::from_millis(50);

/// Scans `server` from the calling thread's namespace. Returns the open ports
/// (`22, 23, 80`), or `None` when the demo stopped first (nmap is stopped then).
///
/// # Errors
/// When nmap cannot start or fails.
pub fn run(server: Ipv4Addr, stop: &Stop) -> anyhow::Result<Option<String>> {
    let mut command = Command::new("nmap");
    command
        .args(["-sS", "-Pn", "-n", "--max-retries", "1", "--max-rate", RATE])
        .args(["--host-timeout", &format!("{}s", LIMIT.as_secs())])
        .args(["-p", PORTS, "-oG", "-"])
        .arg(server.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: Ctrl-C reaches only the demo, which stops it in order.
        .process_group(0);
    let mut nmap = ChildGuard::spawn("nmap", &mut command).context("install nmap")?;
    let deadline = Instant::now() + LIMIT + Duration::from_secs(5);
    loop {
        if let Some(status) = nmap.try_wait()? {
            if !status.success() {
                bail!("nmap exited with {status}");
            }
            break;
        }
        if Instant::now() >= deadline || !stop.sleep(POLL) {
            return Ok(None); // the guard stops nmap
        }
    }
    // nmap has exited: its grepable report (a few lines) is all in the pipe.
    let mut report = String::new();
    if let Some(mut stdout) = nmap.take_stdout() {
        stdout
            .read_to_string(&mut report)
            .context("reading nmap's report")?;
    }
    Ok(Some(open_ports(&report)))
}

/// The open ports in nmap's grepable output (`Ports: 22/open/tcp//ssh///, ...`).
fn open_ports(grepable: &str) -> String {
    let open: Vec<&str> = grepable
        .lines()
        .filter_map(|line| line.split_once("Ports: "))
        .flat_map(|(_, ports)| ports.split(", "))
        .filter_map(|entry| {
            let mut fields = entry.split('/');
            let port = fields.next()?;
            (fields.next() == Some("open")).then_some(port.trim())
        })
        .collect();
    if open.is_empty() {
        "none".to_owned()
    } else {
        open.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_open_ports_from_grepable_output() {
        let cases = [
            (
                "two open, one closed",
                "Host: 10.202.0.1 ()\tPorts: 22/open/tcp//ssh///, 25/closed/tcp//smtp///, \
                 443/open/tcp//https///\tIgnored State: closed (1021)",
                "22, 443",
            ),
            ("no ports line", "# Nmap done", "none"),
        ];
        for (name, report, expected) in cases {
            assert_eq!(open_ports(report), expected, "{name}");
        }
    }
}
