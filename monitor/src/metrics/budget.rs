//! The cardinality budget: which ports get their own series and which are folded into
//! `port="other"`.
//!
//! # The rule
//! Per interface, direction and protocol (a *lane*):
//! * every port of the security table has its own series, from the start (its series
//!   appears with its first packet);
//! * at most `top_k` other ports are ever promoted to their own series. After each read,
//!   while the lane has free promotion slots, the `top_k` busiest non-table ports (by
//!   packets counted since portmon started; ties to the lower port) that have counted at
//!   least `promote_min_packets` packets are promoted. A slot is never given back: a
//!   promoted port keeps its series for the life of the process, and once `top_k` ports
//!   are promoted the lane promotes no more;
//! * everything else is summed into `port="other"` per (range, security).
//!
//! A promoted series counts from its promotion: the port's traffic before that stays in
//! `other` (as a constant "baseline"). Every exported counter is therefore monotonic:
//! `other` is the sum of non-promoted ports' counters plus the frozen baselines of the
//! promoted ones, and the set of promoted ports only grows.
//!
//! The bound: a lane exports at most `table ports + top_k + other buckets` per-port
//! series, whatever the traffic: a scan of all 65535 ports gives each port a packet or
//! two, below `promote_min_packets`, and even with a threshold of 1 it can take only the
//! `top_k` slots.

use std::{cmp::Reverse, collections::BinaryHeap};

use monitor_common::layout::{Counter, Direction, L4, PORTS};

use crate::{counters::Totals, ports::Policy};

/// Range labels, in bucket order.
pub const RANGES: [&str; 3] = ["well_known", "registered", "dynamic"];
/// Security labels, in bucket order.
pub const SECURITIES: [&str; 4] = ["plaintext", "secure", "ambiguous", "unknown"];
/// Number of (range, security) buckets of `other`.
pub const BUCKETS: usize = RANGES.len() * SECURITIES.len();
/// Marks a port of the security table in [`PortClasses`].
const TABLE: u8 = u8::MAX;
/// Lanes per interface: direction x L4.
pub const LANES: usize = 4;

/// The lanes, in order.
pub const LANE_KEYS: [(Direction, L4); LANES] = [
    (Direction::Ingress, L4::Tcp),
    (Direction::Ingress, L4::Udp),
    (Direction::Egress, L4::Tcp),
    (Direction::Egress, L4::Udp),
];

/// The (range, security) labels of an `other` bucket.
#[must_use]
pub fn bucket_labels(bucket: u8) -> (&'static str, &'static str) {
    let bucket = usize::from(bucket);
    (
        RANGES
            .get(bucket / SECURITIES.len())
            .copied()
            .unwrap_or("unknown"),
        SECURITIES
            .get(bucket % SECURITIES.len())
            .copied()
            .unwrap_or("unknown"),
    )
}

/// The bucket of a (range, security) label pair.
#[must_use]
pub fn bucket_of(range: &str, security: &str) -> u8 {
    let range = RANGES.iter().position(|&r| r == range).unwrap_or(0);
    let security = SECURITIES
        .iter()
        .position(|&s| s == security)
        .unwrap_or(SECURITIES.len() - 1);
    u8::try_from(range * SECURITIES.len() + security).unwrap_or(0)
}

/// Per port and protocol: in the security table, or the `other` bucket it folds into.
/// Precomputed once so that a scrape never classifies 65536 ports.
pub struct PortClasses {
    class: [Box<[u8]>; 2],
    table_ports: [u64; 2],
    other_buckets: [u64; 2],
}

impl PortClasses {
    /// Classes from the port knowledge.
    #[must_use]
    pub fn new(policy: &Policy) -> Self {
        Self::from_fn(|l4, port| {
            let info = policy.classify(l4, port);
            (
                info.in_security_table,
                bucket_of(info.range.as_str(), info.security.as_str()),
            )
        })
    }

