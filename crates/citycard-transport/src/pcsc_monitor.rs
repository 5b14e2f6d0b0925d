//! [`PcscReaderMonitor`]: which PC/SC readers exist, and waiting for that to
//! change — what a tap service's monitor thread needs.

use std::time::Duration;

use pcsc::{Context, ReaderState, Scope, State};

use crate::TransportError;

/// Watches the PC/SC reader list: [`list_readers`](Self::list_readers) and
/// [`wait_for_change`](Self::wait_for_change).
///
/// Waits on the PnP pseudo-reader `\\?PnP?\Notification`, which wakes as
/// soon as a reader is plugged or unplugged. When the PC/SC service does not
/// support PnP notification, the bounded wait becomes a plain sleep, so a
/// caller that lists again after each wait picks up a new reader within its
/// timeout either way. After a failed listing (the service went away) the
/// next listing connects to the service again.
pub struct PcscReaderMonitor {
    ctx: Option<Context>,
    pnp: [ReaderState; 1],
    pnp_supported: bool,
}

impl std::fmt::Debug for PcscReaderMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscReaderMonitor")
            .field("connected", &self.ctx.is_some())
            .field("pnp_supported", &self.pnp_supported)
            .finish()
    }
}

fn pnp_state() -> [ReaderState; 1] {
    [ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE)]
}

impl PcscReaderMonitor {
    /// Connects to the PC/SC service (user scope).
    ///
    /// # Errors
    ///
    /// [`TransportError::NoService`] when pcscd is not running.
    pub fn establish() -> Result<Self, TransportError> {
        Ok(Self {
            ctx: Some(Context::establish(Scope::User)?),
            pnp: pnp_state(),
            pnp_supported: true,
        })
    }

    /// The names of all readers (empty when there is none). After a failure
    /// the context is dropped, and the next call connects again.
    ///
    /// # Errors
    ///
    /// The service is unreachable or failed.
    pub fn list_readers(&mut self) -> Result<Vec<String>, TransportError> {
        let ctx = match self.ctx.take() {
            Some(ctx) => ctx,
            None => {
                let ctx = Context::establish(Scope::User)?;
                self.pnp = pnp_state();
                self.pnp_supported = true;
                ctx
            }
        };
        match ctx.list_readers_owned() {
            Ok(names) => {
                self.ctx = Some(ctx);
                Ok(names
                    .iter()
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect())
            }
            Err(pcsc::Error::NoReadersAvailable) => {
                self.ctx = Some(ctx);
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until a reader is plugged or unplugged, at most `timeout`
    /// (without PnP support, or without a context: sleeps `timeout`, in
    /// slices of at most 50 ms while `stop()` is false).
    pub fn wait_for_change(&mut self, timeout: Duration, stop: &dyn Fn() -> bool) {
        if let (Some(ctx), true) = (&self.ctx, self.pnp_supported) {
            for s in &mut self.pnp {
                s.sync_current_state();
            }
            match ctx.get_status_change(Some(timeout), &mut self.pnp) {
                Ok(()) | Err(pcsc::Error::Timeout) => {
                    if self
                        .pnp
                        .iter()
                        .any(|s| s.event_state().intersects(State::UNKNOWN | State::IGNORE))
                    {
                        self.pnp_supported = false;
                    }
                }
                Err(pcsc::Error::Cancelled) => {}
                Err(_) => self.pnp_supported = false,
            }
            return;
        }
        let end = std::time::Instant::now() + timeout;
        while !stop() {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}
