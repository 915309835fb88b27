//! What /proc says about the daemon: CPU time consumed so far and resident memory.

use std::{fs, time::Instant};

use anyhow::{Context as _, anyhow};

/// The daemon's CPU time at one instant, read two ways.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    /// When it was read.
    pub at: Instant,
    /// `sum_exec_runtime` of every thread (`/proc/<pid>/task/*/schedstat`, first field), ns.
    pub exec_ns: u64,
    /// `utime + stime` of the process (`/proc/<pid>/stat`), in clock ticks.
    pub ticks: u64,
}

/// Reads [`CpuSample`] for `pid`.
///
/// # Errors
/// When /proc cannot be read (the process exited) or has an unexpected shape.
pub fn cpu(pid: u32) -> anyhow::Result<CpuSample> {
    let at = Instant::now();
    let mut exec_ns = 0;
    let tasks = format!("/proc/{pid}/task");
    for task in fs::read_dir(&tasks).with_context(|| format!("listing {tasks}"))? {
        let path = task?.path().join("schedstat");
        // A thread that exited between the listing and the read has nothing left to count.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        exec_ns += text
            .split_whitespace()
            .next()
            .and_then(|field| field.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("{} holds {text:?}", path.display()))?;
    }
    let stat_path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&stat_path).with_context(|| format!("reading {stat_path}"))?;
    Ok(CpuSample {
        at,
        exec_ns,
        ticks: stat_ticks(&stat).ok_or_else(|| anyhow!("{stat_path} holds {stat:?}"))?,
    })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn stat_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
#[must_use]
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// CPU used between two samples as a percentage of one core: (by schedstat, by stat).
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "CPU times far below 2^52 ns")]
pub fn cpu_pct(before: &CpuSample, after: &CpuSample) -> (f64, f64) {
    let wall = after.at.duration_since(before.at).as_secs_f64();
    let exec = after.exec_ns.saturating_sub(before.exec_ns) as f64 / 1e9;
    let ticks = after.ticks.saturating_sub(before.ticks) as f64 / ticks_per_second() as f64;
    (100.0 * exec / wall, 100.0 * ticks / wall)
}

/// Resident memory of the daemon, bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// `VmRSS`.
    pub rss: u64,
    /// `VmHWM`: the peak of `VmRSS`.
    pub hwm: u64,
    /// `RssAnon`: heap, stacks, anonymous mappings.
    pub anon: u64,
    /// `RssFile`: file-backed pages (the binary) and pages a driver mapped in, such as
    /// the BPF array's vmalloc pages (`remap_vmalloc_range` inserts them as non-anonymous
    /// pages, counted as file pages).
    pub file: u64,
    /// `RssShmem`.
    pub shmem: u64,
    /// Resident pages of the mappings of BPF maps (`anon_inode:bpf-map` in smaps).
    pub bpf_maps: u64,
    /// Resident pages of the mappings of the executable itself (text, data).
    pub executable: u64,
}

/// Reads [`Memory`] for `pid`.
///
/// # Errors
/// When /proc cannot be read.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status_path = format!("/proc/{pid}/status");
    let status =
        fs::read_to_string(&status_path).with_context(|| format!("reading {status_path}"))?;
    let smaps_path = format!("/proc/{pid}/smaps");
    let smaps = fs::read_to_string(&smaps_path).with_context(|| format!("reading {smaps_path}"))?;
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
    let exe = exe.as_ref().and_then(|path| path.to_str()).unwrap_or("\0");
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    let (bpf_maps, executable) = smaps_rss(&smaps, exe);
    Ok(Memory {
        rss: kib("VmRSS"),
        hwm: kib("VmHWM"),
        anon: kib("RssAnon"),
        file: kib("RssFile"),
        shmem: kib("RssShmem"),
        bpf_maps,
        executable,
    })
}

/// Sums `Rss:` of the smaps mappings named `anon_inode:bpf-map`, and of those of `exe`.
fn smaps_rss(smaps: &str, exe: &str) -> (u64, u64) {
    let (mut bpf_maps, mut executable) = (0, 0);
    let mut current = "";
    for line in smaps.lines() {
        // A mapping header starts with its address range "start-end perms ...".
        let is_header = line.split_whitespace().next().is_some_and(|first| {
            first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        });
        if is_header {
            current = line.split_whitespace().nth(5).unwrap_or("");
            continue;
        }
        let Some(value) = line.strip_prefix("Rss:") else {
            continue;
        };
        let bytes = value
            .split_whitespace()
            .next()
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024);
        if current.contains("bpf-map") {
            bpf_maps += bytes;
        } else if current == exe {
            executable += bytes;
        }
    }
    (bpf_maps, executable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_count_fields_after_the_name() {
        let cases = [
            (
                "plain name",
                "42 (portmon) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 200",
                Some(10),
            ),
            (
                "name with a space and a parenthesis",
                "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 20 5 0 0 20 0 1 0 5 1000 200",
                Some(25),
            ),
            ("truncated", "42 (portmon) S 1 42", None),
        ];
        for (name, stat, expected) in cases {
            assert_eq!(stat_ticks(stat), expected, "{name}: {stat:?}");
        }
    }

    #[test]
    fn smaps_rss_sums_bpf_maps_and_the_executable() {
        let smaps = "\
55d0c0000000-55d0c0100000 r-xp 00000000 08:01 123 /usr/bin/portmon
Size:               1024 kB
Rss:                 800 kB
7f0000000000-7f0000c00000 r--s 00000000 00:0e 77 anon_inode:bpf-map
Size:              12288 kB
Rss:               12288 kB
7f1000000000-7f1000600000 rw-p 00000000 00:00 0
Rss:                6144 kB
55d0c0200000-55d0c0210000 rw-p 00200000 08:01 123 /usr/bin/portmon
Rss:                  64 kB
";
        assert_eq!(
            smaps_rss(smaps, "/usr/bin/portmon"),
            (12288 * 1024, (800 + 64) * 1024),
            "bpf-map and executable Rss"
        );
    }
}
