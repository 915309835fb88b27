//! Loading what the benchmark runs: the baseline object and portmon in each layout.

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    programs::{Program, Xdp},
};
use portmon::{
    bench_programs::{BENCH_OBJECT, HASHMAP_PROGRAM, PARSE_PROGRAM, PASS_PROGRAM, TX_PROGRAM},
    dataplane::{DataPlane, LoadOptions},
};

/// The benchmark-only object: a bare pass program, the parser alone, the hash-map
/// counter, the flood generator.
pub struct BenchObject {
    ebpf: Ebpf,
}

impl BenchObject {
    /// Loads the object and every program in it.
    ///
    /// # Errors
    /// When the kernel refuses the object or a program.
    pub fn load() -> anyhow::Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load(BENCH_OBJECT)
            .context("loading the benchmark eBPF object")?;
        for name in [PASS_PROGRAM, PARSE_PROGRAM, HASHMAP_PROGRAM, TX_PROGRAM] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("the benchmark object has no program {name}"))?
                .try_into()
                .with_context(|| format!("{name} is not an XDP program"))?;
            program
                .load()
                .with_context(|| format!("the verifier rejected {name}"))?;
        }
        Ok(Self { ebpf })
    }

    /// A program of the object.
    ///
    /// # Errors
    /// When it is missing.
    pub fn xdp(&self, name: &str) -> anyhow::Result<&Xdp> {
        xdp(&self.ebpf, name)
    }

    /// A program of the object, to attach it.
    ///
    /// # Errors
    /// When it is missing.
    pub fn xdp_mut(&mut self, name: &str) -> anyhow::Result<&mut Xdp> {
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("no program {name}"))?
            .try_into()
            .with_context(|| format!("{name} is not an XDP program"))
    }
}

/// `name` in `ebpf`, as an XDP program.
///
/// # Errors
/// When it is missing or of another type.
pub fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<&'a Xdp> {
    let program: &Program = ebpf
        .program(name)
        .ok_or_else(|| anyhow!("no program {name}"))?;
    program
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))
}

/// Which layout of portmon's counter map to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// This host's default: one slice per CPU, plain adds.
    Default,
    /// As on a 256-CPU host: capped at 8 slices shared with atomic adds. On this 2-CPU
    /// machine CPU 0 and CPU 1 still write different slices.
    Capped256,
    /// One slice for every CPU: both CPUs really share it, with atomic adds.
    SharedOneSlice,
}

impl Layout {
    /// The load options that give this layout.
    #[must_use]
    pub fn options(self) -> LoadOptions {
        match self {
            Layout::Default => LoadOptions::default(),
            Layout::Capped256 => LoadOptions {
                possible_cpus: Some(256),
                ..LoadOptions::default()
            },
            Layout::SharedOneSlice => LoadOptions {
                max_slices: 1,
                ..LoadOptions::default()
            },
        }
    }

    /// Loads portmon in this layout.
    ///
    /// # Errors
    /// When loading fails.
    pub fn load(self) -> anyhow::Result<DataPlane> {
        DataPlane::load(self.options())
            .with_context(|| format!("loading portmon with the {self:?} layout"))
    }
}
