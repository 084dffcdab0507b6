//! Overload protection, before anything else runs: limits on open connections (in total and
//! per client address), a limit on requests in progress (shed with 503 and `Retry-After`,
//! never queued), and a deadline and minimum rate for request bodies, so slow or numerous
//! clients cannot hold the gateway's sockets, memory or tasks (Envoy's overload manager is
//! the model).

use crate::problem::{Problem, ProblemKind};
use crate::stack::Next;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use std::collections::HashMap;
use std::future::Future as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::time::{Instant, Sleep};

/// Seconds a shed client is asked to wait.
const RETRY_AFTER_S: u64 = 1;
/// A body's first seconds, during which its rate is not judged (slow starts, small bodies).
const RATE_GRACE: Duration = Duration::from_secs(5);

/// Counts open connections, in total and per client address.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_client: usize,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    client: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
        let mut map = self
            .limits
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.client);
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerClient,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
        })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits a connection from `client`, or says which limit it would cross.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<ConnectionPermit, Refused> {
        let mut map = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if self.open.load(Ordering::Relaxed) >= self.max_total {
            return Err(Refused::Total);
        }
        let n = map.entry(client).or_insert(0);
        if *n >= self.max_per_client {
            return Err(Refused::PerClient);
        }
        *n += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionPermit {
            limits: self.clone(),
            client,
        })
    }
}

/// The open-file limit of this process (Linux), to keep the connection limit below it.
pub fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Answers a refused connection with a complete 503 and closes it, without reading its
/// request: the client learns why and when to retry, and holds nothing.
pub fn shed(mut stream: tokio::net::TcpStream, why: Refused) {
    tokio::spawn(async move {
        let detail = match why {
            Refused::Total => "custos has as many open connections as it allows; retry shortly",
            Refused::PerClient => {
                "your address has as many open connections as one client may; close some or retry shortly"
            }
        };
        let body = Problem::new(ProblemKind::Overloaded, detail).body();
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: {RETRY_AFTER_S}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await
        })
        .await;
    });
}

/// What the request layer needs: the in-progress limit and the body deadline.
#[derive(Debug)]
pub struct RequestLimits {
    in_progress: Arc<tokio::sync::Semaphore>,
    body_timeout: Duration,
    body_min_rate: u64,
}

impl RequestLimits {
    pub fn new(max_concurrent: usize, body_timeout: Duration, body_min_rate: u64) -> Self {
        Self {
            in_progress: Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
            body_timeout,
            body_min_rate,
        }
    }
}

fn overloaded(detail: &str) -> Response {
    Problem::new(ProblemKind::Overloaded, detail)
        .with_header(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(RETRY_AFTER_S),
        )
        .into_response()
}

/// The outermost layer: sheds requests beyond the in-progress limit (probes excepted) and
/// puts a deadline on the request body.
pub async fn admit<N: Next>(limits: &Arc<RequestLimits>, req: Request, next: &N) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(req).await;
    }
    let Ok(_permit) = limits.in_progress.clone().try_acquire_owned() else {
        return overloaded("custos has as many requests in progress as it allows; retry shortly");
    };
    let req = if http_body::Body::is_end_stream(req.body()) {
        req
    } else {
        let (parts, body) = req.into_parts();
        let body = Body::new(TimedBody::new(
            body,
            limits.body_timeout,
            limits.body_min_rate,
        ));
        Request::from_parts(parts, body)
    };
    next.run(req).await
}

/// A request body that did not arrive in time; readers answer it with 408 `body-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time: {received} bytes in {elapsed_ms} ms ({why})")]
pub struct BodyTimeout {
    pub received: u64,
    pub elapsed_ms: u128,
    why: &'static str,
}

/// A body with a deadline: the whole body within `total`, and after `RATE_GRACE` at least
/// `min_rate` bytes per second on average.
struct TimedBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    start: Instant,
    received: u64,
    total: Duration,
    min_rate: u64,
    done: bool,
}

impl TimedBody {
    fn new(inner: Body, total: Duration, min_rate: u64) -> Self {
        let start = Instant::now();
        let mut b = Self {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(start + total)),
            start,
            received: 0,
            total,
            min_rate,
            done: false,
        };
        let at = b.deadline();
        b.sleep.as_mut().reset(at);
        b
    }

    /// When the body fails if nothing more arrives: when its average rate would fall below
    /// the minimum (never inside the grace period), or at the total deadline.
    fn deadline(&self) -> Instant {
        let by_rate = match self
            .received
            .saturating_mul(1000)
            .checked_div(self.min_rate)
        {
            Some(ms) => Duration::from_millis(ms).max(RATE_GRACE),
            None => self.total,
        };
        self.start + by_rate.min(self.total)
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                let at = this.deadline();
                this.sleep.as_mut().reset(at);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.done = true;
                    let elapsed = this.start.elapsed();
                    Poll::Ready(Some(Err(Box::new(BodyTimeout {
                        received: this.received,
                        elapsed_ms: elapsed.as_millis(),
                        why: if elapsed >= this.total {
                            "over server.body_timeout"
                        } else {
                            "below server.body_min_rate"
                        },
                    }))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The body-timeout error somewhere in `e`'s chain, if that is why a read failed.
pub fn body_timeout_in<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e BodyTimeout> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<BodyTimeout>() {
            return Some(t);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits_count_in_total_and_per_client() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = limits.admit(a).unwrap();
        let _p2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refused::PerClient);
        let _p3 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Refused::Total);
        drop(p1);
        assert_eq!(limits.open(), 2);
        assert!(limits.admit(a).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_times_out_after_the_grace() {
        use http_body_util::BodyExt as _;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let inner = Body::new(http_body_util::StreamBody::new(tokio_stream_from(rx)));
        let body = TimedBody::new(inner, Duration::from_secs(30), 1024);
        let feeder = tokio::spawn(async move {
            for _ in 0..20 {
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        let err = body.collect().await.unwrap_err();
        let timeout = body_timeout_in(err.as_ref()).expect("a body timeout");
        assert!(
            timeout.elapsed_ms >= 5_000 && timeout.elapsed_ms < 7_000,
            "{timeout}"
        );
        feeder.abort();
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
