//! The `portmon` command line: `portmon run` (the daemon) and `portmon ports` (the port
//! knowledge, no privileges needed). Flags override the config file; each flag also reads
//! a `PORTMON_*` environment variable.

use std::{io::Write as _, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::{
    attach::Hook,
    config::{self, Config, Loaded, LogFormat, XdpModeSetting},
    daemon::{self, Settings},
    metrics::budget::BudgetSettings,
    ports::report,
};

const RUN_EXAMPLES: &str = "\
Examples:
  # every up, non-loopback interface, metrics on 127.0.0.1:9797
  sudo portmon run
  # two interfaces, generic XDP, read every 200 ms
  sudo portmon run --iface eth0 --iface eth1 --xdp-mode generic --interval 200ms
  # every veth, also those created later; TC ingress where another program owns XDP
  sudo portmon run --iface 'veth*' --hook auto
  # ingress only, metrics on all addresses, settings from a file
  sudo portmon run --no-egress --listen 0.0.0.0:9797 --config /etc/portmon.toml
  # the same through the environment (systemd EnvironmentFile=)
  PORTMON_IFACE=eth0 PORTMON_INTERVAL=5s sudo -E portmon run

Needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or root). Flags override the config file.
Scrape it: curl -s http://127.0.0.1:9797/metrics";

const PORTS_EXAMPLES: &str = "\
Examples:
  portmon ports                 # the whole security table
  portmon ports 23 443          # by port
  portmon ports telnet 53/udp   # by service name, or PORT/PROTO
  portmon ports 23 --json       # machine-readable
  portmon ports --config /etc/portmon.toml 8080   # with the file's [[ports]] overrides";

/// portmon: per-port traffic counters from XDP and TC, exported to Prometheus.
#[derive(Debug, Parser)]
#[command(name = "portmon", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to interfaces and serve per-port metrics until SIGINT or SIGTERM.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Show how ports are classified (range, security, secure alternative).
    #[command(after_help = PORTS_EXAMPLES)]
    Ports(PortsArgs),
    /// Check this host: kernel, BTF, bpffs, capabilities, XDP per interface; exit 1 on FAIL.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Detach and unpin everything portmon left attached and pinned (after a stop or kill).
    #[command(after_help = DETACH_EXAMPLES)]
    Detach(DetachArgs),
    /// Live per-port rates from a running daemon (or attach with --iface when none runs).
    #[command(after_help = crate::top::EXAMPLES)]
    Top(crate::top::TopArgs),
}

const CHECK_EXAMPLES: &str = "\
Examples:
  portmon check                 # what an unprivileged user can see
  sudo portmon check --iface eth0   # also probes native XDP (attaches and detaches at once)

One line per finding: OK, WARN (works, with a limit) or FAIL (portmon run would fail),
each problem with its fix. Exit status 1 when any line is FAIL.";

#[derive(Debug, Args)]
struct CheckArgs {
    /// Interface to check; repeat for several [default: every up, non-loopback one].
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    iface: Vec<String>,
}

