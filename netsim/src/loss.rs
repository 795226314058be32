//! Which packets a node's radio misses.
//!
//! Owns `Loss`, the per-receiver loss process: none, independent (Bernoulli),
//! or bursty (Gilbert-Elliott two-state chain, stepped once per packet). It
//! draws from the node's own seeded generator; it does not touch packets.

use lsim_transport::rng::Rng;

/// A loss process for one receiving node.
#[derive(Clone, Debug)]
pub enum Loss {
    /// Nothing is lost.
    None,
    /// Each packet lost independently with probability `p`.
    Bernoulli {
        /// Loss probability.
        p: f64,
    },
    /// Gilbert-Elliott: in the good state packets are lost with `loss_good`,
    /// in the bad state with `loss_bad`; the chain moves good→bad with
    /// `p_gb` and bad→good with `p_bg` per packet.
    GilbertElliott {
        /// Good → bad transition probability.
        p_gb: f64,
        /// Bad → good transition probability.
        p_bg: f64,
        /// Loss in the good state.
        loss_good: f64,
        /// Loss in the bad state.
        loss_bad: f64,
        /// True while in the bad state.
        bad: bool,
    },
}

impl Loss {
    /// A bursty process with the given average loss and mean burst length
    /// (packets), losing every packet in the bad state and none in the good.
    pub fn bursty(mean_loss: f64, mean_burst: f64) -> Loss {
        let p_bg = 1.0 / mean_burst.max(1.0);
        let p_gb = mean_loss * p_bg / (1.0 - mean_loss).max(1e-9);
        Loss::GilbertElliott { p_gb, p_bg, loss_good: 0.0, loss_bad: 1.0, bad: false }
    }

    /// Long-run average loss of this process.
    pub fn mean(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Bernoulli { p } => p,
            Loss::GilbertElliott { p_gb, p_bg, loss_good, loss_bad, .. } => {
                let pi_bad = p_gb / (p_gb + p_bg);
                pi_bad * loss_bad + (1.0 - pi_bad) * loss_good
            }
        }
    }

    /// Draws whether the next packet is lost.
    pub fn lose(&mut self, rng: &mut Rng) -> bool {
        match self {
            Loss::None => false,
            Loss::Bernoulli { p } => rng.chance(*p),
            Loss::GilbertElliott { p_gb, p_bg, loss_good, loss_bad, bad } => {
                let flip = if *bad { *p_bg } else { *p_gb };
                if rng.chance(flip) {
                    *bad = !*bad;
                }
                rng.chance(if *bad { *loss_bad } else { *loss_good })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursty_matches_its_mean_and_burst_length() {
        let mut l = Loss::bursty(0.10, 8.0);
        assert!((l.mean() - 0.10).abs() < 1e-9);
        let mut rng = Rng::new(5);
        let n = 400_000;
        let (mut lost, mut bursts, mut prev) = (0, 0, false);
        for _ in 0..n {
            let x = l.lose(&mut rng);
            lost += x as usize;
            bursts += (x && !prev) as usize;
            prev = x;
        }
        let mean = lost as f64 / n as f64;
        let burst = lost as f64 / bursts as f64;
        assert!((mean - 0.10).abs() < 0.01, "mean {mean}");
        assert!((burst - 8.0).abs() < 0.6, "burst {burst}");
    }

    #[test]
    fn bernoulli_rate() {
        let mut l = Loss::Bernoulli { p: 0.2 };
        let mut rng = Rng::new(1);
        let lost = (0..100_000).filter(|_| l.lose(&mut rng)).count();
        assert!((19_000..21_000).contains(&lost));
    }
}
