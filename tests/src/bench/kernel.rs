//! The kernel benchmark: every figure of issue 2's "Benchmark: `cargo xtask bench kernel`",
//! measured over several runs with the programs interleaved inside each run.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use portmon::{
    bench_programs::{HASHMAP_PROGRAM, PARSE_PROGRAM, PASS_PROGRAM},
    dataplane::{DataPlane, LoadOptions},
};

use super::{
    contention,
    cost::{self, Contestant, Cost},
    floods, frames, memory, payload,
    programs::{BenchObject, Layout},
    report::{Figure, Target, median},
    veth::VethPair,
};

/// How much to measure.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Runs; every figure is the median over them.
    pub runs: usize,
    /// BPF_PROG_TEST_RUN repeats per frame of the mix, per program and run.
    pub cost_repeat: u32,
    /// Repeats per thread for each contention measurement.
    pub contention_repeat: u32,
    /// Frames per live flood.
    pub live_frames: u64,
    /// Bound on each flood's duration.
    pub live_time_limit: Duration,
    /// Skip the veth floods (live and AF_PACKET figures).
    pub skip_live: bool,
    /// Also print each program's cost per frame of the mix (diagnostics).
    pub per_frame: bool,
    /// Another build of portmon's kernel object, measured as one more contestant (`alt`)
    /// in the same runs: the A/B comparison of two builds that this noisy host needs.
    pub alt_object: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            runs: 5,
            // 7 frames x 1.5e6 = 1.05e7 packets per program per run.
            cost_repeat: 1_500_000,
            contention_repeat: 2_000_000,
            live_frames: 1_000_000,
            live_time_limit: Duration::from_secs(20),
            skip_live: false,
            per_frame: false,
            alt_object: None,
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
struct Run {
    bare: Option<Cost>,
    parse: Option<Cost>,
    portmon: Option<Cost>,
    hashmap: Option<Cost>,
    capped: Option<Cost>,
    alt: Option<Cost>,
    contention_default: f64,
    contention_capped: f64,
    contention_shared: f64,
    live: Option<floods::LiveRun>,
    per_frame: Vec<Vec<f64>>,
    payload: Option<payload::Run>,
}

/// Everything loaded once for all runs.
struct Loaded {
    bench: BenchObject,
    portmon: DataPlane,
    capped: DataPlane,
    shared: DataPlane,
    payload: payload::Planes,
}

/// Runs the benchmark and returns its figures, in table order.
///
/// # Errors
/// When a measurement cannot be made (loading, a syscall, the network setup). A figure
/// that misses its target is not an error.
pub fn run(settings: &Settings) -> anyhow::Result<Vec<Figure>> {
    if settings.runs == 0 {
        bail!("at least one run is needed");
    }
    let mix = frames::mix();
    frames::check_mix(&mix).map_err(anyhow::Error::msg)?;
    let payload_mix = frames::payload_mix();
    frames::check_mix(&payload_mix).map_err(anyhow::Error::msg)?;
    let no_payload_mix = frames::no_payload_mix();
    frames::check_mix(&no_payload_mix).map_err(anyhow::Error::msg)?;
    let mut loaded = Loaded {
        bench: BenchObject::load()?,
        portmon: Layout::Default.load()?,
        capped: Layout::Capped256.load()?,
        shared: Layout::SharedOneSlice.load()?,
        payload: payload::Planes::load()?,
    };
    let pair = if settings.skip_live {
        None
    } else {
        Some(VethPair::create().context("creating the veth pair for the live floods")?)
    };
    let mut runs = Vec::with_capacity(settings.runs);
    for index in 0..settings.runs {
        let started = Instant::now();
        let mut run = Run::default();
        measure_cost(&mix, settings, index, &mut run)?;
        run.payload = Some(payload::measure(
            &mut loaded.payload,
            &payload_mix,
            &no_payload_mix,
            &mix,
            settings.cost_repeat,
            index,
        )?);
        measure_contention(&mut loaded, settings, index, &mut run)?;
        if let Some(pair) = &pair {
            run.live = Some(floods::measure(
                &mut loaded.bench,
                &mut loaded.portmon,
                pair,
                settings.live_frames,
                settings.live_time_limit,
                index,
            )?);
        }
        eprintln!(
            "bench: run {}/{} done in {:.1} s",
            index + 1,
            settings.runs,
            started.elapsed().as_secs_f64()
        );
        runs.push(run);
    }
    drop(pair);
    if settings.per_frame {
        print_per_frame(&mix, &runs);
    }
    let mut figures = cost_figures(&runs);
    if settings.alt_object.is_some() {
        figures.extend(alt_figures(&runs));
    }
    let payload_runs: Vec<payload::Run> = runs.iter().filter_map(|run| run.payload).collect();
    figures.extend(payload::figures(&payload_runs));
    figures.extend(contention_figures(&runs));
    let lives: Vec<floods::LiveRun> = runs.iter().filter_map(|run| run.live.clone()).collect();
    let portmon_overhead = figures
        .iter()
        .find(|figure| figure.name == "portmon_overhead_ns")
        .map_or(f64::NAN, |figure| figure.value);
    figures.extend(floods::figures(&lives, portmon_overhead));
    figures.extend(memory_figures()?);
    Ok(figures)
}

