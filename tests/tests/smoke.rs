use aya::{TestRunOptions, programs::TestRun as _};
use monitor_common::layout::{Direction, L4};
use portmon::dataplane::{DataPlane, LoadOptions};

#[test]
fn xdp_counts_a_syn() {
    let mut dp = DataPlane::load(LoadOptions::default()).expect("load");
    let counters = dp.counters().expect("counters");
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00]);
    f.extend_from_slice(&[
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f.extend_from_slice(&[
        0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    let xdp = dp.xdp_mut().expect("xdp");
    let r = xdp
        .test_run(TestRunOptions {
            data_in: Some(&f),
            repeat: 10,
            ..TestRunOptions::default()
        })
        .expect("run");
    assert_eq!(r.return_value, 2);
    let t = counters.read();
    assert_eq!(t.port(Direction::Ingress, L4::Tcp, 443).packets, 10);
    assert_eq!(t.port(Direction::Ingress, L4::Tcp, 443).syns, 10);
    assert_eq!(t.port(Direction::Ingress, L4::Tcp, 443).bytes, 540);
    let tc = dp
        .classifier_mut(portmon::dataplane::TC_EGRESS_PROGRAM)
        .expect("tc");
    let r = tc
        .test_run(TestRunOptions {
            data_in: Some(&f),
            repeat: 3,
            ..TestRunOptions::default()
        })
        .expect("run");
    assert_eq!(r.return_value, 0);
    let t = counters.read();
    assert_eq!(t.port(Direction::Egress, L4::Tcp, 443).packets, 3);
}
