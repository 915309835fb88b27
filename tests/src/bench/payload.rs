//! What payload classification costs, measured like every other kernel figure: the same
//! BPF_PROG_TEST_RUN method ([`cost`]), interleaved, pinned to one CPU, medians over runs.
//!
//! Two loads of the real `portmon_xdp`, identical but for the load-time switch
//! (`LoadOptions::payload`), both with the ports of [`frames::payload_mix`] tracked:
//!
//! * `payload_added_ns`: on minus off over the payload mix (every signature and an
//!   encrypted segment, all to tracked ports): the slot lookup, the reads, the
//!   classification and the count;
//! * `no_payload_added_ns`: on minus off over the no-payload mix: what the payload path
//!   costs packets it has nothing to classify in (the `payload_len` test);
//! * `mix_payload_added_ns`: on minus off over the standard 7-frame mix, none of whose
//!   ports is tracked: what the payload path adds to `portmon_ns` (two of its frames carry a
//!   payload and pay the slot lookup).

use anyhow::Context as _;
use monitor_common::layout::Direction;
use portmon::{
    dataplane::{DataPlane, LoadOptions},
    payload_map::Tracking,
};

use super::{
    cost::{self, Contestant, Cost},
    frames::{self, MixFrame},
    report::{Figure, median},
};

/// The two loads compared.
pub struct Planes {
    on: DataPlane,
    off: DataPlane,
}

impl Planes {
    /// Loads portmon with classification on and off, tracking the payload mix's ports in
    /// both.
    ///
    /// # Errors
    /// When loading or tracking fails.
    pub fn load() -> anyhow::Result<Self> {
        let load = |payload: bool| -> anyhow::Result<DataPlane> {
            let data_plane = DataPlane::load(LoadOptions {
                payload,
                ..LoadOptions::default()
            })
            .with_context(|| format!("loading portmon with payload classification {payload}"))?;
            let mut tracker = data_plane.payload_tracker()?;
            for (l4, port) in frames::PAYLOAD_MIX_PORTS {
                let tracking = tracker.track(Direction::Ingress, l4, port)?;
                anyhow::ensure!(
                    matches!(tracking, Tracking::New(_)),
                    "tracking {l4:?} {port}: expected a new slot, got {tracking:?}"
                );
            }
            Ok(data_plane)
        };
        Ok(Self {
            on: load(true)?,
            off: load(false)?,
        })
    }
}

/// What one run measured: (off, on) over each mix.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    with_payload: (Cost, Cost),
    without_payload: (Cost, Cost),
    standard: (Cost, Cost),
}

/// One run over both mixes, on one CPU.
///
/// # Errors
/// When a test run fails.
pub fn measure(
    planes: &mut Planes,
    payload_mix: &[MixFrame],
    no_payload_mix: &[MixFrame],
    standard_mix: &[MixFrame],
    repeat: u32,
    rotation: usize,
) -> anyhow::Result<Run> {
    let contestants = [
        Contestant {
            name: "payload_off",
            program: planes.off.xdp_mut()?,
        },
        Contestant {
            name: "payload_on",
            program: planes.on.xdp_mut()?,
        },
    ];
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                super::cpu::pin_to(1 % super::cpu::usable_cpus())?;
                let pair = |mix: &[MixFrame]| -> anyhow::Result<(Cost, Cost)> {
                    let run = cost::run(&contestants, mix, repeat, rotation)?;
                    match run.totals.as_slice() {
                        [off, on] => Ok((*off, *on)),
                        _ => anyhow::bail!("expected two costs, got {}", run.totals.len()),
                    }
                };
                Ok(Run {
                    with_payload: pair(payload_mix)?,
                    without_payload: pair(no_payload_mix)?,
                    standard: pair(standard_mix)?,
                })
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the payload cost thread panicked")))
    })
}

/// The figures, medians over `runs`.
#[must_use]
pub fn figures(runs: &[Run]) -> Vec<Figure> {
    let added = |pick: fn(&Run) -> (Cost, Cost)| {
        let values: Vec<f64> = runs
            .iter()
            .map(|run| {
                let (off, on) = pick(run);
                on.cpu_ns - off.cpu_ns
            })
            .collect();
        median(&values)
    };
    let off = |pick: fn(&Run) -> (Cost, Cost)| {
        let values: Vec<f64> = runs.iter().map(|run| pick(run).0.cpu_ns).collect();
        median(&values)
    };
    vec![
        Figure::info(
            "payload_added_ns",
            added(|run| run.with_payload),
            "ns",
            "classification on - off, 7-frame payload mix to tracked ports",
        ),
        Figure::info(
            "no_payload_added_ns",
            added(|run| run.without_payload),
            "ns",
            "classification on - off, packets without payload",
        ),
        Figure::info(
            "mix_payload_added_ns",
            added(|run| run.standard),
            "ns",
            "classification on - off, standard mix, nothing of it tracked",
        ),
        Figure::info(
            "payload_mix_off_ns",
            off(|run| run.with_payload),
            "ns",
            "portmon_xdp on the payload mix, classification off",
        ),
    ]
}
