//! A cap on the multipart framing read while the handler waits for the next part: the
//! preamble before the first boundary, a boundary line and the part's headers. multer keeps
//! all of it in memory, and searches it again on every read, until it finds what it looks
//! for; without a cap a client could make it hold (and scan) any amount. The body is counted
//! chunk by chunk, never scanned, and only while a part is being looked for, so file data
//! streams through untouched.
use bytes::Bytes;
use futures::Stream;
use std::{
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

/// Framing bytes read while looking for one part before the request is refused: far more
/// than any client's boundary and headers (a 255-byte file name percent-encoded twice is
/// under 2 KiB), far less than worth holding per request.
pub const MAX_FRAMING_BYTES: u64 = 16 * 1024;

/// Shared by the handler, which arms it around each `next_field()`, and the body stream.
#[derive(Clone, Default)]
pub struct FramingBudget(Arc<Mutex<Budget>>);

#[derive(Default)]
struct Budget {
    armed: bool,
    read: u64,
    /// The stream has paused once at the limit to let multer look at what it holds.
    paused: bool,
    exceeded: bool,
}

impl FramingBudget {
    /// The request body, counted against this budget while it is armed.
    pub fn watch<S>(&self, body: S) -> Watched<S> {
        Watched {
            body,
            budget: self.clone(),
        }
    }

    /// Starts counting for the next part: `MAX_FRAMING_BYTES`, plus the chunk that crosses it.
    pub fn arm(&self) {
        *self.lock() = Budget {
            armed: true,
            ..Budget::default()
        };
    }

    /// Stops counting: a part was found (its data is limited elsewhere) or the request ends.
    pub fn disarm(&self) {
        self.lock().armed = false;
    }

    /// Whether the body was cut off because the framing ran over the budget.
    pub fn exceeded(&self) -> bool {
        self.lock().exceeded
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Budget> {
        // The lock is never held across a call that can panic; a poisoned one is still sound.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The framing is larger than `MAX_FRAMING_BYTES`.
#[derive(Debug, thiserror::Error)]
#[error("the multipart framing before a part exceeds {MAX_FRAMING_BYTES} bytes")]
pub struct FramingTooLarge;

/// A body stream counted against a `FramingBudget`.
pub struct Watched<S> {
    body: S,
    budget: FramingBudget,
}

impl<S, E> Stream for Watched<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<axum::BoxError>,
{
    type Item = Result<Bytes, axum::BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        {
            let mut budget = this.budget.lock();
            if budget.armed && budget.read >= MAX_FRAMING_BYTES {
                // multer pulls every chunk that is ready before it looks at any (over HTTP/2
                // a whole flow-control window may be), so a part's headers can already be in
                // hand. Pause once, so it looks; only if it still wants more is it too much.
                if !budget.paused {
                    budget.paused = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                budget.exceeded = true;
                return Poll::Ready(Some(Err(FramingTooLarge.into())));
            }
        }
        let next = Pin::new(&mut this.body).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            let mut budget = this.budget.lock();
            if budget.armed {
                budget.read += chunk.len() as u64;
            }
        }
        next.map(|item| item.map(|chunk| chunk.map_err(Into::into)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{executor::block_on, StreamExt};

    fn chunks(sizes: &[usize]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        futures::stream::iter(
            sizes
                .iter()
                .map(|&size| Ok(Bytes::from(vec![b'x'; size])))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn an_unarmed_budget_counts_nothing() {
        let budget = FramingBudget::default();
        let total: usize = block_on(
            budget
                .watch(chunks(&[64 * 1024; 8]))
                .map(|chunk| chunk.unwrap().len())
                .fold(0, |sum, len| async move { sum + len }),
        );
        assert_eq!(total, 512 * 1024);
        assert!(!budget.exceeded());
    }

    #[test]
    fn an_armed_budget_passes_the_crossing_chunk_then_pauses_once_then_refuses() {
        let budget = FramingBudget::default();
        let mut body = budget.watch(chunks(&[10 * 1024, 10 * 1024, 1, 1]));
        budget.arm();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut next = || Pin::new(&mut body).poll_next(&mut cx);
        assert!(matches!(next(), Poll::Ready(Some(Ok(_)))));
        assert!(matches!(next(), Poll::Ready(Some(Ok(_)))), "crosses 16 KiB");
        assert!(next().is_pending(), "lets the parser look at what it has");
        assert!(matches!(next(), Poll::Ready(Some(Err(_)))));
        assert!(budget.exceeded());
    }

    #[test]
    fn arming_again_starts_a_new_count() {
        let budget = FramingBudget::default();
        let mut body = budget.watch(chunks(&[12 * 1024; 4]));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..4 {
            budget.arm();
            assert!(matches!(
                Pin::new(&mut body).poll_next(&mut cx),
                Poll::Ready(Some(Ok(_)))
            ));
            budget.disarm();
        }
        assert!(!budget.exceeded());
    }
}
