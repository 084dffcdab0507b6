//! The controls as one stack composed by type: each control is an async function of the
//! request and what comes next, and a stack of them is a nested type the compiler inlines.
//! axum's `from_fn` cloned the rest of the stack and boxed two values for every layer of
//! every call (quadratic in the depth); here a call costs one box for the whole stack.

use axum::extract::Request;
use axum::response::Response;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What comes after a control: the remaining controls and, at the end, a handler or router.
pub trait Next: Send + Sync + 'static {
    fn run(&self, req: Request) -> impl Future<Output = Response> + Send + '_;
}

/// One control, given the rest of the stack.
pub trait Stage<N: Next>: Send + Sync + 'static {
    /// The name of the control's span in a trace; empty: none (the layers that start and
    /// time the request).
    const SPAN: &'static str = "";

    fn call<'a>(&'a self, req: Request, next: &'a N) -> impl Future<Output = Response> + Send + 'a;
}

/// A control followed by the rest of the stack.
pub struct Then<S, N>(pub S, pub N);

impl<S: Stage<N>, N: Next> Next for Then<S, N> {
    fn run(&self, req: Request) -> impl Future<Output = Response> + Send + '_ {
        let trace = if S::SPAN.is_empty() {
            None
        } else {
            crate::otel::current(&req)
        };
        async move {
            match trace {
                None => self.0.call(req, &self.1).await,
                Some(t) => {
                    let i = t.enter(S::SPAN);
                    let response = self.0.call(req, &self.1).await;
                    t.leave(i);
                    response
                }
            }
        }
    }
}

/// The end of a stack that is a tower service (a route, a router). A service needs `&mut`
/// to be called, so each call clones it: for axum's routes and routers that is a reference
/// count or one small box.
pub struct End<T>(pub T);

impl<T> Next for End<T>
where
    T: tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    T::Future: Send,
{
    fn run(&self, req: Request) -> impl Future<Output = Response> + Send + '_ {
        let service = self.0.clone();
        async move {
            match tower::ServiceExt::oneshot(service, req).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    }
}

/// A stack as a tower service: one `Arc` clone and one boxed future per call.
pub struct Stack<C>(Arc<C>);

impl<C> Clone for Stack<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C: Next> Stack<C> {
    pub fn new(chain: C) -> Self {
        Self(Arc::new(chain))
    }

    /// Runs the stack on one request.
    pub async fn run(&self, req: Request) -> Response {
        self.0.run(req).await
    }
}

impl<C: Next> tower::Service<Request> for Stack<C> {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let chain = self.0.clone();
        Box::pin(async move { Ok(chain.run(req).await) })
    }
}

/// Puts a stack in front of each route of a router (`Router::layer`, `route_layer`):
/// `build` is given the route as the stack's end.
#[derive(Clone)]
pub struct StackLayer<F>(pub F);

impl<F, T, C> tower::Layer<T> for StackLayer<F>
where
    F: Fn(End<T>) -> C,
    C: Next,
{
    type Service = Stack<C>;

    fn layer(&self, inner: T) -> Stack<C> {
        Stack::new((self.0)(End(inner)))
    }
}

/// Declares controls as stages: `stages! { Name(StateType) => path::to::function as "span", ... }`.
/// Each function has the shape `async fn(&StateType, Request, &impl Next) -> Response`;
/// the span name (`""` for none) names the control in traces.
macro_rules! stages {
    ($($name:ident($state:ty) => $f:path as $span:literal),* $(,)?) => {
        $(
            pub struct $name(pub $state);

            impl<N: $crate::stack::Next> $crate::stack::Stage<N> for $name {
                const SPAN: &'static str = $span;

                fn call<'a>(
                    &'a self,
                    req: ::axum::extract::Request,
                    next: &'a N,
                ) -> impl ::std::future::Future<Output = ::axum::response::Response> + Send + 'a
                {
                    $f(&self.0, req, next)
                }
            }
        )*
    };
}
pub(crate) use stages;

/// Nests controls outermost first: `chain!(a, b, c => end)` is `Then(a, Then(b, Then(c, end)))`.
macro_rules! chain {
    ($stage:expr => $end:expr) => {
        $crate::stack::Then($stage, $end)
    };
    ($stage:expr, $($rest:expr),+ => $end:expr) => {
        $crate::stack::Then($stage, $crate::stack::chain!($($rest),+ => $end))
    };
}
pub(crate) use chain;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use std::sync::Mutex;

    // A control that records its name on the way in and out, to check the order.
    async fn mark<N: Next>(
        log: &Arc<(&'static str, Mutex<Vec<String>>)>,
        req: Request,
        next: &N,
    ) -> Response {
        log.1.lock().unwrap().push(format!("{} in", log.0));
        let r = next.run(req).await;
        log.1.lock().unwrap().push(format!("{} out", log.0));
        r
    }

    async fn refuse<N: Next>(_: &(), _req: Request, _next: &N) -> Response {
        Response::builder().status(403).body(Body::empty()).unwrap()
    }

    stages! {
        Mark(Arc<(&'static str, Mutex<Vec<String>>)>) => mark as "mark",
        Refuse(()) => refuse as "",
    }

    #[tokio::test]
    async fn controls_run_outermost_first_and_can_answer_early() {
        let shared = Arc::new(Mutex::new(Vec::new()));
        let a = Arc::new(("a", Mutex::new(Vec::new())));
        let b = Arc::new(("b", Mutex::new(Vec::new())));
        let hits = shared.clone();
        let end = tower::service_fn(move |_req: Request| {
            hits.lock().unwrap().push("end".to_owned());
            async { Ok::<_, Infallible>(Response::new(Body::empty())) }
        });
        let stack = Stack::new(Then(Mark(a.clone()), Then(Mark(b.clone()), End(end))));
        let r = stack.run(Request::new(Body::empty())).await;
        assert_eq!(r.status(), 200);
        assert_eq!(*a.1.lock().unwrap(), ["a in", "a out"]);
        assert_eq!(*b.1.lock().unwrap(), ["b in", "b out"]);
        assert_eq!(*shared.lock().unwrap(), ["end"]);

        let refusing = Stack::new(Then(
            Refuse(()),
            Then(
                Mark(b.clone()),
                End(tower::service_fn(|_req: Request| async {
                    Ok::<_, Infallible>(Response::new(Body::empty()))
                })),
            ),
        ));
        let r = refusing.run(Request::new(Body::empty())).await;
        assert_eq!(r.status(), 403);
        assert_eq!(
            b.1.lock().unwrap().len(),
            2,
            "a refusal never reaches the rest"
        );
    }
}
