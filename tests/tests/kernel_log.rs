//! Kernel-side diagnostics travel through aya-log into the host's `log` records, and the
//! per-packet debug switch is off unless asked for.

#![expect(
    clippy::expect_used,
    reason = "a test panics with a message saying what was expected"
)]

use std::sync::{Mutex, OnceLock};

use aya::{TestRunOptions, programs::TestRun as _};
use portmon::dataplane::{DataPlane, LoadOptions};

/// Records every log line, so the test can look for the kernel's.
struct CapturingLogger {
    lines: Mutex<Vec<String>>,
}

impl log::Log for CapturingLogger {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

fn logger() -> &'static CapturingLogger {
    static LOGGER: OnceLock<&'static CapturingLogger> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let logger: &'static CapturingLogger = Box::leak(Box::new(CapturingLogger {
            lines: Mutex::new(Vec::new()),
        }));
        log::set_logger(logger).expect("no other logger is installed in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        logger
    })
}

/// An Ethernet + IPv4 + UDP frame to `port`.
fn udp_frame(port: u16) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    frame.extend_from_slice(&[
        0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    let [hi, lo] = port.to_be_bytes();
    frame.extend_from_slice(&[0x30, 0x39, hi, lo, 0, 8, 0, 0]);
    frame
}

fn kernel_lines_after_one_packet(debug: bool, port: u16) -> Vec<String> {
    let logger = logger();
    let mut data_plane = DataPlane::load(LoadOptions {
        debug,
        ..LoadOptions::default()
    })
    .expect("the kernel programs load");
    let mut kernel_log = data_plane
        .take_logger()
        .expect("the kernel offers aya-log's ring buffer");
    let frame = udp_frame(port);
    data_plane
        .xdp_mut()
        .expect("the XDP program exists")
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN runs the XDP program");
    kernel_log.flush();
    let needle = format!("port {port}");
    logger
        .lines
        .lock()
        .expect("the log mutex is not poisoned")
        .iter()
        .filter(|line| line.contains(&needle))
        .cloned()
        .collect()
}

#[test]
fn debug_switch_sends_per_packet_records_to_the_host_log() {
    let lines = kernel_lines_after_one_packet(true, 5353);
    assert_eq!(
        lines,
        vec!["portmon: ingress udp port 5353 syn=0 bytes=42".to_owned()],
        "expected exactly one kernel debug record for the packet"
    );
}

#[test]
fn debug_switch_off_logs_nothing_per_packet() {
    let lines = kernel_lines_after_one_packet(false, 5354);
    assert!(
        lines.is_empty(),
        "expected no per-packet record with debug off, got {lines:?}"
    );
}
