//! Load shedding: the [`OverloadLayer`] tower layer, inside the auth layer, refuses work the
//! server cannot take with `RESOURCE_EXHAUSTED` at once, instead of queueing it without
//! bound, and puts a deadline on every call.
//!
//! Three limits, each checked before the handler runs (so a refused call has done nothing
//! and may be retried with the same request id):
//!
//! - **In flight** (`--max-in-flight`): at most this many calls are being handled at once,
//!   server-wide. One more is refused with reason `OVERLOADED`. Together with the engine's
//!   bounded writer queue (a full queue is also `OVERLOADED`), this bounds how long an
//!   admitted call can wait.
//! - **Per API key** (`--rate-limit-per-key`, `--rate-burst-per-key`): a token bucket per
//!   authenticated key (GCRA, integer nanoseconds, no floats): `rate` calls a second on
//!   average, up to `burst` at once. Over it: reason `RATE_LIMITED`, with a `RetryInfo`
//!   saying when a call would be admitted. One noisy till cannot starve the others.
//! - **Deadline**: the call's `grpc-timeout` header, capped by `--request-timeout-ms`
//!   (which is also the default when the caller sends none). A call still unanswered then
//!   gets `DEADLINE_EXCEEDED`. A write that was already queued may still commit after that
//!   (the caller cannot know): retrying with the same request id is safe and returns it.
//!
//! Health and reflection calls bypass the per-key limit (they carry no key) but count in
//! flight.

use crate::auth::Principal;
use crate::convert::DOMAIN;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The shedding limits (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverloadOptions {
    /// Calls handled at once, server-wide; 0 means no limit.
    pub max_in_flight: usize,
    /// Calls a second per API key on average; 0 means no limit.
    pub rate_per_key: u32,
    /// Calls per API key admitted at once before the rate applies (at least 1).
    pub burst_per_key: u32,
    /// The longest a call may take, and the deadline of calls that send none.
    pub request_timeout: Duration,
}

impl Default for OverloadOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 4096,
            rate_per_key: 0,
            burst_per_key: 0,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A status with `ErrorInfo` (and `RetryInfo` when a retry delay is known).
fn shed(code: Code, reason: &str, message: String, retry_after: Option<Duration>) -> Status {
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, HashMap::new());
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(code, message, details)
}

/// Per-key GCRA state: each key's theoretical arrival time, in nanoseconds since `origin`.
struct RateLimiter {
    origin: Instant,
    /// Nanoseconds between calls at the sustained rate.
    interval_ns: u64,
    /// How far ahead of now the arrival time may run (`(burst - 1) * interval`).
    tolerance_ns: u64,
    arrivals: Mutex<HashMap<uuid::Uuid, u64>>,
}

impl RateLimiter {
    fn new(rate: u32, burst: u32) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let interval_ns = 1_000_000_000 / u64::from(rate);
        let burst = u64::from(burst.max(1));
        Some(Self {
            origin: Instant::now(),
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(burst - 1),
            arrivals: Mutex::new(HashMap::new()),
        })
    }

    /// Admits a call for `key` now, or says how long until one would be admitted.
    fn check(&self, key: uuid::Uuid) -> Result<(), Duration> {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut arrivals = self.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        let tat = arrivals.get(&key).copied().unwrap_or(now).max(now);
        let earliest = tat.saturating_sub(self.tolerance_ns);
        if earliest > now {
            return Err(Duration::from_nanos(earliest - now));
        }
        arrivals.insert(key, tat.saturating_add(self.interval_ns));
        Ok(())
    }
}

/// What every clone of the layer's service shares.
struct Shared {
    options: OverloadOptions,
    in_flight: Option<Arc<Semaphore>>,
    rate: Option<RateLimiter>,
}

/// The tower layer; put it inside [`crate::auth::AuthLayer`] so that the caller's key is known.
#[derive(Clone)]
pub struct OverloadLayer {
    shared: Arc<Shared>,
}

impl OverloadLayer {
    /// A layer with these limits.
    pub fn new(options: OverloadOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                options,
                in_flight: (options.max_in_flight > 0)
                    .then(|| Arc::new(Semaphore::new(options.max_in_flight))),
                rate: RateLimiter::new(options.rate_per_key, options.burst_per_key),
            }),
        }
    }
}

impl<S> tower::Layer<S> for OverloadLayer {
    type Service = OverloadService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OverloadService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`OverloadLayer`] makes.
