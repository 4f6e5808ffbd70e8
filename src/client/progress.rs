//! What a person sees while jobs run, on standard error only: a bar per file (bytes, rate, ETA)
//! on a terminal, a plain line every few seconds when standard error is not one, or nothing.
use crate::domain::JobStatus;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::{
    io::IsTerminal,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Plain lines come at most this often per file.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// How progress is shown for the whole run.
pub enum Display {
    Bars(MultiProgress),
    Plain,
    Quiet,
}

impl Display {
    pub fn new(quiet: bool) -> Self {
        if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            Display::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Display::Plain
        }
    }

    /// Progress of one file or job, called `label` (a file name, shown as sent).
    pub fn item(&self, label: &str) -> Item {
        let shown = match self {
            Display::Bars(bars) => {
                let bar = bars.add(ProgressBar::new(0));
                bar.set_style(bytes_style());
                bar.set_prefix(label.to_owned());
                bar.enable_steady_tick(Duration::from_millis(200));
                Shown::Bar(bar)
            }
            Display::Plain => Shown::Plain(Arc::new(Mutex::new(Plain {
                started: Instant::now(),
                last: None,
            }))),
            Display::Quiet => Shown::Nothing,
        };
        Item {
            label: label.to_owned(),
            shown,
        }
    }

    /// Runs `print` (a result on standard output) with the bars out of its way.
    pub fn beside(&self, print: impl FnOnce()) {
        match self {
            Display::Bars(bars) => bars.suspend(print),
            _ => print(),
        }
    }

    /// A line for people beside the bars (a note, a warning).
    pub fn note(&self, line: &str) {
        match self {
            Display::Bars(bars) => {
                let _ = bars.println(line);
            }
            Display::Plain => eprintln!("{line}"),
            Display::Quiet => {}
        }
    }
}

#[derive(Clone)]
enum Shown {
    Bar(ProgressBar),
    Plain(Arc<Mutex<Plain>>),
    Nothing,
}

struct Plain {
    started: Instant,
    last: Option<Instant>,
}

/// The progress of one file or job; clones show the same progress.
#[derive(Clone)]
pub struct Item {
    label: String,
    shown: Shown,
}

impl Item {
    /// A new phase (`hashing`, `uploading`, `processing`…) over `total` bytes (or percent).
    pub fn phase(&self, name: &str, total: Option<u64>, position: u64) {
        match &self.shown {
            Shown::Bar(bar) => {
                bar.set_style(bytes_style());
                bar.set_message(name.to_owned());
                match total {
                    Some(total) => bar.set_length(total),
                    None => bar.unset_length(),
                }
                bar.reset_eta();
                bar.set_position(position);
            }
            Shown::Plain(plain) => {
                if let Ok(mut plain) = plain.lock() {
                    plain.started = Instant::now();
                    plain.last = Some(Instant::now());
                }
                eprintln!("{}: {name}", self.label);
            }
            Shown::Nothing => {}
        }
    }

    /// Where the current phase is: `position` bytes of `total`.
    pub fn position(&self, name: &str, position: u64, total: Option<u64>) {
        match &self.shown {
            Shown::Bar(bar) => bar.set_position(position),
            Shown::Plain(plain) => {
                let Ok(mut plain) = plain.lock() else { return };
                let now = Instant::now();
                if plain.last.is_some_and(|last| now - last < PLAIN_EVERY) {
                    return;
                }
                plain.last = Some(now);
                let seconds = (now - plain.started).as_secs_f64().max(0.001);
                let of = total.map_or(String::new(), |total| {
                    format!(" of {} ({}%)", HumanBytes(total), percent(position, total))
                });
                eprintln!(
                    "{}: {name} {}{of}, {}/s",
                    self.label,
                    HumanBytes(position),
                    HumanBytes((position as f64 / seconds) as u64)
                );
            }
            Shown::Nothing => {}
        }
    }

    /// A job's processing as the server reports it (0–100 over the whole job).
    pub fn job(&self, job: &JobStatus) {
        let state = job.status.as_str();
        match &self.shown {
            Shown::Bar(bar) => {
                if bar.length() != Some(100) || bar.message() != state {
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:.bold} {msg:10} [{bar:30}] {pos}%")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                }
                bar.set_message(state.to_owned());
                bar.set_length(100);
                bar.set_position(u64::from(job.progress));
            }
            Shown::Plain(plain) => {
                let Ok(mut plain) = plain.lock() else { return };
                let now = Instant::now();
                if !job.is_terminal() && plain.last.is_some_and(|last| now - last < PLAIN_EVERY) {
                    return;
                }
                plain.last = Some(now);
                eprintln!("{}: {state} {}%", self.label, job.progress);
            }
            Shown::Nothing => {}
        }
    }

    /// The item is done: the bar stays with its last words, a plain line says them.
    pub fn finish(&self, words: &str) {
        match &self.shown {
            Shown::Bar(bar) => bar.finish_with_message(words.to_owned()),
            Shown::Plain(_) => eprintln!("{}: {words}", self.label),
            Shown::Nothing => {}
        }
    }
}

fn percent(position: u64, total: u64) -> u64 {
    position
        .saturating_mul(100)
        .checked_div(total)
        .unwrap_or(100)
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:.bold} {msg:10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}
