//! The custos data plane: an OpenAI-compatible gateway. Every model call passes one stack of
//! tower layers, one control each — request_id, metrics, audit, authn, call, guard,
//! idempotency, quota, meter, budget — before `proxy` forwards it to its provider.
//! `pipeline.rs` shows the order.

pub mod admin;
pub mod anchor;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod batch;
pub mod body_tap;
pub mod budget;
pub mod call;
pub mod cluster;
pub mod console;
pub mod directory;
pub mod dpia_watch;
pub mod finops;
pub mod guard;
pub mod idempotency;
pub mod meter;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod otel;
pub mod otlp;
pub mod overload;
pub mod pii;
pub mod pipeline;
pub mod problem;
pub mod providers;
pub mod proxy;
pub mod quota;
pub mod refusals;
pub mod registry;
pub mod relay;
pub mod releases;
pub mod request_id;
pub mod route;
pub mod service;
pub mod slo_watch;
pub mod sse;
pub mod stack;
pub mod state;
pub mod texts;
pub mod tls;
pub mod tokens;
pub mod tools;
pub mod webhook;
pub mod witness;

use custos_core::Config;
use custos_store::{Store, StoreError};
use providers::{Provider, ProviderSetupError};
use state::{AppState, Shared};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Runs `refresh` every `interval` until the handle is aborted; a failure is logged as
/// `what` and the next tick tries again.
pub(crate) fn spawn_every<F, Fut, E>(
    interval: std::time::Duration,
    what: &'static str,
    mut refresh: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = refresh().await {
                tracing::warn!(error = %e, "{what}");
            }
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Provider(#[from] ProviderSetupError),
    #[error(transparent)]
    Issuer(#[from] oidc::IssuerError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("authz: {0}")]
    Policy(#[from] custos_authz::policy::PolicyError),
    #[error("cannot load API keys: {0}")]
    Store(#[from] StoreError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error("pii: {0}")]
    Pii(String),
    #[error("console: {0}")]
    Console(String),
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookSetupError),
    #[error("finops.time_zone: {0}")]
    TimeZone(String),
    #[error("audit.checkpoint_key_file {path}: {reason}")]
    CheckpointKey { path: String, reason: String },
    #[error(transparent)]
    Anchor(#[from] anchor::AnchorError),
    #[error("{0}")]
    Registry(String),
    #[error(transparent)]
    Telemetry(#[from] otel::ExporterError),
}

/// A built gateway: its shared state and background tasks.
pub struct Gateway {
    state: AppState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// HTTPS (and mTLS) when `[server.tls]` is configured.
    tls: Option<tokio_rustls::TlsAcceptor>,
    // Not aborted on drop: it finishes committing what it holds.
    _audit_writer: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Builds providers and routes from the configuration and loads the key index.
    pub async fn new(config: Config, store: Store) -> Result<Self, GatewayError> {
        let mut providers: HashMap<String, Arc<Provider>> = HashMap::new();
        for p in &config.providers {
            providers.insert(
                p.name.clone(),
                Arc::new(Provider::from_config(p, &config.server)?),
            );
        }
        let mut routes = route::RouteTable::default();
        for m in &config.models {
            // Config validation guarantees the provider exists.
            if let Some(provider) = providers.get(m.provider.get_ref()) {
                routes.insert(route::Route {
                    model: m.name.clone(),
                    upstream_model: m.upstream_model().to_owned(),
                    provider: provider.clone(),
                    region: config
                        .providers
                        .iter()
                        .find(|p| p.name == *m.provider.get_ref())
                        .and_then(|p| p.region.clone())
                        .unwrap_or_default(),
                    registry: m
                        .registry
                        .as_deref()
                        .map(|r| Arc::new(registry::Gate::new(r))),
                });
            }
        }
        let models: Vec<String> = config.models.iter().map(|m| m.name.clone()).collect();
        tokio::task::spawn_blocking(move || tokens::warm_up(models.iter().map(String::as_str)))
            .await
            .ok();
        let keys = Arc::new(authn::KeyCache::load(&store).await?);
        let issuers = Arc::new(oidc::Issuers::load(&config.auth.jwt).await?);
        let directory = Arc::new(directory::Directory::load(&store).await?);
        let authz = Arc::new(authz::Authz::load(&config.authz)?);
        let idempotency = Arc::new(idempotency::IdempotencyStore::new(&config.idempotency));
        let refresh = config.server.key_refresh_interval.0;
        let (audit, audit_writer) =
            audit::AuditSink::spawn(store.clone(), config.database.commit_interval.0);
        custos_finops::period::time_zone(&config.finops.time_zone)
            .map_err(GatewayError::TimeZone)?;
        let webhooks = Arc::new(webhook::Webhooks::for_events(&config)?);
        let (finops, finops_tasks) =
            finops::Finops::start(store.clone(), &config, audit.clone()).await?;
        let finops_refresh = config.finops.refresh_interval.0;
        let config_pii = config.pii.clone();
        // Hosts traffic may go to are hosts data may go to.
        let injection_hosts: Vec<String> = config
            .injection
            .allow_hosts
            .iter()
            .chain(&config.egress.allow)
            .cloned()
            .collect();
        let pii_key = match std::env::var("CUSTOS_PII_KEY") {
            Ok(v) if !v.trim().is_empty() => Some(
                custos_pii::Key::parse(&v)
                    .map_err(|e| GatewayError::Pii(format!("CUSTOS_PII_KEY: {e}")))?,
            ),
            _ => None,
        };
        let trust = registry::trusted_keys(&config).map_err(GatewayError::Registry)?;
        let control_settings = custos_control::Settings::from_config(&config);
        let (dpia, dpia_sightings) =
            dpia_watch::DpiaWatch::new(store.dpias().await?.into_iter().map(|d| d.trigger_key));
        let cluster = cluster::Cluster::start(&config.cluster).await;
        let otel_stats = Arc::new(otel::Stats::default());
        let (tracer, exporter) = match otel::Tracer::start(&config.telemetry, otel_stats.clone())? {
            Some((t, task)) => (Some(t), Some(task)),
            None => (None, None),
        };
        let console = if config.console.enabled {
            let secret = std::env::var(console::session::SECRET_ENV).ok();
            let sessions = console::session::Sessions::new(
                secret.as_deref(),
                i64::try_from(config.console.session_ttl.0.as_millis()).unwrap_or(i64::MAX),
                config.console.cookies_secure(config.server.tls.is_some()),
            )
            .map_err(|e| GatewayError::Console(e.to_string()))?;
            let oidc = match &config.console.oidc {
                Some(o) => Some(
                    console::oidc::Oidc::new(o, &config.egress).map_err(GatewayError::Console)?,
                ),
                None => None,
            };
            Some(Arc::new(console::Console { sessions, oidc }))
        } else {
            None
        };
        let state = Arc::new(Shared {
            console,
            cluster: cluster.clone(),
            config,
            store: store.clone(),
            keys: keys.clone(),
            issuers: issuers.clone(),
            authz: authz.clone(),
            control: custos_control::Control::new(store.clone(), authz.clone(), control_settings),
            tracer,
            directory: directory.clone(),
            routes,
            trust,
            aliases: Arc::new(releases::Aliases::default()),
            quota: Arc::new(quota::Quotas::default()),
            idempotency: idempotency.clone(),
            metrics: metrics::Metrics::with_otel(otel_stats),
            refusals: Arc::new(refusals::Refusals::default()),
            audit,
            finops: finops.clone(),
            pii: Arc::new(
                custos_pii::Analyzer::new(&config_pii)
                    .map_err(|e| GatewayError::Pii(e.to_string()))?,
            ),
            injection: Arc::new(vec![Box::new(custos_pii::injection::Builtin::new(
                &injection_hosts,
            ))]),
            pii_key,
            pii_salt: std::env::var("CUSTOS_PII_HASH_SALT")
                .unwrap_or_default()
                .into_bytes(),
            dpia,
        });
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                idempotency.sweep();
            }
        });
        let refusals_flush = {
            let state = state.clone();
            spawn_every(
                state.config.audit.refusal_window.0,
                "recording refused calls failed",
                move || {
                    let state = state.clone();
                    async move {
                        state.refusals.flush(&state.audit).await;
                        Ok::<(), std::convert::Infallible>(())
                    }
                },
            )
        };
        let mut tasks = vec![
            refusals_flush,
            keys.spawn_refresher(store.clone(), refresh),
            directory.spawn_refresher(store.clone(), refresh),
            authz.clone().spawn_watcher(),
            sweeper,
            finops.spawn_refresher(store.clone(), finops_refresh, refresh),
        ];
        tasks.extend(finops_tasks);
        tasks.extend(exporter);
        if !webhooks.is_empty() {
            // Receivers new to the database get what happens from this start on.
            let start = store.ledger_size().await?;
            tracing::info!(
                receivers = webhooks.len(),
                source = %state.config.events.source,
                "events: sending ledger events to the webhooks as CloudEvents"
            );
            tasks.extend(
                relay::Relay::new(store.clone(), webhooks, &state.config.events).spawn(start),
            );
        }
        state.aliases.refresh(&state.store, &state.routes).await?;
        tasks.push(releases::Aliases::spawn_refresher(state.clone(), refresh));
        tasks.push(releases::spawn_overdue_watch(state.clone()));
        tasks.push(dpia_watch::spawn_recorder(state.clone(), dpia_sightings));
        tasks.extend(slo_watch::spawn(state.clone()));
        if let Some(c) = &cluster {
            tasks.push(c.spawn_connector());
        }
        tasks.extend(cluster::spawn_listener(state.clone()));
        if state.routes.iter().any(|r| r.registry.is_some()) {
            // Gated routes are checked before the first call is served.
            registry::refresh(&state).await;
            tasks.push(registry::spawn_refresher(state.clone(), refresh));
        }
        if !issuers.is_empty() {
            tasks.push(issuers.spawn_refresher());
        }
        if let Some(path) = &state.config.audit.checkpoint_key_file {
            let fail = |reason: String| GatewayError::CheckpointKey {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            let signer =
                custos_ledger::NoteSigner::from_key(&text).map_err(|e| fail(e.to_string()))?;
            let anchors =
                anchor::Anchors::new(&state.config.audit)?.with_source(&state.config.events.source);
            if anchors.is_empty() {
                tracing::warn!("audit: checkpoints are signed but published nowhere outside the database; set [audit] anchor_dir or anchor_webhooks so that `custos audit verify` can detect a rewritten ledger");
            }
            tasks.push(audit::spawn_checkpointer(
                store,
                signer,
                anchors,
                state.config.audit.checkpoint_interval.0,
                state.config.audit.checkpoint_every,
            ));
        }
        let tls = match &state.config.server.tls {
            Some(t) => Some(tls::acceptor(t)?),
            None => None,
        };
        Ok(Self {
            state,
            tasks,
            tls,
            _audit_writer: audit_writer,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// POSTs a JSON body to `path` through the whole pipeline in-process, as a client holding
    /// `bearer` would over HTTP (every layer runs; only the socket is skipped): how a release
    /// drill sends its calls. Returns the status and at most 16 MiB of the body.
    pub async fn post(&self, path: &str, bearer: &str, body: Vec<u8>) -> (u16, bytes::Bytes) {
        use tower::ServiceExt as _;
        let req = http::Request::post(path)
            .header(http::header::AUTHORIZATION, format!("Bearer {bearer}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .extension(refusals::ClientAddr(std::net::Ipv4Addr::LOCALHOST.into()))
            .body(axum::body::Body::from(body));
        let Ok(req) = req else {
            return (400, bytes::Bytes::new());
        };
        let response = match self.router().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap_or_default();
        (status, body)
    }

    /// Commits every answered call's usage and evidence now.
    pub async fn flush(&self) {
        self.state.refusals.flush(&self.state.audit).await;
        self.state.finops.usage.flush().await;
        self.state.audit.flush().await;
    }

    /// Records a `config.loaded` event for the configuration in force (`cause`: `start` or
    /// `reload`), with its diff against the last one recorded; `origin` is the file it came
    /// from (None: the embedded default).
    pub async fn record_config(
        state: &AppState,
        origin: Option<&std::path::Path>,
        cause: &str,
    ) -> Result<custos_control::ConfigLoaded, custos_control::ControlError> {
        let text = match origin {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                custos_control::ControlError::Invalid(format!("cannot read {}: {e}", p.display()))
            })?),
            None => None,
        };
        let digest = custos_control::ConfigDigest::new(
            &state.config,
            text.as_deref(),
            &state.authz.policy_texts(),
        );
        let origin = origin.map_or_else(|| "embedded".into(), |p| p.display().to_string());
        let actor = custos_control::Actor::system("custos serve");
        let r = state
            .control
            .config_loaded(&actor, &origin, &digest, cause)
            .await?;
        Ok(r.value)
    }

    /// Records the configuration at start, and again after every policy reload.
    pub async fn record_config_changes(
        &mut self,
        origin: Option<std::path::PathBuf>,
    ) -> Result<(), custos_control::ControlError> {
        let loaded = Self::record_config(&self.state, origin.as_deref(), "start").await?;
        if loaded.diff.as_object().is_some_and(|d| !d.is_empty()) && loaded.previous.is_some() {
            tracing::info!(diff = %loaded.diff, "configuration changed since the last start");
        }
        let state = self.state.clone();
        let mut reloads = state.authz.subscribe_reloads();
        self.tasks.push(tokio::spawn(async move {
            while reloads.changed().await.is_ok() {
                match Self::record_config(&state, origin.as_deref(), "reload").await {
                    Ok(l) => tracing::info!(diff = %l.diff, "configuration reload recorded"),
                    Err(e) => {
                        tracing::error!(error = %e, "recording the reloaded configuration failed")
                    }
                }
            }
        }));
        Ok(())
    }

    pub fn router(&self) -> axum::Router {
        pipeline::router(self.state.clone())
    }

    #[cfg(feature = "bench-internals")]
    #[doc(hidden)]
    pub fn router_without_audit(&self) -> axum::Router {
        pipeline::router_without_audit(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then lets in-flight requests finish
    /// for up to `server.shutdown_grace`. Each connection must send request headers within
    /// `server.header_read_timeout`, so idle or trickling clients cannot hold sockets open.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let app = self.router();
        let header_timeout = self.state.config.server.header_read_timeout.0;
        let grace = self.state.config.server.shutdown_grace.0;
        let server = &self.state.config.server;
        let mut max_connections = server.max_connections;
        if let Some(files) = overload::open_file_limit() {
            // Database files, upstream sockets and the listener need descriptors too.
            let room = files.saturating_sub(256).max(16);
            if room < max_connections {
                tracing::warn!(
                    open_file_limit = files,
                    max_connections,
                    "the open-file limit allows only {room} connections; raise it (ulimit -n) to serve server.max_connections"
                );
                max_connections = room;
            }
        }
        let connections =
            overload::ConnectionLimits::new(max_connections, server.max_connections_per_client);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let workers = match server.io_threads() {
            0 => None,
            n => Some(Workers::start(n)?),
        };
        if let Some(w) = &workers {
            tracing::info!(
                threads = w.handles.len(),
                "serving connections on single-threaded runtimes"
            );
        }
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Small request/response writes must not wait for Nagle's algorithm.
            let _ = stream.set_nodelay(true);
            let permit = match connections.admit(peer.ip()) {
                Ok(p) => p,
                Err(why) => {
                    self.state.metrics.connection_shed();
                    overload::shed(stream, why);
                    continue;
                }
            };
            let conn = Connection {
                app: app.clone(),
                tls: self.tls.clone(),
                header_timeout,
                watcher: graceful.watcher(),
                peer,
                permit,
            };
            match &workers {
                None => {
                    tokio::spawn(conn.serve(stream));
                }
                // The socket leaves this runtime's I/O driver for the worker's.
                Some(w) => match stream.into_std() {
                    Ok(std_stream) => w.spawn(async move {
                        match tokio::net::TcpStream::from_std(std_stream) {
                            Ok(stream) => conn.serve(stream).await,
                            Err(e) => tracing::debug!(error = %e, "cannot move a connection to its thread"),
                        }
                    }),
                    Err(e) => tracing::debug!(error = %e, "cannot move a connection to its thread"),
                },
            }
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(grace) => {
                tracing::warn!("shutdown grace period over; closing the remaining connections");
            }
        }
        // Every answered call's usage and evidence is committed before the process exits.
        self.state.refusals.flush(&self.state.audit).await;
        self.state.finops.usage.flush().await;
        self.state.audit.flush().await;
        if let Some(w) = workers {
            w.stop().await;
        }
        Ok(())
    }
}

/// One accepted connection and what serving it needs, wherever it is served.
struct Connection {
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: std::time::Duration,
    watcher: hyper_util::server::graceful::Watcher,
    peer: std::net::SocketAddr,
    permit: overload::ConnectionPermit,
}

impl Connection {
    async fn serve(self, stream: tokio::net::TcpStream) {
        let Connection {
            app,
            tls,
            header_timeout,
            watcher,
            peer,
            permit,
        } = self;
        let _permit = permit;
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout);
        let client = refusals::ClientAddr(peer.ip());
        match tls {
            None => serve_http1(builder, stream, app, client, None, watcher).await,
            Some(acceptor) => {
                // The handshake runs in the connection's task, bounded like slow headers,
                // so a client that never finishes it holds nothing but its own task.
                let tls = match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                };
                let cert = tls::peer_certificate(tls.get_ref().1);
                serve_http1(builder, tls, app, client, cert, watcher).await
            }
        }
    }
}

/// HTTP/1.1 on one connection, each request told the client's address and certificate.
async fn serve_http1<I>(
    builder: hyper::server::conn::http1::Builder,
    io: I,
    app: axum::Router,
    client: refusals::ClientAddr,
    cert: Option<tls::PeerCertificate>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = tower::ServiceExt::map_request(
        app,
        move |mut req: http::Request<hyper::body::Incoming>| {
            if let Some(c) = &cert {
                req.extensions_mut().insert(c.clone());
            }
            req.extensions_mut().insert(client);
            req
        },
    );
    let service = hyper_util::service::TowerToHyperService::new(service);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

thread_local! {
    /// Which connection thread this is (`[server] io_threads`), if any.
    static IO_THREAD: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The index of the connection thread running the caller, `None` off those threads.
pub(crate) fn io_thread() -> Option<usize> {
    IO_THREAD.with(std::cell::Cell::get)
}

/// Single-threaded runtimes, one OS thread each, that connections are handed to in turn
/// (`[server] io_threads`).
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    next: std::sync::atomic::AtomicUsize,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn start(n: usize) -> std::io::Result<Self> {
        let mut w = Workers {
            handles: Vec::with_capacity(n),
            next: std::sync::atomic::AtomicUsize::new(0),
            stops: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            w.handles.push(rt.handle().clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            w.stops.push(stop);
            w.threads.push(
                std::thread::Builder::new()
                    .name(format!("custos-io-{i}"))
                    .spawn(move || {
                        IO_THREAD.with(|t| t.set(Some(i)));
                        rt.block_on(async {
                            let _ = stopped.await;
                        });
                        // Dropping the runtime ends what is left on it: idle provider
                        // connections, and calls past the shutdown grace.
                        drop(rt);
                    })?,
            );
        }
        Ok(w)
    }

    /// Runs `task` on the next thread in turn.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(task);
    }

    async fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
