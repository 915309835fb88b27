//! Payload classification in the daemon: which ports get a payload slot, and what their
//! counts say.
//!
//! The kernel classifies the payloads of tracked ports only, in a fixed number of slots
//! (`PAYLOAD_SLOTS - 1` per interface). The tracked ports follow the cardinality budget:
//!
//! * every (direction, protocol, port) of the security table (the policy's secure,
//!   plaintext and ambiguous ports, which always have their own series) is tracked when the
//!   interface is attached, so their first payload is already classified;
//! * a port the budget promotes to its own series is tracked right after its promotion, so
//!   its payload counts start with its series (like its packet counter, which counts from
//!   the promotion too).
//!
//! Slots are sticky and never reused (the tracker's rule): the tracked set only grows, as
//! the promoted set does. When the slots run out, the port is left untracked, counted in
//! `portmon_payload_untracked_ports`, and a warning is logged once per interface.

use std::collections::BTreeSet;

use anyhow::Context as _;
use monitor_common::{
    layout::{Direction, L4},
    payload::PayloadKind,
};

use crate::{
    dataplane::DataPlane,
    metrics::payload::{KINDS, PayloadSample, PayloadView},
    payload_map::{PayloadMapError, PayloadTotals, PayloadTracker, PortKey, Tracking},
    ports::Policy,
};

/// What hands out payload slots: the kernel map's [`PayloadTracker`], or a fake in tests.
pub trait Slots {
    /// Tracks `key`, see [`PayloadTracker::track`].
    ///
    /// # Errors
    /// As [`PayloadTracker::track`].
    fn track(&mut self, key: PortKey) -> Result<Tracking, PayloadMapError>;
}

impl Slots for PayloadTracker {
    fn track(&mut self, (direction, l4, port): PortKey) -> Result<Tracking, PayloadMapError> {
        PayloadTracker::track(self, direction, l4, port)
    }
}

/// The ports that wanted a slot and did not get one.
#[derive(Debug, Default)]
pub struct Refusals {
    refused: BTreeSet<PortKey>,
    warned_full: bool,
}

impl Refusals {
    /// Tracks every key of `keys` in `slots`; a key refused (no slot left, or a map error)
    /// is remembered and counted once. Logs the first time the slots run out, and each
    /// map error.
    pub fn track_all(
        &mut self,
        interface: &str,
        slots: &mut impl Slots,
        keys: impl IntoIterator<Item = PortKey>,
    ) {
        for key in keys {
            if self.refused.contains(&key) {
                continue;
            }
            match slots.track(key) {
                Ok(Tracking::New(_) | Tracking::Already(_)) => {}
                Ok(Tracking::Full) => {
                    if !self.warned_full {
                        self.warned_full = true;
                        log::warn!(
                            "{interface}: every payload slot is taken: the payloads of {} \
                             {}/{} and of any port exported after it are not classified \
                             (see portmon_payload_untracked_ports)",
                            key.0.as_str(),
                            key.2,
                            key.1.as_str()
                        );
                    }
                    self.refused.insert(key);
                }
                Err(error) => {
                    log::warn!(
                        "{interface}: cannot track the payloads of {} {}/{}: {error}",
                        key.0.as_str(),
                        key.2,
                        key.1.as_str()
                    );
                    self.refused.insert(key);
                }
            }
        }
    }

    /// How many keys were refused.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.refused.len() as u64
    }
}

/// Every (direction, protocol, port) of the security table, port by port.
pub fn table_keys(policy: &Policy) -> impl Iterator<Item = PortKey> + '_ {
    policy.security_table().flat_map(|info| {
        Direction::ALL
            .into_iter()
            .map(move |direction| (direction, info.protocol, info.port))
    })
}

/// The payload side of one interface.
pub struct Payload {
    tracker: PayloadTracker,
    totals: PayloadTotals,
    refusals: Refusals,
}

impl Payload {
    /// The payload side of `data_plane` on `interface`; `None` when not `enabled`.
    ///
    /// # Errors
    /// When the payload maps cannot be mapped.
    pub fn open(
        interface: &str,
        data_plane: &DataPlane,
        policy: &Policy,
        enabled: bool,
    ) -> anyhow::Result<Option<Self>> {
        if !enabled {
            return Ok(None);
        }
        let tracker = data_plane.payload_tracker().with_context(|| {
            format!("mapping the payload maps of {interface} (or run with --no-payload)")
        })?;
        Ok(Some(Self::new(interface, tracker, policy)))
    }

    /// Takes `tracker` and tracks every port of the security table in both directions.
    #[must_use]
    pub fn new(interface: &str, mut tracker: PayloadTracker, policy: &Policy) -> Self {
        let mut refusals = Refusals::default();
        refusals.track_all(interface, &mut tracker, table_keys(policy));
        log::info!(
            "{interface}: payloads of {} (direction, protocol, port) triples classified, {} \
             slots left for promoted ports",
            tracker.tracked(),
            tracker.free()
        );
        Self {
            tracker,
            totals: PayloadTotals::default(),
            refusals,
        }
    }

    /// Tracks `ports` of the lane (`direction`, `l4`): the ports the budget promoted.
    pub fn track_promoted(&mut self, interface: &str, direction: Direction, l4: L4, ports: &[u16]) {
        self.refusals.track_all(
            interface,
            &mut self.tracker,
            ports.iter().map(|&port| (direction, l4, port)),
        );
    }