#[derive(Debug, Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "clap switches: each bool is one independent flag"
)]
struct RunArgs {
    /// Interface to attach to, or a glob (eth*, veth?, en[ops]*) that also picks up
    /// interfaces created later; repeat for several [default: every up, non-loopback one].
    #[arg(
        long,
        value_name = "NAME|GLOB",
        env = "PORTMON_IFACE",
        value_delimiter = ','
    )]
    iface: Vec<String>,
    /// Where ingress is counted: auto uses XDP where the hook is free and TC ingress where
    /// another program holds it (never replacing it); xdp refuses a taken hook [default: auto].
    #[arg(long, value_enum, env = "PORTMON_HOOK")]
    hook: Option<Hook>,
    /// Do not follow link events: interfaces deleted and recreated, or created later
    /// matching a glob, are not (re-)attached; every capability is dropped after attaching.
    #[arg(long, env = "PORTMON_NO_REATTACH")]
    no_reattach: bool,
    /// auto tries native XDP and falls back to generic with a warning [default: auto].
    #[arg(long, value_enum, env = "PORTMON_XDP_MODE")]
    xdp_mode: Option<XdpModeSetting>,
    /// Do not attach the TC egress program (count ingress only).
    #[arg(long, env = "PORTMON_NO_EGRESS")]
    no_egress: bool,
    /// Address of the metrics endpoint [default: 127.0.0.1:9797].
    #[arg(long, value_name = "ADDR", env = "PORTMON_LISTEN")]
    listen: Option<SocketAddr>,
    /// TOML configuration file (see the README); flags override it.
    #[arg(long, value_name = "FILE", env = "PORTMON_CONFIG")]
    config: Option<PathBuf>,
    /// How often the counters are read: 200ms, 1s, 5m... [default: 1s].
    #[arg(long, value_name = "DURATION", env = "PORTMON_INTERVAL", value_parser = config::parse_interval)]
    interval: Option<Duration>,
    /// Non-table ports per interface, direction and protocol that may get their own series [default: 20].
    #[arg(long, value_name = "K", env = "PORTMON_TOP_K")]
    top_k: Option<u32>,
    /// Packets a non-table port must count before it can get its own series [default: 100].
    #[arg(long, value_name = "N", env = "PORTMON_PROMOTE_MIN_PACKETS")]
    promote_min_packets: Option<u64>,
    /// Cap on counter slices per interface; kernel memory is interfaces x slices x ~6 MiB [default: 8].
    #[arg(long, value_name = "N", env = "PORTMON_MAX_SLICES", value_parser = parse_max_slices)]
    max_slices: Option<u32>,
    /// Log every packet from the kernel programs (debug level; costly).
    #[arg(long, env = "PORTMON_DEBUG_KERNEL")]
    debug_kernel: bool,
    /// Do not classify payloads (no portmon_payload_packets_total, no mismatch alerts).
    #[arg(long, env = "PORTMON_NO_PAYLOAD")]
    no_payload: bool,
    /// Log lines as text or as one JSON object per line [default: text].
    #[arg(long, value_enum, env = "PORTMON_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// bpffs directory where each interface's maps and links are pinned, so counters survive restarts [default: /sys/fs/bpf/portmon].
    #[arg(long, value_name = "DIR", env = "PORTMON_PIN_DIR")]
    pin_dir: Option<PathBuf>,
    /// Pin nothing: detach at exit, counters restart from zero with the daemon.
    #[arg(long, env = "PORTMON_NO_PIN", conflicts_with_all = ["pin_dir", "cleanup"])]
    no_pin: bool,
    /// Detach and unpin everything at exit instead of leaving it counting for the next start.
    #[arg(long, env = "PORTMON_CLEANUP")]
    cleanup: bool,
    /// Exporter-toolkit web config (YAML): TLS, mTLS, basic auth, headers (see the README).
    #[arg(
        long = "web.config.file",
        value_name = "FILE",
        env = "PORTMON_WEB_CONFIG_FILE"
    )]
    web_config_file: Option<PathBuf>,
    /// Requests in flight before the endpoint answers 503; 0 is no cap [default: 40].
    #[arg(
        long = "web.max-requests",
        value_name = "N",
        env = "PORTMON_WEB_MAX_REQUESTS"
    )]
    web_max_requests: Option<usize>,
}

const DETACH_EXAMPLES: &str = "\
Examples:
  sudo portmon detach                 # every interface pinned under /sys/fs/bpf/portmon
  sudo portmon detach --iface eth0    # one interface
  sudo portmon detach --pin-dir /sys/fs/bpf/other

Stop the daemon first: a running portmon holds its interfaces (detach refuses them).
Nothing left to remove is reported, not an error.";

#[derive(Debug, Args)]
struct DetachArgs {
    /// Interface whose pins to remove; repeat for several [default: every pinned one].
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    iface: Vec<String>,
    /// The pin root the daemon used [default: /sys/fs/bpf/portmon].
    #[arg(long, value_name = "DIR", env = "PORTMON_PIN_DIR")]
    pin_dir: Option<PathBuf>,
}

fn parse_max_slices(text: &str) -> Result<u32, String> {
    let slices: u32 = text.parse().map_err(|error| format!("{error}"))?;
    config::check_max_slices(slices)
}

