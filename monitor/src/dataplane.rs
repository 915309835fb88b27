//! Loading the kernel programs: sizing the counter map for this host, setting the
//! load-time globals, and forwarding kernel-side log records.

use aya::{
    Ebpf, EbpfLoader,
    maps::Map,
    programs::{ProgramError, links::FdLink},
};
use log::{info, warn};
use monitor_common::layout::{
    self, COUNTERS_MAP, DEFAULT_MAX_SLICES, GLOBAL_DEBUG, GLOBAL_PAYLOAD, GLOBAL_SLICE_COUNT,
    PAYLOAD_MAP, PINNED_MAPS, SlicePlan,
};

use crate::{
    counters::{CounterMap, CounterMapError},
    payload_map::{PayloadMapError, PayloadTracker},
    pin::PinDir,
};

/// The kernel programs, compiled by `build.rs` for the BPF target.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/portmon"));

/// Program names in the object.
pub const XDP_PROGRAM: &str = "portmon_xdp";
/// The TC egress program.
pub const TC_EGRESS_PROGRAM: &str = "portmon_tc_egress";
/// The TC ingress program (used where the XDP hook is taken).
pub const TC_INGRESS_PROGRAM: &str = "portmon_tc_ingress";

/// The object's build of program `name` (one of the names above) for `shared` slices.
/// Every program comes in two builds, one per kind of slice, so that the kind costs the
/// packet path nothing; only the build the slice plan needs is loaded.
#[must_use]
pub fn program_build(name: &'static str, shared: bool) -> &'static str {
    match (name, shared) {
        (XDP_PROGRAM, true) => "portmon_xdp_shared",
        (TC_EGRESS_PROGRAM, true) => "portmon_tc_egress_shared",
        (TC_INGRESS_PROGRAM, true) => "portmon_tc_ingress_shared",
        _ => name,
    }
}

/// The largest slice cap accepted: keeps `slices * SLICE_ENTRIES` within `u32`.
pub const MAX_SLICES_LIMIT: u32 = 1024;

/// How to load the programs.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Cap on counter slices (see `monitor_common::layout`).
    pub max_slices: u32,
    /// Per-packet debug logging in the kernel programs.
    pub debug: bool,
    /// Override of the number of possible CPUs, for memory benchmarks; `None` reads sysfs.
    pub possible_cpus: Option<u32>,
    /// Payload classification of tracked ports; `false` removes it from the programs.
    pub payload: bool,
}

impl LoadOptions {
    /// The slice plan these options give on this host.
    ///
    /// # Errors
    /// An out-of-range slice cap, or an unreadable possible-CPU count.
    pub fn plan(&self) -> Result<SlicePlan, LoadError> {
        if self.max_slices == 0 || self.max_slices > MAX_SLICES_LIMIT {
            return Err(LoadError::MaxSlices(self.max_slices));
        }
        let possible_cpus = match self.possible_cpus {
            Some(cpus) => cpus,
            None => aya::util::nr_cpus()
                .map(|cpus| u32::try_from(cpus).unwrap_or(u32::MAX))
                .map_err(|(path, source)| LoadError::PossibleCpus { path, source })?,
        };
        Ok(layout::slice_plan(possible_cpus, self.max_slices))
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_slices: DEFAULT_MAX_SLICES,
            debug: false,
            possible_cpus: None,
            payload: true,
        }
    }
}

