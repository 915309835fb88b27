//! Kernel memory of portmon's maps for a number of possible CPUs, as the kernel reports
//! it (`memlock:` in `/proc/self/fdinfo/<map fd>`, the map's `bpf_map_memory_usage`,
//! kernel 6.4+), next to the layout's own formula.

use std::{
    collections::BTreeSet,
    os::fd::{AsFd as _, AsRawFd as _},
};

use anyhow::{Context as _, anyhow};
use aya::maps::MapInfo;
use monitor_common::layout::COUNTERS_MAP;
use portmon::dataplane::{
    DataPlane, LoadOptions, TC_EGRESS_PROGRAM, TC_INGRESS_PROGRAM, XDP_PROGRAM,
};

/// What the maps of one load cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapMemory {
    /// Possible CPUs the load was sized for.
    pub possible_cpus: u32,
    /// Slices of the counter map.
    pub slices: u32,
    /// The layout's formula for the counter map: slices x SLICE_ENTRIES x 24 B.
    pub counters_formula: u64,
    /// What the kernel charges for the counter map.
    pub counters_kernel: u64,
    /// What the kernel charges for every map the programs use (counters, globals, log ring).
    pub all_maps_kernel: u64,
}

/// `memlock:` of a BPF map fd, from `/proc/self/fdinfo`.
fn memlock(info: &MapInfo) -> anyhow::Result<u64> {
    let fd = info.fd().context("opening the map by id")?;
    let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| anyhow!("{path} has no memlock line"))
}

/// Loads portmon sized for `possible_cpus` and asks the kernel what its maps cost.
///
/// # Errors
/// When loading or the map queries fail.
pub fn measure(possible_cpus: u32) -> anyhow::Result<MapMemory> {
    let mut data_plane = DataPlane::load(LoadOptions {
        possible_cpus: Some(possible_cpus),
        ..LoadOptions::default()
    })
    .with_context(|| format!("loading portmon for {possible_cpus} possible CPUs"))?;
    let plan = data_plane.plan();
    let mut map_ids = BTreeSet::new();
    let xdp_info = data_plane.xdp_mut()?.info()?;
    map_ids.extend(xdp_info.map_ids()?.unwrap_or_default());
    for name in [TC_EGRESS_PROGRAM, TC_INGRESS_PROGRAM] {
        let info = data_plane.classifier_mut(name)?.info()?;
        map_ids.extend(info.map_ids()?.unwrap_or_default());
    }
    // The kernel keeps the first 15 bytes of a map's name.
    let short_name = &COUNTERS_MAP[..COUNTERS_MAP.len().min(15)];
    let mut counters_kernel = None;
    let mut all_maps_kernel = 0;
    for id in map_ids {
        let info = MapInfo::from_id(id).with_context(|| format!("querying map {id}"))?;
        let bytes = memlock(&info)?;
        all_maps_kernel += bytes;
        if info.name_as_str() == Some(short_name) {
            counters_kernel = Some(bytes);
        }
    }
    Ok(MapMemory {
        possible_cpus,
        slices: plan.slices,
        counters_formula: plan.map_bytes(),
        counters_kernel: counters_kernel
            .ok_or_else(|| anyhow!("the XDP program ({XDP_PROGRAM}) uses no {COUNTERS_MAP}"))?,
        all_maps_kernel,
    })
}
