//! The local reader service for web desks: one HTTP listener (loopback by
//! default) that serves
//!
//! - `GET /` — the built-in desk page (English, French, Dutch, German, chosen
//!   by the browser's languages): tap a card, see genuine or refused, the
//!   granted attributes and the pseudonym;
//! - `GET /events` — the tap service's events as Server-Sent Events, each
//!   `data` one `tap-event.v1` JSON object; a new client first gets the
//!   `started` event;
//! - `GET /health` — `{"schema_version":1,"status":"ok"}`.
//!
//! Pages from other origins may subscribe only if their origin is on the
//! allow-list ([`ServeConfig::allowed_origins`]); any other `Origin` is
//! refused with 403, and so is a `Host` header that is not this listener's
//! (a DNS-rebinding page). The partner credential never leaves the process:
//! clients only ever receive events.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt as _;

use citycard_reader::TapEvent;

/// The desk page.
pub const DESK_PAGE: &str = include_str!("desk.html");

/// How many events a slow client may lag behind before it misses some.
const CLIENT_BUFFER: usize = 256;

/// Who may connect.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Page origins (`scheme://host[:port]`) allowed to subscribe besides the
    /// service's own pages. Empty: only the built-in desk page.
    pub allowed_origins: Vec<String>,
}

/// The shared state of the HTTP handlers.
struct Hub {
    events: broadcast::Sender<String>,
    started: Mutex<Option<String>>,
    origins: Vec<String>,
    hosts: Vec<String>,
}

/// The running service's handle: publish events to every client.
#[derive(Clone)]
pub struct Publisher(Arc<Hub>);

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("clients", &self.0.events.receiver_count())
            .finish()
    }
}

impl Publisher {
    /// Sends `event` to every connected page (the `started` event is also
    /// kept for pages that connect later).
    pub fn publish(&self, event: &TapEvent) {
        let line = event.to_json_line();
        if matches!(event, TapEvent::Started { .. }) {
            *self
                .0
                .started
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(line.clone());
        }
        let _ = self.0.events.send(line);
    }

    /// Connected event clients now.
    pub fn clients(&self) -> usize {
        self.0.events.receiver_count()
    }
}

/// The listener bound and its router, ready to serve.
pub struct Bound {
    listener: tokio::net::TcpListener,
    router: Router,
    /// The address bound (with the real port when 0 was asked).
    pub addr: SocketAddr,
    /// Publishes events to the clients.
    pub publisher: Publisher,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound").field("addr", &self.addr).finish()
    }
}

impl Bound {
    /// The desk page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Serves until `shutdown` resolves.
    ///
    /// # Errors
    ///
    /// The listener failed.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Binds `addr` (use a loopback address: the service has no authentication
/// beyond the origin check) and builds the routes.
///
/// # Errors
///
/// The address cannot be bound.
pub async fn bind(addr: SocketAddr, config: ServeConfig) -> std::io::Result<Bound> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let port = addr.port();
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        addr.to_string(),
    ];
    hosts.dedup();
    let own: Vec<String> = hosts.iter().map(|h| format!("http://{h}")).collect();
    let mut origins = config.allowed_origins;
    origins.extend(own);
    let (events, _) = broadcast::channel(CLIENT_BUFFER);
    let hub = Arc::new(Hub {
        events,
        started: Mutex::new(None),
        origins,
        hosts,
    });
    let router = Router::new()
        .route("/", get(page))
        .route("/events", get(events_stream))
        .route("/health", get(health))
        .with_state(hub.clone());
    Ok(Bound {
        listener,
        router,
        addr,
        publisher: Publisher(hub),
    })
}

/// The body of a 403: `{"error":"forbidden","message":…,"schema_version":1}`.
#[derive(serde::Serialize)]
struct Forbidden<'a> {
    /// Always `forbidden`.
    error: &'static str,
    /// Why, for people.
    message: &'a str,
    /// Always 1.
    schema_version: u64,
}

/// Refusal for a request whose Host or Origin is not allowed.
fn forbidden(why: &str) -> Response {
    let body = Forbidden {
        error: "forbidden",
        message: why,
        schema_version: 1,
    };
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&body).unwrap_or_default(),
    )
        .into_response()
}

/// Checks Host and Origin; `Ok(Some(origin))` for an allowed cross-origin page.
#[allow(clippy::result_large_err)]
fn admit(hub: &Hub, headers: &HeaderMap) -> Result<Option<HeaderValue>, Response> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !hub.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(forbidden("this Host is not the reader service's"));
    }
    match headers.get(header::ORIGIN) {
        None => Ok(None),
        Some(origin) => {
            let text = origin.to_str().unwrap_or("");
            if hub.origins.iter().any(|o| o.eq_ignore_ascii_case(text)) {
                Ok(Some(origin.clone()))
            } else {
                Err(forbidden("this page's origin is not on the allow-list"))
            }
        }
    }
}

async fn page(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = admit(&hub, &headers) {
        return refusal;
    }
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        Html(DESK_PAGE),
    )
        .into_response()
}

async fn health(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    match admit(&hub, &headers) {
        Err(refusal) => refusal,
        Ok(origin) => with_cors(
            (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"schema_version":1,"status":"ok"}"#,
            )
                .into_response(),
            origin,
        ),
    }
}

fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

async fn events_stream(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let origin = match admit(&hub, &headers) {
        Ok(o) => o,
        Err(refusal) => return refusal,
    };
    let first = hub
        .started
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let live = BroadcastStream::new(hub.events.subscribe()).filter_map(|r| r.ok());
    let stream = tokio_stream::iter(first)
        .chain(live)
        .map(|line| Ok::<_, std::convert::Infallible>(Event::default().data(line)));
    with_cors(
        Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response(),
        origin,
    )
}