fn measure_cost(
    mix: &[frames::MixFrame],
    settings: &Settings,
    index: usize,
    run: &mut Run,
) -> anyhow::Result<()> {
    // Programs loaded afresh for every run: each load gets a JIT image of its own at an
    // address of its own, and two loads of the same object measured side by side in one
    // run differed by up to 0.4 ns per packet on a quiet host. A median over runs is then
    // also a median over loads, not one load's luck.
    let bench = BenchObject::load()?;
    let mut portmon = Layout::Default.load()?;
    let mut capped = Layout::Capped256.load()?;
    let mut alt = settings.alt_object.as_deref().map(load_alt).transpose()?;
    let mut contestants = vec![
        Contestant {
            name: "bare",
            program: bench.xdp(PASS_PROGRAM)?,
        },
        Contestant {
            name: "parse",
            program: bench.xdp(PARSE_PROGRAM)?,
        },
        Contestant {
            name: "portmon",
            program: portmon.xdp_mut()?,
        },
        Contestant {
            name: "hashmap",
            program: bench.xdp(HASHMAP_PROGRAM)?,
        },
        Contestant {
            name: "portmon_capped",
            program: capped.xdp_mut()?,
        },
    ];
    if let Some(alt) = &mut alt {
        contestants.push(Contestant {
            name: "alt",
            program: alt.xdp_mut()?,
        });
    }
    // On one CPU, so that a migration never splits a measurement.
    let measured = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                super::cpu::pin_to(1 % super::cpu::usable_cpus())?;
                cost::run(&contestants, mix, settings.cost_repeat, index)
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the cost thread panicked")))
    })?;
    let costs = &measured.totals;
    run.bare = costs.first().copied();
    run.parse = costs.get(1).copied();
    run.portmon = costs.get(2).copied();
    run.hashmap = costs.get(3).copied();
    run.capped = costs.get(4).copied();
    run.alt = costs.get(5).copied();
    run.per_frame = measured.per_frame;
    Ok(())
}

/// The contestants of [`measure_cost`], in order, for the per-frame table.
const CONTESTANTS: [&str; 6] = ["bare", "parse", "portmon", "hashmap", "capped", "alt"];

fn print_per_frame(mix: &[frames::MixFrame], runs: &[Run]) {
    let measured = runs
        .first()
        .and_then(|run| run.per_frame.first())
        .map_or(0, Vec::len)
        .min(CONTESTANTS.len());
    eprint!("{:<28}", "ns per packet (median)");
    for name in &CONTESTANTS[..measured] {
        eprint!("{name:>10}");
    }
    eprintln!();
    for (index, frame) in mix.iter().enumerate() {
        eprint!("{:<28}", frame.name);
        for contestant in 0..measured {
            let ns = medians(runs, |run| {
                run.per_frame.get(index)?.get(contestant).copied()
            });
            eprint!("{ns:>10.1}");
        }
        eprintln!();
    }
}

fn measure_contention(
    loaded: &mut Loaded,
    settings: &Settings,
    index: usize,
    run: &mut Run,
) -> anyhow::Result<()> {
    let flip = index % 2 == 1;
    let repeat = settings.contention_repeat;
    run.contention_default = contention::same_vs_distinct(loaded.portmon.xdp_mut()?, repeat, flip)?;
    run.contention_capped = contention::same_vs_distinct(loaded.capped.xdp_mut()?, repeat, flip)?;
    run.contention_shared = contention::same_vs_distinct(loaded.shared.xdp_mut()?, repeat, flip)?;
    Ok(())
}

fn medians<T>(runs: &[T], value: impl Fn(&T) -> Option<f64>) -> f64 {
    let values: Vec<f64> = runs.iter().filter_map(value).collect();
    median(&values)
}

