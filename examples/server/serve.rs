//! Serving: the stack built from the configuration, the metrics recorder, the listener with the
//! examples' connection limits, until Ctrl-C; then the audit log is sealed.

use std::net::SocketAddr;
use std::time::Duration;

use api_policy::stack::{Maybe, StackBackend, StackConfig};
use axum::extract::ConnectInfo;
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::app::{app, conditional};
use crate::cli::Cli;
use crate::data::AppState;
use crate::handlers::admin::deprecation_report;
use crate::serving;
use crate::usage::{demo_tokens, print_usage};

pub async fn serve<B: StackBackend>(
    cli: Cli,
    config: StackConfig,
    backend: B,
    store_name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let limits = serving::Limits::new(
        Duration::from_secs(cli.header_read_timeout),
        Duration::from_secs(cli.keep_alive_timeout),
        cli.max_header_bytes,
        cli.max_connections
            .unwrap_or_else(serving::default_max_connections),
    )?;
    let stack = config.build(&backend)?;
    let tokens = demo_tokens(&config).map_err(|e| format!("cannot mint the demo tokens: {e}"))?;
    let state = AppState::new(
        Duration::from_millis(cli.booking_latency_ms),
        deprecation_report(stack.versioning_layer().get().cloned()),
    );
    // The configured conditional layer, with a lookup of the appointments' own validators.
    let conditional = match &config.conditional {
        Some(section) => Some(conditional(section, backend.validator_store(), &state)?),
        None => None,
    };
    let stack = stack.conditional(Maybe(conditional));
    // Kept to seal the audit log once the last answer has left.
    let audit_log = stack.audit_layer().get().map(|audit| audit.sink().clone());
    let listener = tokio::net::TcpListener::bind(cli.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = store_name, "listening");
    // The layers report through the `metrics` facade (with `--features metrics`); this recorder
    // renders them at `GET /metrics` in Prometheus' text format.
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = app::<B>(
        state,
        stack,
        backend.idempotency_store(),
        metrics,
        &cli.stripe_webhook_secret,
    )?;
    print_usage(addr, &cli, &config, store_name, &tokens);
    let make_service = |peer: SocketAddr| {
        use tower::ServiceExt as _;
        // What `into_make_service_with_connect_info` gave: the peer address, which
        // `with_peer_addr` hands to the policies for anonymous callers.
        app.clone()
            .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
    };
    // Until Ctrl-C; then the answers in flight finish.
    serving::serve(
        listener,
        limits,
        serving::Protocols::Http1AndH2c,
        make_service,
        serving::ctrl_c(),
    )
    .await;
    if let Some(log) = audit_log {
        seal_on_exit(&log).await;
    }
    Ok(())
}

/// A last checkpoint of the audit log, when it is signed: `main` returning would not wait for
/// the writer's own.
#[cfg(feature = "audit-signing")]
async fn seal_on_exit(log: &api_policy::audit::FileSink) {
    if let Err(error) = log.checkpoint_now().await {
        tracing::error!(%error, "could not seal the audit log on exit");
    }
}

#[cfg(not(feature = "audit-signing"))]
async fn seal_on_exit(_log: &api_policy::audit::FileSink) {}