#[derive(Clone)]
pub struct OverloadService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// Parses a `grpc-timeout` header value (an integer of at most 8 digits and a unit).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for OverloadService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let refuse = |status: Status| -> Self::Future {
            crate::metrics::global().request(request.uri().path(), status.code(), Duration::ZERO);
            let response = status.into_http::<R>();
            Box::pin(async move { Ok(response) })
        };
        let shared = &self.shared;
        if let (Some(rate), Some(principal)) =
            (&shared.rate, request.extensions().get::<Principal>())
        {
            if let Err(wait) = rate.check(principal.key_id) {
                return refuse(shed(
                    Code::ResourceExhausted,
                    "RATE_LIMITED",
                    format!(
                        "the API key is over its limit of {} calls a second; retry in {} ms",
                        shared.options.rate_per_key,
                        wait.as_millis().max(1)
                    ),
                    Some(wait),
                ));
            }
        }
        let permit: Option<OwnedSemaphorePermit> = match &shared.in_flight {
            Some(semaphore) => match semaphore.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    return refuse(shed(
                        Code::ResourceExhausted,
                        "OVERLOADED",
                        format!(
                            "the server is handling its limit of {} calls; retry shortly",
                            shared.options.max_in_flight
                        ),
                        Some(Duration::from_millis(50)),
                    ))
                }
            },
            None => None,
        };
        let asked = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let deadline = asked.map_or(shared.options.request_timeout, |d| {
            d.min(shared.options.request_timeout)
        });
        // Take the service that was made ready and leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let answered = tokio::time::timeout(deadline, inner.call(request)).await;
            drop(permit);
            match answered {
                Ok(response) => response,
                Err(_) => Ok(shed(
                    Code::DeadlineExceeded,
                    "DEADLINE_EXCEEDED",
                    format!("no answer within {} ms", deadline.as_millis()),
                    None,
                )
                .into_http::<R>()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn grpc_timeouts_parse_and_refuse_junk() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout("99999999H").map(|d| d.as_secs()),
            Some(99_999_999 * 3600)
        );
        for junk in ["", "m", "100", "123456789m", "-1m", "1x", "1.5S"] {
            assert_eq!(parse_grpc_timeout(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_the_rate() {
        let limiter = RateLimiter::new(10, 3).unwrap();
        let a = uuid::Uuid::from_u128(1);
        let b = uuid::Uuid::from_u128(2);
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        // Another key has a bucket of its own.
        assert!(limiter.check(b).is_ok());
    }

    /// A service that answers only when `gate` is opened, counting the calls it got.
    #[derive(Clone)]
    struct Gated {
        gate: Arc<tokio::sync::Semaphore>,
        calls: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl tower::Service<http::Request<()>> for Gated {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let gate = self.gate.clone();
            Box::pin(async move {
                let _open = gate.acquire().await;
                Ok(http::Response::new(()))
            })
        }
    }

    fn grpc_status(response: &http::Response<()>) -> Code {
        response
            .headers()
            .get("grpc-status")
            .map_or(Code::Ok, |v| Code::from_bytes(v.as_bytes()))
    }

    fn request(timeout: Option<&str>) -> http::Request<()> {
        let mut request = http::Request::new(());
        if let Some(t) = timeout {
            request
                .headers_mut()
                .insert("grpc-timeout", t.parse().unwrap());
        }
        request
    }

    #[tokio::test]
    async fn calls_over_the_in_flight_limit_are_shed_at_once() {
        use tower::{Layer, Service};
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let layer = OverloadLayer::new(OverloadOptions {
            max_in_flight: 2,
            ..OverloadOptions::default()
        });
        let mut service = layer.layer(Gated {
            gate: gate.clone(),
            calls: calls.clone(),
        });
        let first = tokio::spawn(service.call(request(None)));
        let second = tokio::spawn(service.call(request(None)));
        // Both admitted calls hold their slot until answered: the third is refused without
        // reaching the handler.
        let third = service.call(request(None)).await.unwrap();
        assert_eq!(grpc_status(&third), Code::ResourceExhausted);
        let status = Status::from_header_map(third.headers()).unwrap();
        assert_eq!(
            status.get_details_error_info().unwrap().reason,
            "OVERLOADED"
        );
        assert!(status.get_details_retry_info().is_some());
        gate.add_permits(2);
        assert_eq!(grpc_status(&first.await.unwrap().unwrap()), Code::Ok);
        assert_eq!(grpc_status(&second.await.unwrap().unwrap()), Code::Ok);
        // Slots are given back: the next call is admitted.
        gate.add_permits(1);
        let fourth = service.call(request(None)).await.unwrap();
        assert_eq!(grpc_status(&fourth), Code::Ok);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn deadlines_come_from_grpc_timeout_capped_by_the_server() {
        use tower::{Layer, Service};
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cap = Duration::from_millis(400);
        let mut service = OverloadLayer::new(OverloadOptions {
            request_timeout: cap,
            ..OverloadOptions::default()
        })
        .layer(Gated { gate, calls });
        let started = Instant::now();
        let response = service.call(request(Some("50m"))).await.unwrap();
        assert_eq!(grpc_status(&response), Code::DeadlineExceeded);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(50) && took < cap, "{took:?}");
        // A caller asking for an hour gets the server's cap; one asking nothing gets it too.
        for asked in [Some("1H"), None] {
            let started = Instant::now();
            let response = service.call(request(asked)).await.unwrap();
            assert_eq!(grpc_status(&response), Code::DeadlineExceeded);
            let took = started.elapsed();
            assert!(took >= cap && took < Duration::from_secs(60), "{took:?}");
        }
    }
}
