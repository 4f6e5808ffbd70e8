//! The Start page's uploads, once there are any: the overall bar, a card per queued file, a
//! card per metadata-only job started here, and the queue's rate ticker. Its code (with all
//! that sends files and follows jobs) loads apart, when the first one starts (`ui::split`).
use super::{
    format::{format_bytes, format_elapsed},
    job_card::JobCard,
    queue::Queue,
    transfer::{percent, time_left_ms},
    upload_card::UploadCard,
};
use crate::domain::JobStatus;
use leptos::prelude::*;

#[component]
pub fn Uploads(queue: Queue, started: RwSignal<Vec<JobStatus>>) -> impl IntoView {
    drive(queue);
    let totals = move || queue.totals();
    let overall = move || {
        let totals = totals();
        let mut parts = vec![
            format!("{} of {} files uploaded", totals.files_done, totals.files),
            format!(
                "{} of {}",
                format_bytes(totals.bytes_done),
                format_bytes(totals.bytes)
            ),
        ];
        if totals.sending {
            if let Some(rate) = queue.rate.get() {
                parts.push(format!("{}/s", format_bytes(rate)));
                if let Some(ms) =
                    time_left_ms(totals.bytes - totals.bytes_done.min(totals.bytes), rate)
                {
                    parts.push(format!("{} left", format_elapsed(ms)));
                }
            }
        }
        parts.join(" · ")
    };
    view! {
        <Show when=move || queue.files.with(|files| !files.is_empty())>
            <section class="overall" aria-label="All uploads">
                <progress
                    id="overall-progress"
                    max="100"
                    value=move || { let t = totals(); percent(t.bytes_done, t.bytes) }
                    aria-label="All uploads"
                ></progress>
                <p id="overall" class="muted">{overall}</p>
            </section>
        </Show>
        <ul class="jobs uploads">
            <For each=move || queue.files.get() key=|file| file.key let:file>
                <UploadCard file queue />
            </For>
        </ul>
        <ul class="jobs">
            <For each=move || started.get() key=|job| job.job_id let:job>
                <JobCard id=job.job_id initial=Some(job) upload=None />
            </For>
        </ul>
    }
}

/// Hands the queue the code that sends its files, starts what is waiting, and samples the
/// bytes sent every half second for the rates. Browser only.
fn drive(queue: Queue) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::leptos_dom::helpers::set_interval_with_handle;
        queue.drive_with(super::browser::transfers::pump);
        queue.pump();
        let ticker =
            set_interval_with_handle(move || tick(queue), std::time::Duration::from_millis(500))
                .ok();
        let ticker = send_wrapper::SendWrapper::new(ticker);
        on_cleanup(move || {
            if let Some(ticker) = ticker.take() {
                ticker.clear();
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = queue;
}

/// Samples the bytes sent, for each file's rate and the overall one.
#[cfg(feature = "hydrate")]
fn tick(queue: Queue) {
    use super::queue::Phase;
    let now = js_sys::Date::now();
    let mut any = false;
    queue.files.with_untracked(|files| {
        for file in files {
            if file.phase.get_untracked() == Phase::Sending {
                any = true;
                let done = file.sent.get_untracked().map_or(0, |(done, _)| done);
                file.meter.update_value(|meter| meter.record(now, done));
                let rate = file.meter.with_value(|meter| meter.bytes_per_second());
                if file.rate.get_untracked() != rate {
                    file.rate.set(rate);
                }
            }
        }
    });
    if any {
        let done = queue.files.with_untracked(|files| {
            files
                .iter()
                .map(|file| {
                    if file.finished.get_untracked() {
                        file.size
                    } else {
                        file.sent.get_untracked().map_or(0, |(done, _)| done)
                    }
                })
                .sum::<u64>()
        });
        queue.meter.update_value(|meter| meter.record(now, done));
        let rate = queue.meter.with_value(|meter| meter.bytes_per_second());
        if queue.rate.get_untracked() != rate {
            queue.rate.set(rate);
        }
    }
}
