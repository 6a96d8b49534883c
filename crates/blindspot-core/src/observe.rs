//! What training reports while it runs. blindspot-core never prints and never draws: a
//! [`crate::Trainer`] tells the [`TrainObserver`] its caller gives it (none: silence), and the
//! caller decides what to show (the `blindspot` binary draws a bar on a terminal and writes
//! plain lines elsewhere).

/// How a training run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainStart {
    /// From step 0.
    Fresh,
    /// From its last intact checkpoint, at this step.
    Resumed(u64),
    /// Already trained to this step (at least the total): nothing to do.
    Finished(u64),
}

/// One logged step, as training reports it (the same numbers as its line of `log.jsonl`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The step just completed (1-based).
    pub step: u64,
    /// The steps of the whole run.
    pub total: u64,
    /// The training loss of the step.
    pub loss: f64,
    /// Images per second since the previous logged step.
    pub images_per_s: f64,
    /// The validation loss, when this step validated.
    pub val_loss: Option<f64>,
    /// The best validation loss so far.
    pub best_val: Option<f64>,
    /// The seconds left at the pace since this run (or resume) started.
    pub seconds_left: f64,
}

/// Receives what a training run reports. Every method does nothing by default.
pub trait TrainObserver {
    /// Training of the run named `run` (its folder's name) starts; `total` steps in all.
    fn started(&mut self, _run: &str, _start: TrainStart, _total: u64) {}
    /// A step finished (called after every optimizer step).
    fn stepped(&mut self, _step: u64) {}
    /// A step was logged.
    fn logged(&mut self, _report: &StepReport) {}
    /// Something the user should know that does not stop training (a corrupt checkpoint was
    /// skipped, for example).
    fn warning(&mut self, _message: &str) {}
    /// Training stopped: `finished` after the last step, `false` at a non-finite loss. Other
    /// errors return from [`crate::Trainer::fit`] without this call; the caller sees them there.
    fn stopped(&mut self, _finished: bool) {}
}

/// The observer of a trainer nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl TrainObserver for Silent {}