    /// Reads the counts of every tracked port (no allocation after the first read).
    pub fn read(&mut self) {
        self.tracker.read_into(&mut self.totals);
    }

    /// Plaintext payloads counted so far on a port (0 when it is not tracked).
    #[must_use]
    pub fn plaintext(&self, direction: Direction, l4: L4, port: u16) -> u64 {
        self.totals
            .get(direction, l4, port)
            .map_or(0, |counts| plaintext_sum(&counts))
    }

    /// The exported state: tracked ports with at least one payload counted.
    #[must_use]
    pub fn view(&self) -> PayloadView {
        PayloadView {
            enabled: true,
            ports: self
                .totals
                .iter()
                .filter(|(_, counts)| counts.iter().any(|&count| count > 0))
                .map(|((direction, l4, port), counts)| {
                    let mut all = [0; KINDS];
                    for (slot, count) in all.iter_mut().zip(counts) {
                        *slot = count;
                    }
                    PayloadSample {
                        direction,
                        l4,
                        port,
                        counts: all,
                    }
                })
                .collect(),
            tracked: self.tracker.tracked() as u64,
            untracked: self.refusals.count(),
        }
    }
}

/// The sum of the plaintext kinds of `counts`, indexed by `PayloadKind as usize`.
fn plaintext_sum(counts: &[u64]) -> u64 {
    PayloadKind::ALL
        .into_iter()
        .zip(counts)
        .filter(|(kind, _)| kind.is_plaintext())
        .fold(0, |sum, (_, &count)| sum.wrapping_add(count))
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A tracker with `capacity` slots; `broken` keys fail.
    struct Fake {
        capacity: usize,
        slots: BTreeMap<PortKey, u16>,
        broken: Vec<PortKey>,
        calls: usize,
    }

    impl Slots for Fake {
        fn track(&mut self, key: PortKey) -> Result<Tracking, PayloadMapError> {
            self.calls += 1;
            if self.broken.contains(&key) {
                return Err(PayloadMapError::BadSlot { key, value: 99_999 });
            }
            if let Some(&slot) = self.slots.get(&key) {
                return Ok(Tracking::Already(slot));
            }
            if self.slots.len() >= self.capacity {
                return Ok(Tracking::Full);
            }
            let slot = u16::try_from(self.slots.len() + 1).expect("a small slot");
            self.slots.insert(key, slot);
            Ok(Tracking::New(slot))
        }
    }

    #[test]
    fn the_table_is_tracked_both_ways_and_fits_with_room_for_promotions() {
        let policy = Policy::builtin();
        let keys: Vec<PortKey> = table_keys(&policy).collect();
        assert_eq!(keys.len(), 2 * policy.security_table_len());
        for key in [
            (Direction::Ingress, L4::Tcp, 443),
            (Direction::Egress, L4::Tcp, 443),
            (Direction::Ingress, L4::Udp, 161),
            (Direction::Egress, L4::Udp, 162),
        ] {
            assert!(keys.contains(&key), "expected {key:?} tracked");
        }
        let promotions = 4 * crate::config::defaults::TOP_K as usize;
        let slots = monitor_common::layout::PAYLOAD_SLOTS as usize - 1;
        assert!(
            keys.len() + promotions <= slots,
            "expected the table ({}) and the default promotions ({promotions}) to fit in {slots} slots",
            keys.len()
        );
    }

    #[test]
    fn running_out_of_slots_counts_each_port_once() {
        let mut fake = Fake {
            capacity: 3,
            slots: BTreeMap::new(),
            broken: vec![(Direction::Egress, L4::Udp, 9)],
            calls: 0,
        };
        let mut refusals = Refusals::default();
        let lane = |ports: &[u16]| -> Vec<PortKey> {
            ports
                .iter()
                .map(|&port| (Direction::Ingress, L4::Tcp, port))
                .collect()
        };
        refusals.track_all("veth0", &mut fake, lane(&[1, 2]));
        assert_eq!(refusals.count(), 0);
        // Sticky: 1 and 2 again are no new slots; 3 takes the last; 4 and 5 are refused.
        refusals.track_all("veth0", &mut fake, lane(&[1, 2, 3, 4, 5]));
        assert_eq!(refusals.count(), 2, "4 and 5 found no slot");
        assert!(refusals.warned_full, "the first refusal is logged");
        let calls = fake.calls;
        refusals.track_all("veth0", &mut fake, lane(&[4, 5]));
        assert_eq!(refusals.count(), 2, "a refused port is counted once");
        assert_eq!(fake.calls, calls, "and not asked for again");
        refusals.track_all("veth0", &mut fake, [(Direction::Egress, L4::Udp, 9)]);
        assert_eq!(refusals.count(), 3, "a map error leaves the port untracked");
        assert_eq!(
            fake.slots.keys().copied().collect::<Vec<_>>(),
            lane(&[1, 2, 3])
        );
    }

    #[test]
    fn plaintext_sums_the_plaintext_kinds_only() {
        let mut counts = [0u64; PayloadKind::SIGNATURES as usize];
        for (kind, count) in [
            (PayloadKind::Tls, 1000),
            (PayloadKind::Ssh, 100),
            (PayloadKind::Http, 1),
            (PayloadKind::MailOrLogin, 2),
            (PayloadKind::SnmpV1, 4),
            (PayloadKind::SnmpV2c, 8),
            (PayloadKind::SnmpV3, 10_000),
        ] {
            counts[kind as usize] = count;
        }
        assert_eq!(plaintext_sum(&counts), 15);
    }
}
