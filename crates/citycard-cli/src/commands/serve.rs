//! `citycard serve`: the local reader service for web desks. Watches the
//! readers as `watch` does and pushes every event to web pages over
//! Server-Sent Events (`/events`), with a built-in desk page (`/`). Every
//! event is also one JSON line on stdout. Exit codes as `watch`, plus 1 when
//! the address cannot be bound.

use std::net::SocketAddr;
use std::process::ExitCode;

use citycard_reader::TapEvent;
use citycard_service::serve::{bind, ServeConfig};

use super::watch::{emit, run_service, runtime, ServiceArgs, StdoutArg};

/// Arguments of `serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    service: ServiceArgs,
    /// Address to listen on. Keep it on loopback: pages are admitted by
    /// their origin only (port 0: any free port, printed in the `started` event).
    #[arg(long, default_value = "127.0.0.1:8377")]
    listen: SocketAddr,
    /// A web page origin (`https://desk.library.example`) allowed to receive
    /// events, besides the built-in desk page; repeat for several.
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
}

/// Runs the service until interrupted or a fatal error.
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let out = |e: &TapEvent| emit(e, StdoutArg::All);
    let fail = |e: TapEvent| {
        out(&e);
        Ok(match e {
            TapEvent::Fatal { exit_code, .. } => ExitCode::from(exit_code),
            _ => ExitCode::from(1),
        })
    };
    let prepared = match args.service.prepare() {
        Ok(p) => p,
        Err(fatal) => return fail(fatal),
    };
    let origins: Vec<String> = args
        .allow_origins
        .iter()
        .map(|o| o.trim_end_matches('/').to_owned())
        .collect();
    runtime()?.block_on(async move {
        let bound = match bind(
            args.listen,
            ServeConfig {
                allowed_origins: origins,
            },
        )
        .await
        {
            Ok(b) => b,
            Err(e) => {
                return fail(TapEvent::fatal(
                    "listen_failed",
                    format!("cannot listen on {}: {e}", args.listen),
                    1,
                ))
            }
        };
        let started = TapEvent::started(
            "serve",
            &prepared.trust,
            &prepared.config.readers,
            prepared.config.heartbeat,
            Some(bound.url()),
        );
        let publisher = bound.publisher.clone();
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(bound.serve(async move {
            let _ = http_stopped.await;
        }));
        let code = run_service(prepared, started, move |e| {
            out(e);
            publisher.publish(e);
        })
        .await;
        let _ = stop_http.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), http).await;
        code
    })
}