#[derive(Debug, Args)]
struct PortsArgs {
    /// Ports (23, 53/udp) or service names (telnet); none prints the whole security table.
    #[arg(value_name = "PORT|SERVICE")]
    queries: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Apply this config file's [[ports]] overrides.
    #[arg(long, value_name = "FILE", env = "PORTMON_CONFIG")]
    config: Option<PathBuf>,
}

/// Runs the CLI and maps errors to an exit code: 0 success, 1 any error, 2 usage.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Top(args) => crate::top::run(&args.into()),
        Command::Ports(args) => {
            crate::logging::init(LogFormat::Text);
            ports(&args)
        }
        Command::Check(args) => {
            crate::logging::init(LogFormat::Text);
            return check(&args);
        }
        Command::Detach(args) => {
            crate::logging::init(LogFormat::Text);
            detach(&args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portmon: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Loaded> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Loaded::default()),
    }
}

/// Merges flags over the config file.
fn settings(args: RunArgs, loaded: Loaded) -> Settings {
    let file = loaded.daemon;
    Settings {
        interfaces: if args.iface.is_empty() {
            file.iface
        } else {
            args.iface
        },
        hook: args.hook.unwrap_or(file.hook),
        reattach: file.reattach && !args.no_reattach,
        xdp_mode: args.xdp_mode.unwrap_or(file.xdp_mode).into(),
        egress: file.egress && !args.no_egress,
        listen: args.listen.unwrap_or(file.listen),
        interval: args.interval.unwrap_or(file.interval),
        budget: BudgetSettings {
            top_k: args.top_k.unwrap_or(file.top_k),
            promote_min_packets: args.promote_min_packets.unwrap_or(file.promote_min_packets),
        },
        max_slices: args.max_slices.unwrap_or(file.max_slices),
        debug_kernel: args.debug_kernel || file.debug_kernel,
        payload: file.payload && !args.no_payload,
        policy: loaded.policy,
        alerts: loaded.alerts,
        pin: daemon::PinSettings {
            dir: args.pin_dir.or(file.pin_dir),
            disabled: args.no_pin,
            cleanup: args.cleanup,
        },
        web_config_file: args.web_config_file.or(file.web_config_file),
        web_max_requests: args.web_max_requests.unwrap_or(file.web_max_requests),
    }
}

fn detach(args: &DetachArgs) -> anyhow::Result<()> {
    let root = args
        .pin_dir
        .clone()
        .unwrap_or_else(|| crate::pin::DEFAULT_ROOT.into());
    let report = crate::pin::detach::detach(&root, &args.iface)
        .with_context(|| format!("detaching what portmon pinned under {}", root.display()))?;
    let mut stdout = std::io::stdout().lock();
    for removed in &report.removed {
        writeln!(stdout, "{removed}").context("writing to standard output")?;
    }
    for interface in &report.interfaces {
        writeln!(
            stdout,
            "{interface}: nothing of portmon left attached or pinned"
        )
        .context("writing to standard output")?;
    }
    for interface in &report.missing {
        writeln!(
            stdout,
            "{interface}: nothing to detach (no {})",
            root.join(interface).display()
        )
        .context("writing to standard output")?;
    }
    if report.interfaces.is_empty() && report.missing.is_empty() {
        writeln!(
            stdout,
            "nothing to detach: no interface is pinned under {}",
            root.display()
        )
        .context("writing to standard output")?;
    }
    stdout.flush().context("writing to standard output")
}

/// The log format: flag (or `PORTMON_LOG_FORMAT`) over the config file.
fn log_format(args: &RunArgs, loaded: &Loaded) -> LogFormat {
    args.log_format.unwrap_or(loaded.daemon.log_format)
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    // The logger waits for the config, which may choose JSON; a config error is printed
    // by `main` on stderr either way.
    let loaded = match load_config(args.config.as_ref()) {
        Ok(loaded) => loaded,
        Err(error) => {
            crate::logging::init(args.log_format.unwrap_or_default());
            return Err(error);
        }
    };
    crate::logging::init(log_format(&args, &loaded));
    daemon::run(settings(args, loaded))
}

