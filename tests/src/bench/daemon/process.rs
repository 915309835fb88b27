//! The `portmon run` process under measurement: started on one interface with a free
//! loopback port, known by its pid (for /proc), stopped with SIGTERM (then SIGKILL) on drop.
//!
//! `crate::daemon::Daemon` does not expose its pid, which every figure here needs, so the
//! benchmark keeps its own small wrapper and reuses the HTTP and port helpers.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::daemon::{free_port, http_get};

/// How long the daemon may take to answer `/healthz` after it starts.
const START_LIMIT: Duration = Duration::from_mins(1);
/// How long it may take to exit after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// A running `portmon run`.
pub struct Portmon {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Portmon {
    /// Starts `binary run --listen 127.0.0.1:<free> --iface <interface> --interval <interval>`
    /// with `RUST_LOG=<log_filter>` and waits until it answers `/healthz`.
    ///
    /// # Errors
    /// When it cannot start, exits, or does not answer in time; the error carries its log.
    pub fn start(
        binary: &Path,
        interface: &str,
        interval: &str,
        log_filter: &str,
    ) -> anyhow::Result<Self> {
        let port = free_port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = std::env::temp_dir().join(format!(
            "portmon-bench-daemon-{}-{port}.log",
            std::process::id()
        ));
        let log_file =
            fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .arg("run")
            .args(["--listen", &addr.to_string()])
            .args(["--iface", interface, "--interval", interval])
            // Measured as a fresh start every time: nothing pinned, nothing left behind.
            .arg("--no-pin")
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} run", binary.display()))?;
        let mut portmon = Self { child, addr, log };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if http_get(addr, "/healthz", None).is_ok_and(|response| response.status == 200) {
                return Ok(portmon);
            }
            if let Some(status) = portmon.child.try_wait()? {
                bail!("portmon run exited with {status}; log:\n{}", portmon.log());
            }
            if Instant::now() >= deadline {
                bail!(
                    "portmon run did not answer within {START_LIMIT:?}; log:\n{}",
                    portmon.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The metrics endpoint.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    ///
    /// # Errors
    /// When its status cannot be read.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("portmon run exited with {status}; log:\n{}", self.log());
        }
        Ok(())
    }
}

impl Drop for Portmon {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    eprintln!("bench: portmon did not exit within {STOP_LIMIT:?}; killing it");
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = fs::remove_file(&self.log);
    }
}