    /// Classes from `classify(l4, port) -> (in_table, bucket)`.
    pub fn from_fn(classify: impl Fn(L4, u16) -> (bool, u8)) -> Self {
        let mut table_ports = [0; 2];
        let mut other_buckets = [0; 2];
        let class = L4::ALL.map(|l4| {
            let mut seen = [false; BUCKETS];
            let classes: Box<[u8]> = (0..=u16::MAX)
                .map(|port| match classify(l4, port) {
                    (true, _) => TABLE,
                    (false, bucket) => {
                        if let Some(seen) = seen.get_mut(usize::from(bucket)) {
                            *seen = true;
                        }
                        bucket
                    }
                })
                .collect();
            let index = l4 as usize;
            table_ports[index] = classes.iter().filter(|&&c| c == TABLE).map(|_| 1).sum();
            other_buckets[index] = seen.iter().filter(|&&s| s).count() as u64;
            classes
        });
        Self {
            class,
            table_ports,
            other_buckets,
        }
    }

    fn get(&self, l4: L4, port: u16) -> u8 {
        self.class[l4 as usize]
            .get(usize::from(port))
            .copied()
            .unwrap_or(TABLE)
    }

    /// Whether `port` of `l4` has its own series from the start.
    #[must_use]
    pub fn in_table(&self, l4: L4, port: u16) -> bool {
        self.get(l4, port) == TABLE
    }

    /// The most per-port series one interface can export under `settings`.
    #[must_use]
    pub fn interface_budget(&self, settings: BudgetSettings) -> u64 {
        LANE_KEYS
            .iter()
            .map(|&(_, l4)| {
                let l4 = l4 as usize;
                self.table_ports[l4] + u64::from(settings.top_k) + self.other_buckets[l4]
            })
            .sum()
    }
}

/// The knobs of the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetSettings {
    /// Promotion slots per lane.
    pub top_k: u32,
    /// Packets a port must have counted to be promoted (at least 1 is always required).
    pub promote_min_packets: u64,
}

/// Per-port counters as read from the kernel.
pub trait PortCounters {
    /// The counter of `port` for `l4` in `direction`.
    fn port(&self, direction: Direction, l4: L4, port: u16) -> Counter;
}

impl PortCounters for Totals {
    fn port(&self, direction: Direction, l4: L4, port: u16) -> Counter {
        Totals::port(self, direction, l4, port)
    }
}

/// One exported per-port series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSample {
    /// Direction.
    pub direction: Direction,
    /// Protocol.
    pub l4: L4,
    /// The port, or `None` for `other`.
    pub port: Option<u16>,
    /// The `other` bucket (meaningful only when `port` is `None`).
    pub bucket: u8,
    /// The exported counter.
    pub counter: Counter,
}

/// The promotion state of one interface.
#[derive(Debug, Default)]
pub struct InterfaceBudget {
    /// Per lane: promoted non-table ports with their counter at promotion, by port.
    promoted: [Vec<(u16, Counter)>; LANES],
    /// Reused between reads: the busiest candidates of a lane.
    scratch: BinaryHeap<Reverse<(u64, Reverse<u16>)>>,
}

fn sub(now: Counter, then: Counter) -> Counter {
    Counter {
        packets: now.packets.wrapping_sub(then.packets),
        bytes: now.bytes.wrapping_sub(then.bytes),
        syns: now.syns.wrapping_sub(then.syns),
    }
}

impl InterfaceBudget {
    /// Promotes ports after a read; returns how many were promoted.
    pub fn promote(
        &mut self,
        counters: &impl PortCounters,
        classes: &PortClasses,
        settings: BudgetSettings,
    ) -> usize {
        let slots = settings.top_k as usize;
        let threshold = settings.promote_min_packets.max(1);
        let mut newly = 0;
        for (lane, &(direction, l4)) in LANE_KEYS.iter().enumerate() {
            if self.promoted[lane].len() >= slots {
                continue;
            }
            self.scratch.clear();
            for port in 0..=u16::MAX {
                if classes.in_table(l4, port) {
                    continue;
                }
                let packets = counters.port(direction, l4, port).packets;
                if packets < threshold {
                    continue;
                }
                self.scratch.push(Reverse((packets, Reverse(port))));
                if self.scratch.len() > slots {
                    self.scratch.pop();
                }
            }
            let promoted = &mut self.promoted[lane];
            for Reverse((_, Reverse(port))) in self.scratch.drain() {
                if promoted.len() < slots
                    && let Err(at) = promoted.binary_search_by_key(&port, |&(p, _)| p)
                {
                    promoted.insert(at, (port, counters.port(direction, l4, port)));
                    newly += 1;
                }
            }
        }
        newly
    }

