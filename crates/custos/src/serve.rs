//! `custos init` and `custos serve`.

use crate::identity::{open, DEFAULT_TENANT};
use crate::Ctx;
use anyhow::{Context, Result};
use custos_core::config::{LogFormat, ProviderKind, STARTER_TOML};
use custos_core::Config;
use custos_gateway::Gateway;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

pub async fn init(
    path: &Path,
    force: bool,
    database_url: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let existed = path.exists();
    if existed && !force {
        eprintln!(
            "{} already exists; keeping it (use --force to overwrite)",
            path.display()
        );
    } else {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, STARTER_TOML)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let url = config.database_url(database_url);
    let store = custos_store::Store::open(&url).await.with_context(|| {
        format!(
            "cannot create the database {}",
            custos_store::redact_url(&url)
        )
    })?;
    let control = custos_control::Control::new(
        store.clone(),
        std::sync::Arc::new(crate::control::engine_for(&config)?),
        custos_control::Settings::from_config(&config),
    );
    control
        .ensure_default_tenant(&custos_control::Actor::local(&crate::audit::os_login_name()))
        .await?;
    if json {
        crate::output::json(
            &serde_json::json!({"config": path, "database": custos_store::redact_url(&url), "tenant": DEFAULT_TENANT}),
        );
    } else {
        if !existed || force {
            eprintln!("wrote {}", path.display());
        }
        eprintln!(
            "database ready: {} (tenant \"{DEFAULT_TENANT}\")",
            custos_store::redact_url(&url)
        );
        let me = invoked_as();
        eprintln!("next: {me} teams create ml && {me} apps create chatbot --team ml && {me} keys create --team ml --app chatbot");
    }
    Ok(ExitCode::SUCCESS)
}

/// How the user runs custos (`./dev` sets this), for hints they can paste.
fn invoked_as() -> String {
    std::env::var("CUSTOS_INVOKED_AS").unwrap_or_else(|_| "custos".into())
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal, and never with NO_COLOR set (no-color.org): log files
    // and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

pub async fn serve(ctx: Ctx, listen: Option<SocketAddr>) -> Result<ExitCode> {
    init_logging(&ctx.config);
    let store = open(&ctx).await?;
    let control = crate::control::open(&ctx).await?;
    control
        .ensure_default_tenant(&custos_control::Actor::system("custos serve"))
        .await?;
    let config_path = ctx.config_path.clone();
    let addr = listen.unwrap_or(ctx.config.server.listen);
    let providers: Vec<String> = ctx
        .config
        .providers
        .iter()
        .map(|p| {
            format!(
                "{} ({})",
                p.name,
                match p.kind {
                    ProviderKind::Mock => "mock",
                    ProviderKind::Openai => "openai-compatible",
                }
            )
        })
        .collect();
    let models = ctx.config.models.len();
    let mut gateway = match Gateway::new(ctx.config, store.clone()).await {
        Ok(g) => g,
        Err(
            e @ (custos_gateway::GatewayError::Provider(_)
            | custos_gateway::GatewayError::CheckpointKey { .. }),
        ) => {
            eprintln!("error: invalid configuration: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    // Configuration is evidence too: what this process loaded, and what changed since.
    gateway
        .record_config_changes(config_path)
        .await
        .context("cannot record the loaded configuration in the audit ledger")?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr}; is another process using it? choose another with --listen"
        )
    })?;
    let local = listener.local_addr()?;
    let keys = gateway.state().keys.len();
    let config = &gateway.state().config;
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    eprintln!("custos gateway listening on {scheme}://{local}/v1");
    let authz = gateway.state().authz.len();
    let issuers = config.auth.jwt.len();
    eprintln!(
        "  identity: API keys{}{}   authz: {authz} Cedar policies ({})",
        if issuers > 0 {
            format!(", JWT from {issuers} issuer(s)")
        } else {
            String::new()
        },
        match &config.server.tls {
            Some(t) if t.client_ca_file.is_some() => ", client certificates (mTLS)",
            _ => "",
        },
        if config.authz.policies.is_empty() {
            "built-in roles"
        } else {
            "from custos.toml"
        },
    );
    eprintln!(
        "  config: {}   database: {}   providers: {}   models: {models}   keys: {keys}",
        ctx.config_path
            .as_deref()
            .map_or_else(|| "(built-in defaults)".into(), |p| p.display().to_string()),
        custos_store::redact_url(&ctx.database_url),
        providers.join(", "),
    );
    if keys == 0 {
        let me = invoked_as();
        eprintln!("  no API keys yet; in another terminal create one:");
        eprintln!("    {me} teams create ml && {me} apps create chatbot --team ml");
        eprintln!("    export OPENAI_API_KEY=$({me} keys create --team ml --app chatbot)");
    }
    eprintln!(
        "  try: curl {scheme}://{local}/v1/models -H \"Authorization: Bearer $OPENAI_API_KEY\""
    );
    if config.console.enabled {
        eprintln!(
            "  console: {scheme}://{local}/console (sign in with a key that holds a role: {me} apps create console --team ml && {me} keys create --team ml --app console --role tenant-admin)",
            me = invoked_as()
        );
    }
    tracing::info!(listen = %local, "custos started");
    gateway.serve(listener, shutdown_signal()).await?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
