//! Beta annealing schedules of the KL term (docs/method.md 2.1). `t` is the global training
//! step, counted in batches.

use serde::{Deserialize, Serialize};

use blindspot_core::InvalidConfig;

fn invalid(key: &'static str, value: impl ToString, allowed: &'static str) -> InvalidConfig {
    InvalidConfig::new(key, value, allowed)
}

/// How the KL weight beta evolves with the training step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BetaSchedule {
    /// `β = beta`.
    Constant {
        /// The weight.
        beta: f64,
    },
    /// `β(t) = start + (end − start)·t/steps` for `t ≤ steps`, then `end` (paper default:
    /// 0 → 1 over 2000 steps).
    Monotonic {
        /// β at step 0.
        start: f64,
        /// β from `steps` on.
        end: f64,
        /// Length of the ramp.
        steps: u64,
    },
    /// Repeating ramps of period `cycle`: with `ramp = ceil(cycle − cycle·fraction)` and
    /// `u = t mod cycle`, `β = start + (end − start)·u/ramp` for `u < ramp`, else `end`.
    Cyclic {
        /// β at the start of each cycle.
        start: f64,
        /// β after the ramp.
        end: f64,
        /// Period in steps.
        cycle: u64,
        /// Fraction of the cycle spent at `end`.
        fraction: f64,
    },
    /// `β(t) = start + (end − start) / (1 + 0.5·e^(−0.01·t))^(1/0.05)` (the authors'
    /// generalised logistic with hard-coded constants).
    Sigmoid {
        /// The lower asymptote.
        start: f64,
        /// The upper asymptote.
        end: f64,
    },
    /// `β(t) = start·exp(t·ln(end/start)/steps)` for `t < steps`, then `end`.
    Decay {
        /// β at step 0 (> 0).
        start: f64,
        /// β from `steps` on (> 0).
        end: f64,
        /// Length of the decay.
        steps: u64,
    },
}

impl Default for BetaSchedule {
    /// The authors' CLI default: monotonic 0 → 1 over 2000 steps.
    fn default() -> Self {
        BetaSchedule::Monotonic {
            start: 0.0,
            end: 1.0,
            steps: 2000,
        }
    }
}

