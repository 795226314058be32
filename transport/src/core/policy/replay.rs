//! Refusing a packet heard before.
//!
//! Owns `ReplayWindow`: per peer, the highest packet counter seen and a
//! bitmap of the 256 before it (the IPsec anti-replay scheme, RFC 4303
//! §3.4.3). A packet is accepted once; older than the window, never. It is
//! consulted only after a packet authenticated, so forgeries cannot move it.

/// Packets of reordering tolerated.
pub const WINDOW: u64 = 256;

/// The anti-replay state of one peer's packet counter.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    top: Option<u64>,
    bits: [u64; 4],
}

impl ReplayWindow {
    /// The highest counter accepted, if any (what a short header's counter is rebuilt from).
    pub fn top(&self) -> Option<u64> {
        self.top
    }

    /// True (and remembered) if `seq` was not seen before and is not too old.
    pub fn accept(&mut self, seq: u64) -> bool {
        let Some(top) = self.top else {
            self.top = Some(seq);
            self.bits = [1, 0, 0, 0];
            return true;
        };
        if seq > top {
            self.shift(seq - top);
            self.top = Some(seq);
            self.bits[0] |= 1;
            return true;
        }
        let age = top - seq;
        if age >= WINDOW {
            return false;
        }
        let (word, bit) = ((age / 64) as usize, age % 64);
        if self.bits[word] & (1 << bit) != 0 {
            return false;
        }
        self.bits[word] |= 1 << bit;
        true
    }

    /// Ages every remembered counter by `n`.
    fn shift(&mut self, n: u64) {
        if n >= WINDOW {
            self.bits = [0; 4];
            return;
        }
        let (words, bits) = ((n / 64) as usize, (n % 64) as u32);
        for i in (0..4).rev() {
            let lo = if i >= words { self.bits[i - words] } else { 0 };
            let below = if i > words { self.bits[i - words - 1] } else { 0 };
            self.bits[i] = if bits == 0 { lo } else { (lo << bits) | (below >> (64 - bits)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn once_only_and_not_too_old() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(1000));
        assert!(!w.accept(1000));
        assert!(w.accept(999));
        assert!(!w.accept(999));
        assert!(w.accept(1300));
        assert!(!w.accept(1000), "older than the window");
        assert!(w.accept(1299 - 200));
        assert!(w.accept(5_000_000), "a restarted peer with a later counter is heard");
    }

    proptest! {
        /// Against a set that remembers everything: the window accepts exactly
        /// the first copy of every counter within 256 of the highest seen.
        #[test]
        fn matches_a_model(seqs in prop::collection::vec(0u64..2000, 1..400)) {
            let mut w = ReplayWindow::default();
            let mut seen = std::collections::HashSet::new();
            let mut top = None::<u64>;
            for s in seqs {
                let fresh = !seen.contains(&s) && top.is_none_or(|t| s > t || t - s < WINDOW);
                prop_assert_eq!(w.accept(s), fresh, "seq {}", s);
                if fresh {
                    seen.insert(s);
                    top = Some(top.map_or(s, |t| t.max(s)));
                }
            }
        }
    }
}