fn check(args: &CheckArgs) -> ExitCode {
    let findings = crate::check::run(&args.iface);
    let mut stdout = std::io::stdout().lock();
    for finding in &findings {
        // A closed stdout only loses the report; the exit status still tells.
        let _ = writeln!(stdout, "{finding}");
    }
    let _ = stdout.flush();
    if crate::check::worst(&findings) == crate::check::Status::Fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn ports(args: &PortsArgs) -> anyhow::Result<()> {
    let loaded = load_config(args.config.as_ref())?;
    let policy = &loaded.policy;
    let infos = if args.queries.is_empty() {
        policy.security_table().collect()
    } else {
        let mut infos = Vec::new();
        for query in &args.queries {
            infos.extend(policy.resolve(query)?);
        }
        infos
    };
    let output = if args.json {
        report::render_json(&infos)
    } else {
        report::render_text(&infos)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to standard output")
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn run_args(argv: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(std::iter::once("portmon").chain(argv.iter().copied()))
            .expect("the arguments parse");
        match cli.command {
            Command::Run(run) => run,
            _ => panic!("expected the run subcommand"),
        }
    }

    #[test]
    fn flags_override_the_config_file_and_defaults_fill_the_rest() {
        let file = Config::parse(
            "[daemon]\niface = [\"eth9\"]\ninterval = \"5s\"\ntop_k = 3\negress = true\n",
            "test.toml",
        )
        .expect("a valid file");
        let merged = settings(
            run_args(&[
                "run",
                "--interval",
                "200ms",
                "--no-egress",
                "--xdp-mode",
                "generic",
            ]),
            file,
        );
        assert_eq!(merged.interfaces, vec!["eth9".to_owned()], "from the file");
        assert_eq!(
            merged.interval,
            Duration::from_millis(200),
            "flag over file"
        );
        assert!(!merged.egress, "--no-egress wins");
        assert_eq!(merged.xdp_mode, crate::attach::XdpMode::Generic);
        assert_eq!(merged.budget.top_k, 3, "from the file");
        assert_eq!(merged.listen, config::defaults::LISTEN, "default");
        let merged = settings(
            run_args(&["run", "--iface", "a", "--iface", "b,c"]),
            Loaded::default(),
        );
        assert_eq!(
            merged.interfaces,
            vec!["a", "b", "c"],
            "repeatable and comma lists"
        );
        assert_eq!(merged.interval, config::defaults::INTERVAL);
    }

    #[test]
    fn the_log_format_flag_overrides_the_config_file() {
        let json_file =
            Config::parse("[daemon]\nlog_format = \"json\"\n", "test.toml").expect("a valid file");
        for (name, argv, loaded, expected) in [
            ("default", &["run"][..], Loaded::default(), LogFormat::Text),
            ("from the file", &["run"], json_file, LogFormat::Json),
            (
                "flag",
                &["run", "--log-format", "json"],
                Loaded::default(),
                LogFormat::Json,
            ),
        ] {
            assert_eq!(
                log_format(&run_args(argv), &loaded),
                expected,
                "case {name}"
            );
        }
        let file =
            Config::parse("[daemon]\nlog_format = \"json\"\n", "test.toml").expect("a valid file");
        assert_eq!(
            log_format(&run_args(&["run", "--log-format", "text"]), &file),
            LogFormat::Text,
            "case flag over file"
        );
    }

    #[test]
    fn bad_flag_values_are_usage_errors() {
        for (name, argv) in [
            ("bad interval", &["portmon", "run", "--interval", "1x"][..]),
            (
                "too short interval",
                &["portmon", "run", "--interval", "1ms"],
            ),
            ("bad mode", &["portmon", "run", "--xdp-mode", "fast"]),
            ("bad address", &["portmon", "run", "--listen", "localhost"]),
            ("zero slices", &["portmon", "run", "--max-slices", "0"]),
        ] {
            assert!(
                Cli::try_parse_from(argv).is_err(),
                "case {name}: expected a usage error"
            );
        }
    }

    #[test]
    fn help_shows_examples_and_environment_variables() {
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("run")
            .expect("run exists")
            .render_long_help()
            .to_string();
        for needle in [
            "Examples:",
            "PORTMON_IFACE",
            "--interval 200ms",
            "CAP_PERFMON",
        ] {
            assert!(help.contains(needle), "expected {needle:?} in:\n{help}");
        }
    }
}