fn cost_figures(runs: &[Run]) -> Vec<Figure> {
    let ns = |pick: fn(&Run) -> Option<Cost>| medians(runs, |run| pick(run).map(|c| c.cpu_ns));
    let over = |pick: fn(&Run) -> Option<Cost>| {
        medians(runs, |run| Some(pick(run)?.cpu_ns - run.bare?.cpu_ns))
    };
    let portmon_overhead = over(|run| run.portmon);
    let hashmap_overhead = over(|run| run.hashmap);
    let ratio = medians(runs, |run| {
        let bare = run.bare?.cpu_ns;
        Some((run.portmon?.cpu_ns - bare) / (run.hashmap?.cpu_ns - bare))
    });
    let kernel = |pick: fn(&Run) -> Option<Cost>| {
        medians(runs, |run| Some(pick(run)?.kernel_ns - run.bare?.kernel_ns))
    };
    let mix_note = "TEST_RUN, 7-frame mix, median of runs";
    vec![
        Figure::info("bare_ns", ns(|run| run.bare), "ns", mix_note),
        Figure::info("portmon_ns", ns(|run| run.portmon), "ns", mix_note),
        Figure::info(
            "parse_ns",
            ns(|run| run.parse),
            "ns",
            "the shared parser alone, counting nothing",
        ),
        Figure::info("hashmap_ns", ns(|run| run.hashmap), "ns", mix_note),
        Figure::info(
            "portmon_capped_ns",
            ns(|run| run.capped),
            "ns",
            "256 possible CPUs: 8 slices, atomic adds",
        ),
        Figure::checked(
            "portmon_overhead_ns",
            portmon_overhead,
            "ns",
            Target::AtMost(6.0),
            "portmon_ns - bare_ns, same run",
        ),
        Figure::info(
            "hashmap_overhead_ns",
            hashmap_overhead,
            "ns",
            "hashmap_ns - bare_ns, same run",
        ),
        Figure::checked(
            "overhead_ratio",
            ratio,
            "ratio",
            Target::AtMost(0.2),
            "portmon overhead / hashmap overhead",
        ),
        Figure::info(
            "portmon_count_ns",
            medians(runs, |run| Some(run.portmon?.cpu_ns - run.parse?.cpu_ns)),
            "ns",
            "portmon_ns - parse_ns: the counting alone",
        ),
        Figure::info(
            "hashmap_count_ns",
            medians(runs, |run| Some(run.hashmap?.cpu_ns - run.parse?.cpu_ns)),
            "ns",
            "hashmap_ns - parse_ns: the counting alone",
        ),
        Figure::info(
            "count_ratio",
            medians(runs, |run| {
                let parse = run.parse?.cpu_ns;
                Some((run.portmon?.cpu_ns - parse) / (run.hashmap?.cpu_ns - parse))
            }),
            "ratio",
            "portmon_count_ns / hashmap_count_ns: the maps alone",
        ),
        Figure::info(
            "portmon_capped_overhead_ns",
            over(|run| run.capped),
            "ns",
            "portmon_capped_ns - bare_ns",
        ),
        Figure::info(
            "portmon_overhead_kernel_ns",
            kernel(|run| run.portmon),
            "ns",
            "cross-check from the kernel's duration (whole ns)",
        ),
        Figure::info(
            "hashmap_overhead_kernel_ns",
            kernel(|run| run.hashmap),
            "ns",
            "cross-check from the kernel's duration (whole ns)",
        ),
    ]
}

/// Loads the `--alt-object` build in the default layout.
fn load_alt(path: &std::path::Path) -> anyhow::Result<DataPlane> {
    let object = std::fs::read(path)
        .with_context(|| format!("reading the --alt-object build {}", path.display()))?;
    DataPlane::load_object(LoadOptions::default(), &object).with_context(|| {
        format!(
            "loading {} (it must be a portmon kernel object with this build's maps and globals)",
            path.display()
        )
    })
}

fn alt_figures(runs: &[Run]) -> Vec<Figure> {
    vec![
        Figure::info(
            "alt_overhead_ns",
            medians(runs, |run| Some(run.alt?.cpu_ns - run.bare?.cpu_ns)),
            "ns",
            "--alt-object build: alt_ns - bare_ns, same run",
        ),
        Figure::info(
            "alt_minus_portmon_ns",
            medians(runs, |run| Some(run.alt?.cpu_ns - run.portmon?.cpu_ns)),
            "ns",
            "--alt-object build against this build, same run (negative: alt is cheaper)",
        ),
    ]
}

fn contention_figures(runs: &[Run]) -> Vec<Figure> {
    vec![
        Figure::checked(
            "same_port_vs_distinct_ratio",
            medians(runs, |run| Some(run.contention_default)),
            "ratio",
            Target::AtLeast(0.9),
            "2 CPUs, default layout (a slice per CPU)",
        ),
        Figure::info(
            "same_port_vs_distinct_ratio_capped",
            medians(runs, |run| Some(run.contention_capped)),
            "ratio",
            "256-CPU layout; CPUs 0 and 1 write different slices",
        ),
        Figure::info(
            "same_port_vs_distinct_ratio_shared",
            medians(runs, |run| Some(run.contention_shared)),
            "ratio",
            "max_slices 1: both CPUs share one slice (atomics)",
        ),
    ]
}

fn memory_figures() -> anyhow::Result<Vec<Figure>> {
    const MIB: f64 = 1024.0 * 1024.0;
    let mut figures = Vec::new();
    for (cpus, target) in [(2, Some(16.0 * MIB)), (64, None), (256, Some(64.0 * MIB))] {
        let measured = memory::measure(cpus)?;
        #[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
        let (kernel, formula) = (
            measured.all_maps_kernel as f64,
            measured.counters_formula as f64,
        );
        let note = format!(
            "kernel memlock, all maps; counters {} slices: formula {:.1} MiB, kernel {:.1} MiB",
            measured.slices,
            formula / MIB,
            {
                #[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
                let counters = measured.counters_kernel as f64;
                counters / MIB
            }
        );
        let name = format!("map_bytes_{cpus}cpu");
        figures.push(match target {
            Some(bound) => Figure::checked(&name, kernel, "bytes", Target::AtMost(bound), &note),
            None => Figure::info(&name, kernel, "bytes", &note),
        });
    }
    Ok(figures)
}