/// Errors while loading the data plane.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The possible-CPU count could not be read.
    #[error("reading {path}: {source}")]
    PossibleCpus {
        /// The sysfs file.
        path: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The slice cap is out of range.
    #[error("max slices must be between 1 and {MAX_SLICES_LIMIT}, got {0}")]
    MaxSlices(u32),
    /// The object could not be loaded (map creation, relocation, BTF).
    #[error("loading the eBPF object: {0}")]
    Ebpf(#[from] aya::EbpfError),
    /// A program is missing from the object or was rejected by the verifier.
    #[error("loading program {name}: {source}")]
    Program {
        /// The program.
        name: &'static str,
        /// Why.
        source: ProgramError,
    },
    /// The counter map is missing or could not be mapped.
    #[error(transparent)]
    Counters(#[from] CounterMapError),
    /// A payload map is missing or could not be mapped.
    #[error(transparent)]
    Payload(#[from] PayloadMapError),
}

/// The loaded (not yet attached) kernel programs and their counter map.
pub struct DataPlane {
    /// Pinned links this process attached (see [`crate::pin::links`]); closing them leaves
    /// them attached while they are pinned.
    links: Vec<FdLink>,
    ebpf: Ebpf,
    plan: SlicePlan,
    logger: Option<KernelLogger>,
}

/// Reader of the kernel programs' aya-log records; poll it when its fd is readable.
pub type KernelLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

impl DataPlane {
    /// Loads every program and creates the counter map sized for this host.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn load(options: LoadOptions) -> Result<Self, LoadError> {
        Self::load_with(options, None, OBJECT)
    }

    /// Like [`DataPlane::load`], from another build of the kernel programs: for the
    /// benchmark's A/B comparison of two builds in one run. The object must define the
    /// same maps and globals as this build's.
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn load_object(options: LoadOptions, object: &[u8]) -> Result<Self, LoadError> {
        Self::load_with(options, None, object)
    }

    /// Like [`DataPlane::load`], with every map of [`PINNED_MAPS`] opened from `pins` when
    /// pinned there, and created and pinned there otherwise. `pins` must have been opened
    /// for `options.plan()` (its layout name vouches for the maps it holds).
    ///
    /// # Errors
    /// See [`LoadError`].
    pub fn load_pinned(options: LoadOptions, pins: &PinDir) -> Result<Self, LoadError> {
        Self::load_with(options, Some(pins), OBJECT)
    }

    fn load_with(
        options: LoadOptions,
        pins: Option<&PinDir>,
        object: &[u8],
    ) -> Result<Self, LoadError> {
        let plan = options.plan()?;
        let debug = u32::from(options.debug);
        let payload = u32::from(options.payload);
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(COUNTERS_MAP, plan.map_entries())
            .map_max_entries(PAYLOAD_MAP, plan.payload_map_entries())
            .override_global(GLOBAL_SLICE_COUNT, &plan.slices, true)
            .override_global(GLOBAL_DEBUG, &debug, true)
            .override_global(GLOBAL_PAYLOAD, &payload, true);
        if let Some(pins) = pins {
            for &name in PINNED_MAPS {
                loader.map_pin_path(name, pins.map_path(name));
            }
        }
        let mut ebpf = loader.load(object)?;
        info!(
            "counter map: {} slices ({}), {} KiB{}",
            plan.slices,
            if plan.shared {
                "shared, atomic adds"
            } else {
                "one per CPU"
            },
            plan.map_bytes() / 1024,
            match pins {
                Some(pins) if pins.reused() => {
                    format!(", reused from {} (counters continue)", pins.dir().display())
                }
                Some(pins) => format!(", pinned at {}", pins.dir().display()),
                None => String::new(),
            }
        );
        // The logger owns the log ring map: it must outlive program loading, or the
        // programs would reference a closed map fd.
        let logger = aya_log::EbpfLogger::init(&mut ebpf)
            .inspect_err(|error| {
                // Only the kernel-side log is lost; counting is unaffected.
                warn!("kernel-side logging unavailable: {error}");
            })
            .ok();
        let mut data_plane = Self {
            links: Vec::new(),
            ebpf,
            plan,
            logger,
        };
        data_plane.load_programs()?;
        Ok(data_plane)
    }

    fn load_programs(&mut self) -> Result<(), LoadError> {
        let shared = self.plan.shared;
        let xdp = self.xdp_mut()?;
        xdp.load().map_err(|source| LoadError::Program {
            name: program_build(XDP_PROGRAM, shared),
            source,
        })?;
        for name in [TC_EGRESS_PROGRAM, TC_INGRESS_PROGRAM] {
            let tc = self.classifier_mut(name)?;
            tc.load().map_err(|source| LoadError::Program {
                name: program_build(name, shared),
                source,
            })?;
        }
        Ok(())
    }

    /// The kernel-side log reader, for the daemon to poll. `None` once taken, or when
    /// the kernel could not provide one.
    pub fn take_logger(&mut self) -> Option<KernelLogger> {
        self.logger.take()
    }

    /// The slice plan the counter map was sized with.
    #[must_use]
    pub fn plan(&self) -> SlicePlan {
        self.plan
    }

    /// The XDP ingress program.
    ///
    /// # Errors
    /// When the object lacks it (a build problem).
    pub fn xdp_mut(&mut self) -> Result<&mut aya::programs::Xdp, LoadError> {
        program_mut(&mut self.ebpf, program_build(XDP_PROGRAM, self.plan.shared))
    }

    /// A TC program by name ([`TC_EGRESS_PROGRAM`] or [`TC_INGRESS_PROGRAM`]), in the
    /// build for this data plane's slices.
    ///
    /// # Errors
    /// When the object lacks it (a build problem).
    pub fn classifier_mut(
        &mut self,
        name: &'static str,
    ) -> Result<&mut aya::programs::SchedClassifier, LoadError> {
        program_mut(&mut self.ebpf, program_build(name, self.plan.shared))
    }

    /// Maps the counter map for reading.
    ///
    /// # Errors
    /// When the map is missing or `mmap` fails.
    pub fn counters(&self) -> Result<CounterMap, LoadError> {
        let Some(Map::Array(data)) = self.ebpf.map(COUNTERS_MAP) else {
            return Err(CounterMapError::Missing(COUNTERS_MAP).into());
        };
        Ok(CounterMap::new(data, self.plan)?)
    }

    /// Keeps `link` (a pinned link this process attached) open as long as the data plane.
    pub fn hold_link(&mut self, link: FdLink) {
        self.links.push(link);
    }

    /// Closes every pinned link held: once they are unpinned too, they detach (used when
    /// an interface's hooks are detached alone, daemon/hooks.rs).
    pub fn release_links(&mut self) {
        self.links.clear();
    }

    /// Maps the payload maps, to choose the tracked ports and read their counts.
    ///
    /// Both maps are mapped once here: writing a slot and reading the counts later need no
    /// `bpf()` call, so they keep working after the daemon drops its capabilities.
    ///
    /// # Errors
    /// When a map is missing, has another layout, or `mmap` fails.
    pub fn payload_tracker(&self) -> Result<PayloadTracker, LoadError> {
        Ok(PayloadTracker::new(&self.ebpf, self.plan)?)
    }

    /// The underlying object, for tests and benchmarks that run programs directly.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(LoadError::Program {
        name,
        source: ProgramError::UnexpectedProgramType,
    })?;
    program
        .try_into()
        .map_err(|source| LoadError::Program { name, source })
}
