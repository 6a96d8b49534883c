//! What the binary shows while a member trains: blindspot-core reports to a
//! [`TrainObserver`], and this one draws a bar on a terminal or, where nobody watches a
//! terminal (a cluster job's log file), writes plain lines: the start or resume, and every
//! logged step.

use std::io::IsTerminal;

use blindspot_core::{StepReport, TrainObserver, TrainStart};

/// The observer of one member's training; `show` is `[train] progress`.
pub(crate) fn train_progress(show: bool) -> Box<dyn TrainObserver> {
    if !show {
        return Box::new(blindspot_core::Silent);
    }
    Box::new(TrainProgress {
        plain: !std::io::stderr().is_terminal(),
        name: String::new(),
        bar: None,
    })
}

struct TrainProgress {
    plain: bool,
    name: String,
    bar: Option<indicatif::ProgressBar>,
}

impl TrainObserver for TrainProgress {
    fn started(&mut self, run: &str, start: TrainStart, total: u64) {
        self.name = run.to_owned();
        if self.plain {
            let name = run;
            match start {
                TrainStart::Finished(done) => {
                    eprintln!("{name}: already trained ({done} of {total} steps), reused");
                }
                TrainStart::Resumed(step) => {
                    eprintln!(
                        "{name}: resuming at step {step} of {total} from its last checkpoint"
                    );
                }
                TrainStart::Fresh => eprintln!("{name}: training {total} steps"),
            }
            return;
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} {bar:30} {pos}/{len} steps {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        if let TrainStart::Resumed(step) | TrainStart::Finished(step) = start {
            bar.set_position(step);
        }
        self.bar = Some(bar);
    }

    fn stepped(&mut self, step: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
        }
    }

    fn logged(&mut self, report: &StepReport) {
        let mut msg = format!("loss {:.4} {:.1} img/s", report.loss, report.images_per_s);
        if let Some(best) = report.best_val {
            msg.push_str(&format!(" best val {best:.4}"));
        }
        if self.plain {
            let val = report
                .val_loss
                .map_or_else(String::new, |v| format!(" val {v:.4}"));
            eprintln!(
                "{}: step {}/{} {msg}{val} ({:.0} s left)",
                self.name,
                report.step,
                report.total,
                report.seconds_left.round()
            );
        }
        if let Some(bar) = &self.bar {
            bar.set_message(msg);
        }
    }

    fn warning(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }

    fn stopped(&mut self, finished: bool) {
        if let Some(bar) = self.bar.take() {
            if finished {
                bar.finish();
            } else {
                bar.abandon();
            }
        }
    }
}