    /// Ports promoted so far in the lane of `direction` and `l4`.
    #[must_use]
    pub fn promoted(&self, direction: Direction, l4: L4) -> Vec<u16> {
        LANE_KEYS
            .iter()
            .position(|&key| key == (direction, l4))
            .map(|lane| self.promoted[lane].iter().map(|&(port, _)| port).collect())
            .unwrap_or_default()
    }

    /// The exported series of this interface, appended to `out`: table ports with
    /// traffic, every promoted port, and the non-empty `other` buckets.
    pub fn samples(
        &self,
        counters: &impl PortCounters,
        classes: &PortClasses,
        out: &mut Vec<PortSample>,
    ) {
        for (lane, &(direction, l4)) in LANE_KEYS.iter().enumerate() {
            let mut other = [Counter::default(); BUCKETS];
            for port in 0..PORTS {
                let Ok(port) = u16::try_from(port) else { break };
                let counter = counters.port(direction, l4, port);
                if counter == Counter::default() {
                    continue;
                }
                match classes.get(l4, port) {
                    TABLE => out.push(PortSample {
                        direction,
                        l4,
                        port: Some(port),
                        bucket: 0,
                        counter,
                    }),
                    bucket => {
                        if let Some(sum) = other.get_mut(usize::from(bucket)) {
                            sum.accumulate(&counter);
                        }
                    }
                }
            }
            for &(port, baseline) in &self.promoted[lane] {
                let since = sub(counters.port(direction, l4, port), baseline);
                if let Some(sum) = other.get_mut(usize::from(classes.get(l4, port))) {
                    *sum = sub(*sum, since);
                }
                out.push(PortSample {
                    direction,
                    l4,
                    port: Some(port),
                    bucket: 0,
                    counter: since,
                });
            }
            for (bucket, counter) in (0u8..).zip(other) {
                if counter != Counter::default() {
                    out.push(PortSample {
                        direction,
                        l4,
                        port: None,
                        bucket,
                        counter,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Counters kept in a map; absent ports are zero.
    #[derive(Default)]
    struct Fake(HashMap<(Direction, L4, u16), Counter>);

    impl Fake {
        fn add(&mut self, direction: Direction, l4: L4, port: u16, packets: u64) {
            let counter = self.0.entry((direction, l4, port)).or_default();
            counter.packets += packets;
            counter.bytes += packets * 60;
            if l4 == L4::Tcp {
                counter.syns += packets;
            }
        }
    }

    impl PortCounters for Fake {
        fn port(&self, direction: Direction, l4: L4, port: u16) -> Counter {
            self.0
                .get(&(direction, l4, port))
                .copied()
                .unwrap_or_default()
        }
    }

    /// Table: TCP 23, 80, 443 and UDP 53, 161. Buckets by range, security `unknown`.
    fn classes() -> PortClasses {
        PortClasses::from_fn(|l4, port| {
            let table = match l4 {
                L4::Tcp => [23, 80, 443].contains(&port),
                L4::Udp => [53, 161].contains(&port),
            };
            let range = match port {
                0..=1023 => "well_known",
                1024..=49151 => "registered",
                _ => "dynamic",
            };
            (table, bucket_of(range, "unknown"))
        })
    }

    const SETTINGS: BudgetSettings = BudgetSettings {
        top_k: 2,
        promote_min_packets: 10,
    };

    fn samples(budget: &InterfaceBudget, fake: &Fake) -> Vec<PortSample> {
        let mut out = Vec::new();
        budget.samples(fake, &classes(), &mut out);
        out
    }

    fn packets(samples: &[PortSample], l4: L4, port: Option<u16>, range: &str) -> Option<u64> {
        samples
            .iter()
            .find(|s| {
                s.direction == Direction::Ingress
                    && s.l4 == l4
                    && s.port == port
                    && (port.is_some() || bucket_labels(s.bucket).0 == range)
            })
            .map(|s| s.counter.packets)
    }

    /// (case, protocol, port or `None` for other, range of other, expected packets).
    type Case = (&'static str, L4, Option<u16>, &'static str, Option<u64>);

    #[test]
    fn table_ports_have_series_and_the_rest_folds_into_other_by_range() {
        let mut fake = Fake::default();
        fake.add(Direction::Ingress, L4::Tcp, 23, 3);
        fake.add(Direction::Ingress, L4::Tcp, 8080, 4);
        fake.add(Direction::Ingress, L4::Tcp, 9090, 5);
        fake.add(Direction::Ingress, L4::Tcp, 50000, 1);
        fake.add(Direction::Ingress, L4::Udp, 53, 2);
        let mut budget = InterfaceBudget::default();
        assert_eq!(
            budget.promote(&fake, &classes(), SETTINGS),
            0,
            "all below 10 packets"
        );
        let got = samples(&budget, &fake);
        let cases: &[Case] = &[
            ("telnet", L4::Tcp, Some(23), "", Some(3)),
            (
                "http without traffic has no series yet",
                L4::Tcp,
                Some(80),
                "",
                None,
            ),
            ("registered other", L4::Tcp, None, "registered", Some(9)),
            ("dynamic other", L4::Tcp, None, "dynamic", Some(1)),
            ("no well-known other", L4::Tcp, None, "well_known", None),
            ("dns", L4::Udp, Some(53), "", Some(2)),
            ("8080 folded", L4::Tcp, Some(8080), "", None),
        ];
        for (name, l4, port, range, expected) in cases {
            assert_eq!(packets(&got, *l4, *port, range), *expected, "case {name}");
        }
        assert_eq!(
            got.len(),
            4,
            "series: 23, other registered, other dynamic, 53: {got:?}"
        );
    }

    #[test]
    fn a_promoted_port_counts_from_its_promotion_and_other_keeps_the_rest() {
        let mut fake = Fake::default();
        let mut budget = InterfaceBudget::default();
        fake.add(Direction::Ingress, L4::Tcp, 8080, 9);
        budget.promote(&fake, &classes(), SETTINGS);
        assert_eq!(
            budget.promoted(Direction::Ingress, L4::Tcp),
            Vec::<u16>::new()
        );
        fake.add(Direction::Ingress, L4::Tcp, 8080, 3); // 12 >= 10: promoted now.
        assert_eq!(budget.promote(&fake, &classes(), SETTINGS), 1);
        let got = samples(&budget, &fake);
        assert_eq!(
            packets(&got, L4::Tcp, Some(8080), ""),
            Some(0),
            "counts from promotion"
        );
        assert_eq!(
            packets(&got, L4::Tcp, None, "registered"),
            Some(12),
            "history in other"
        );
        fake.add(Direction::Ingress, L4::Tcp, 8080, 5);
        let got = samples(&budget, &fake);
        assert_eq!(packets(&got, L4::Tcp, Some(8080), ""), Some(5));
        assert_eq!(packets(&got, L4::Tcp, None, "registered"), Some(12));
        let syns: u64 = got
            .iter()
            .filter(|s| s.l4 == L4::Tcp)
            .map(|s| s.counter.syns)
            .sum();
        assert_eq!(syns, 17, "every SYN is in exactly one series");
    }

    #[test]
    fn slots_are_sticky_and_capped() {
        let mut fake = Fake::default();
        let mut budget = InterfaceBudget::default();
        // Three candidates for two slots: the two busiest win, ties to the lower port.
        fake.add(Direction::Ingress, L4::Udp, 5000, 50);
        fake.add(Direction::Ingress, L4::Udp, 6000, 20);
        fake.add(Direction::Ingress, L4::Udp, 4000, 20);
        assert_eq!(budget.promote(&fake, &classes(), SETTINGS), 2);
        assert_eq!(
            budget.promoted(Direction::Ingress, L4::Udp),
            vec![4000, 5000]
        );
        // A much busier port later does not displace them: the slots are spent.
        fake.add(Direction::Ingress, L4::Udp, 7000, 1_000_000);
        assert_eq!(budget.promote(&fake, &classes(), SETTINGS), 0);
        assert_eq!(
            budget.promoted(Direction::Ingress, L4::Udp),
            vec![4000, 5000]
        );
        // Other lanes have their own slots.
        fake.add(Direction::Egress, L4::Udp, 7000, 10);
        assert_eq!(budget.promote(&fake, &classes(), SETTINGS), 1);
        assert_eq!(budget.promoted(Direction::Egress, L4::Udp), vec![7000]);
    }

    #[test]
    fn a_full_scan_stays_within_budget_and_no_counter_decreases() {
        let classes = classes();
        let settings = BudgetSettings {
            top_k: 20,
            promote_min_packets: 1,
        };
        let budget_per_interface = classes.interface_budget(settings);
        // Table ports 3 + 2 + 3 + 2, slots 4 x 20, other buckets 4 x 3.
        assert_eq!(budget_per_interface, 10 + 80 + 12);
        let mut fake = Fake::default();
        let mut budget = InterfaceBudget::default();
        let mut previous: HashMap<(Direction, L4, Option<u16>, u8), Counter> = HashMap::new();
        // Each round touches a different slice of every port, in both directions.
        for round in 0..8u16 {
            for port in (1..=u16::MAX).filter(|p| p % 8 == round) {
                for (direction, l4) in LANE_KEYS {
                    fake.add(direction, l4, port, u64::from(port % 3) + 1);
                }
            }
            budget.promote(&fake, &classes, settings);
            let mut got = Vec::new();
            budget.samples(&fake, &classes, &mut got);
            assert!(
                got.len() as u64 <= budget_per_interface,
                "round {round}: {} series over the budget {budget_per_interface}",
                got.len()
            );
            for sample in &got {
                let key = (sample.direction, sample.l4, sample.port, sample.bucket);
                let counter = sample.counter;
                if let Some(before) = previous.insert(key, counter) {
                    assert!(
                        counter.packets >= before.packets
                            && counter.bytes >= before.bytes
                            && counter.syns >= before.syns,
                        "round {round}: {key:?} went from {before:?} to {counter:?}"
                    );
                }
            }
            // Nothing is lost or counted twice: the series add up to the kernel totals.
            for (direction, l4) in LANE_KEYS {
                let exported: u64 = got
                    .iter()
                    .filter(|s| s.direction == direction && s.l4 == l4)
                    .map(|s| s.counter.packets)
                    .sum();
                let kernel: u64 = fake
                    .0
                    .iter()
                    .filter(|((d, p, _), _)| *d == direction && *p == l4)
                    .map(|(_, c)| c.packets)
                    .sum();
                assert_eq!(exported, kernel, "round {round}: {direction:?} {l4:?} sums");
            }
            // Every series seen once is still there.
            assert!(
                previous.keys().all(|key| got.iter().any(|s| (
                    s.direction,
                    s.l4,
                    s.port,
                    s.bucket
                ) == *key)),
                "round {round}: a series disappeared"
            );
        }
        assert_eq!(budget.promoted(Direction::Ingress, L4::Tcp).len(), 20);
    }

    #[test]
    fn buckets_round_trip_their_labels() {
        for range in RANGES {
            for security in SECURITIES {
                assert_eq!(
                    bucket_labels(bucket_of(range, security)),
                    (range, security),
                    "bucket of {range}/{security}"
                );
            }
        }
    }
}
