//! The flow as a model family of the runner (`[model] kind = "flow"`).

use blindspot_core::{Family, InvalidConfig, ModelStat, Result, TrainJob};
use blindspot_kernels::{ConvAutodiffBackend, ConvBackend};
use serde::{Deserialize, Serialize};

use crate::{Flow, FlowConfig};

/// The `[model]` keys of the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowSettings {
    /// Width multiplier of the coupling networks: `64 · width` hidden channels, at least 8
    /// (default 1).
    pub width: f64,
    /// Scales (squeeze, steps, split), 1 to 8; the slice side must be divisible by
    /// `2^levels` (default 3).
    pub levels: usize,
    /// Flow steps per scale, at least 1 (default 4).
    pub steps_per_level: usize,
}

impl Default for FlowSettings {
    fn default() -> Self {
        let c = FlowConfig::new();
        Self {
            width: 1.0,
            levels: c.levels,
            steps_per_level: c.steps_per_level,
        }
    }
}

/// The multi-scale normalizing flow.
#[derive(Debug, Clone, Copy)]
pub struct FlowFamily;

impl Family for FlowFamily {
    const KIND: &'static str = "flow";
    const LABEL: &'static str = "flow";
    const STATISTICS: &'static [ModelStat] = &[ModelStat::BitsPerDim, ModelStat::LogLikelihood];

    type Settings = FlowSettings;
    type Config = FlowConfig;
    type Model<B: ConvBackend> = Flow<B>;

    fn config(s: &FlowSettings, input_size: usize) -> Result<FlowConfig, InvalidConfig> {
        if !(s.width.is_finite() && s.width > 0.0 && s.width <= 16.0) {
            return Err(InvalidConfig::new("width", s.width, "a number in (0, 16]"));
        }
        let c = FlowConfig::new()
            .with_input_size(input_size)
            .with_levels(s.levels)
            .with_steps_per_level(s.steps_per_level)
            .with_hidden(((64.0 * s.width).round() as usize).max(8));
        c.validate()?;
        Ok(c)
    }

    fn init<B: ConvBackend>(c: &FlowConfig, device: &B::Device) -> Result<Flow<B>, InvalidConfig> {
        c.init::<B>(device)
    }

    fn train<B: ConvAutodiffBackend>(c: &FlowConfig, job: &TrainJob<'_, B>) -> Result<()> {
        job.fit(|| c.init::<B>(job.device))
    }
}