impl BetaSchedule {
    /// β at step `t`.
    pub fn beta(&self, t: u64) -> f64 {
        let tf = t as f64;
        match *self {
            BetaSchedule::Constant { beta } => beta,
            BetaSchedule::Monotonic { start, end, steps } => {
                if t >= steps {
                    end
                } else {
                    start + (end - start) * tf / steps as f64
                }
            }
            BetaSchedule::Cyclic {
                start,
                end,
                cycle,
                fraction,
            } => {
                let c = cycle as f64;
                let ramp = (c - c * fraction).ceil();
                let u = (t % cycle) as f64;
                if u < ramp {
                    start + (end - start) * u / ramp
                } else {
                    end
                }
            }
            BetaSchedule::Sigmoid { start, end } => {
                start + (end - start) / (1.0 + 0.5 * (-0.01 * tf).exp()).powf(1.0 / 0.05)
            }
            BetaSchedule::Decay { start, end, steps } => {
                if t >= steps {
                    end
                } else {
                    start * (tf * (end / start).ln() / steps as f64).exp()
                }
            }
        }
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let finite_nonneg = |key, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(invalid(key, v, "a finite number >= 0"))
            }
        };
        match *self {
            BetaSchedule::Constant { beta } => finite_nonneg("beta.beta", beta),
            BetaSchedule::Monotonic { start, end, steps } => {
                finite_nonneg("beta.start", start)?;
                finite_nonneg("beta.end", end)?;
                if steps == 0 {
                    return Err(invalid("beta.steps", 0, "an integer >= 1"));
                }
                Ok(())
            }
            BetaSchedule::Cyclic {
                start,
                end,
                cycle,
                fraction,
            } => {
                finite_nonneg("beta.start", start)?;
                finite_nonneg("beta.end", end)?;
                if cycle == 0 {
                    return Err(invalid("beta.cycle", 0, "an integer >= 1"));
                }
                if !(0.0..1.0).contains(&fraction) {
                    return Err(invalid("beta.fraction", fraction, "0 <= fraction < 1"));
                }
                Ok(())
            }
            BetaSchedule::Sigmoid { start, end } => {
                finite_nonneg("beta.start", start)?;
                finite_nonneg("beta.end", end)
            }
            BetaSchedule::Decay { start, end, steps } => {
                for (key, v) in [("beta.start", start), ("beta.end", end)] {
                    if !(v.is_finite() && v > 0.0) {
                        return Err(invalid(key, v, "a finite number > 0 (decay is geometric)"));
                    }
                }
                if steps == 0 {
                    return Err(invalid("beta.steps", 0, "an integer >= 1"));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn constant_and_monotonic() {
        assert_eq!(BetaSchedule::Constant { beta: 0.3 }.beta(12345), 0.3);
        let m = BetaSchedule::default();
        assert_eq!(m.beta(0), 0.0);
        assert_relative_eq!(m.beta(500), 0.25);
        assert_relative_eq!(m.beta(2000), 1.0);
        assert_eq!(m.beta(9999), 1.0);
    }

    #[test]
    fn cyclic_ramps_then_holds() {
        let c = BetaSchedule::Cyclic {
            start: 0.0,
            end: 1.0,
            cycle: 1000,
            fraction: 0.5,
        };
        // ramp = ceil(1000 - 500) = 500
        assert_eq!(c.beta(0), 0.0);
        assert_relative_eq!(c.beta(250), 0.5);
        assert_eq!(c.beta(500), 1.0);
        assert_eq!(c.beta(999), 1.0);
        assert_eq!(c.beta(1000), 0.0);
        assert_relative_eq!(c.beta(1100), 0.2);
        let odd = BetaSchedule::Cyclic {
            start: 0.0,
            end: 1.0,
            cycle: 7,
            fraction: 0.5,
        };
        // ramp = ceil(7 - 3.5) = 4
        assert_relative_eq!(odd.beta(2), 0.5);
        assert_eq!(odd.beta(4), 1.0);
    }

    #[test]
    fn sigmoid_matches_the_closed_form() {
        let s = BetaSchedule::Sigmoid {
            start: 0.0,
            end: 1.0,
        };
        assert_relative_eq!(s.beta(0), 1.0 / 1.5f64.powf(20.0), max_relative = 1e-12);
        assert_relative_eq!(
            s.beta(300),
            1.0 / (1.0 + 0.5 * (-3.0f64).exp()).powf(20.0),
            max_relative = 1e-12
        );
        assert!(s.beta(2000) > 0.999);
        let mut prev = -1.0;
        for t in (0..3000).step_by(50) {
            let b = s.beta(t);
            assert!(b > prev);
            prev = b;
        }
    }

    #[test]
    fn decay_is_geometric() {
        let d = BetaSchedule::Decay {
            start: 1.0,
            end: 0.01,
            steps: 100,
        };
        assert_relative_eq!(d.beta(0), 1.0);
        assert_relative_eq!(d.beta(50), 0.1, max_relative = 1e-12);
        assert_relative_eq!(d.beta(100), 0.01);
        assert_eq!(d.beta(1000), 0.01);
    }

    #[test]
    fn invalid_parameters_are_named() {
        let bad = BetaSchedule::Decay {
            start: 0.0,
            end: 1.0,
            steps: 10,
        };
        assert!(matches!(
            bad.validate(),
            Err(InvalidConfig {
                key: "beta.start",
                ..
            })
        ));
        let bad = BetaSchedule::Cyclic {
            start: 0.0,
            end: 1.0,
            cycle: 10,
            fraction: 1.5,
        };
        assert!(matches!(
            bad.validate(),
            Err(InvalidConfig {
                key: "beta.fraction",
                ..
            })
        ));
        assert!(BetaSchedule::default().validate().is_ok());
    }
}
