//! Command-line interface (placeholder until the daemon lands: attach and print counters).

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use aya::programs::TcAttachType;
use clap::Parser;
use monitor_common::layout::{Direction, L4};

use crate::{
    attach::{self, XdpMode},
    dataplane::{DataPlane, LoadOptions, TC_EGRESS_PROGRAM},
};

/// portmon: per-port traffic counters from XDP and TC.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Interface to attach to.
    #[arg(long, env = "PORTMON_IFACE")]
    iface: String,
    /// Seconds between reads.
    #[arg(long, default_value_t = 1)]
    interval: u64,
}

/// Runs the CLI and maps errors to an exit code.
#[must_use]
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portmon: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let mut data_plane =
        DataPlane::load(LoadOptions::default()).context("loading the eBPF programs")?;
    attach::attach_xdp(&mut data_plane, &cli.iface, XdpMode::Auto)?;
    attach::attach_tc(
        &mut data_plane,
        &cli.iface,
        TC_EGRESS_PROGRAM,
        TcAttachType::Egress,
    )?;
    let counters = data_plane.counters()?;
    loop {
        std::thread::sleep(Duration::from_secs(cli.interval));
        let totals = counters.read();
        for direction in Direction::ALL {
            for l4 in L4::ALL {
                for (port, counter) in totals.active_ports(direction, l4) {
                    println!("{} {} {port}: {counter:?}", direction.as_str(), l4.as_str());
                }
            }
        }
    }
}
