//! A response body wrapper that shows every data frame to an observer as it passes and tells
//! it, exactly once, how the body ended: completed, failed, or dropped early (the client hung
//! up). The idempotency and audit layers both observe responses this way.
//!
//! hyper stops polling a body as soon as it reports its end, so "ended" is detected both on
//! the final `None` and on a data frame after which the body says it is finished.

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

pub trait Observer: Send + 'static {
    fn data(&mut self, chunk: &Bytes);
    /// Called once: `completed` is true when the whole body was sent.
    fn end(&mut self, completed: bool);
}

pub struct TapBody<O: Observer> {
    inner: Body,
    observer: Option<O>,
}

impl<O: Observer> TapBody<O> {
    pub fn new(inner: Body, observer: O) -> Self {
        Self {
            inner,
            observer: Some(observer),
        }
    }

    fn end(&mut self, completed: bool) {
        if let Some(mut o) = self.observer.take() {
            o.end(completed);
        }
    }
}

impl<O: Observer + Unpin> http_body::Body for TapBody<O> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(o)) = (frame.data_ref(), this.observer.as_mut()) {
                    o.data(data);
                }
                if this.inner.is_end_stream() {
                    this.end(true);
                }
            }
            Poll::Ready(None) => this.end(true),
            Poll::Ready(Some(Err(_))) => this.end(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<O: Observer> Drop for TapBody<O> {
    fn drop(&mut self) {
        // An empty body may never be polled; it still completed.
        let completed = self.inner.is_end_stream();
        self.end(completed);
    }
}
