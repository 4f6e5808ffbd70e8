//! Following one job: its WebSocket (the server's snapshot on every connect brings the view up
//! to date), reconnects with backoff and full jitter, and polling `GET /api/status` once the
//! socket keeps failing. Everything stops when the job finishes or its view goes away.
use super::{fetch_status, socket_origin};
use crate::{
    domain::{JobId, JobStatus},
    ui::{backoff::Backoff, job_card::Connection},
};
use leptos::{
    leptos_dom::helpers::{set_interval_with_handle, set_timeout_with_handle},
    prelude::*,
};
use std::{
    cell::RefCell,
    rc::{Rc, Weak},
    time::Duration,
};
use wasm_bindgen::{closure::Closure, JsCast};
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// Consecutive socket failures after which the page also polls.
const POLL_AFTER_FAILURES: u32 = 3;
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Owns the connection to one job; dropping it ends it.
pub struct Follower(Rc<RefCell<Inner>>);

struct Inner {
    id: JobId,
    status: RwSignal<Option<JobStatus>>,
    connection: RwSignal<Connection>,
    socket: Option<WebSocket>,
    /// Handlers of the current and earlier sockets. Kept until the follower goes, because a
    /// handler may be running when its socket is replaced.
    handlers: Vec<SocketHandlers>,
    failures: u32,
    reconnect: Option<TimeoutHandle>,
    poll: Option<IntervalHandle>,
    stopped: bool,
}

struct SocketHandlers {
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

impl Follower {
    pub fn start(
        id: JobId,
        status: RwSignal<Option<JobStatus>>,
        connection: RwSignal<Connection>,
    ) -> Self {
        let inner = Rc::new(RefCell::new(Inner {
            id,
            status,
            connection,
            socket: None,
            handlers: Vec::new(),
            failures: 0,
            reconnect: None,
            poll: None,
            stopped: false,
        }));
        connect(&inner);
        Follower(inner)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        stop(&self.0);
    }
}

fn connect(inner: &Rc<RefCell<Inner>>) {
    let (id, stopped) = {
        let state = inner.borrow();
        (state.id, state.stopped)
    };
    if stopped {
        return;
    }
    let Ok(socket) = WebSocket::new(&format!("{}/ws/status/{id}", socket_origin())) else {
        socket_failed(inner);
        return;
    };
    let weak = Rc::downgrade(inner);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
        let weak = weak.clone();
        move |event: MessageEvent| {
            let Some(inner) = weak.upgrade() else { return };
            let Some(job) = event
                .data()
                .as_string()
                .and_then(|text| crate::ui::loaded::from_json::<JobStatus>(&text).ok())
            else {
                return;
            };
            {
                let mut state = inner.borrow_mut();
                // A message means the socket works: back to live, no more polling.
                state.failures = 0;
                if let Some(poll) = state.poll.take() {
                    poll.clear();
                }
                state.connection.set(Connection::Live);
            }
            apply(&inner, job);
        }
    });
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |_: CloseEvent| {
        if let Some(inner) = weak.upgrade() {
            socket_failed(&inner);
        }
    });
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let mut state = inner.borrow_mut();
    if let Some(old) = state.socket.replace(socket) {
        detach(&old);
    }
    state.handlers.push(SocketHandlers {
        _message: on_message,
        _close: on_close,
    });
}

/// The socket closed before the job finished (or could not open): reconnect after a jittered
/// wait, and poll meanwhile once failures pile up.
fn socket_failed(inner: &Rc<RefCell<Inner>>) {
    let mut state = inner.borrow_mut();
    if state.stopped
        || state
            .status
            .with_untracked(|job| job.as_ref().is_some_and(JobStatus::is_terminal))
    {
        return;
    }
    let attempt = state.failures;
    state.failures += 1;
    if state.failures >= POLL_AFTER_FAILURES && state.poll.is_none() {
        state.poll = start_polling(Rc::downgrade(inner), state.id);
    }
    let delay = Backoff::SOCKET.delay_ms(attempt, js_sys::Math::random());
    state.connection.set(if state.poll.is_some() {
        Connection::Polling
    } else {
        Connection::Reconnecting
    });
    let weak = Rc::downgrade(inner);
    state.reconnect = set_timeout_with_handle(
        move || {
            if let Some(inner) = weak.upgrade() {
                connect(&inner);
            }
        },
        Duration::from_millis(u64::from(delay)),
    )
    .ok();
}

fn start_polling(weak: Weak<RefCell<Inner>>, id: JobId) -> Option<IntervalHandle> {
    set_interval_with_handle(
        move || {
            let weak = weak.clone();
            leptos::task::spawn_local(async move {
                // A failed poll is simply retried at the next tick.
                if let Ok(job) = fetch_status(id).await {
                    if let Some(inner) = weak.upgrade() {
                        apply(&inner, job);
                    }
                }
            });
        },
        POLL_EVERY,
    )
    .ok()
}

/// Shows a newer state; a finished job needs no connection any more.
fn apply(inner: &Rc<RefCell<Inner>>, job: JobStatus) {
    let (status, stopped) = {
        let state = inner.borrow();
        (state.status, state.stopped)
    };
    if stopped {
        return;
    }
    // A poll answered late must not undo a newer state from the socket.
    if status.with_untracked(|shown| shown.as_ref().is_some_and(|shown| job.is_older_than(shown))) {
        return;
    }
    let finished = job.is_terminal();
    status.set(Some(job));
    if finished {
        stop(inner);
    }
}

fn stop(inner: &Rc<RefCell<Inner>>) {
    let mut state = inner.borrow_mut();
    if state.stopped {
        return;
    }
    state.stopped = true;
    if let Some(reconnect) = state.reconnect.take() {
        reconnect.clear();
    }
    if let Some(poll) = state.poll.take() {
        poll.clear();
    }
    if let Some(socket) = state.socket.take() {
        detach(&socket);
    }
    state.connection.set(Connection::Closed);
}

fn detach(socket: &WebSocket) {
    socket.set_onmessage(None);
    socket.set_onclose(None);
    let _ = socket.close();
}
