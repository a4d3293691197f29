//! Deadlines: the error of a layer that bounds a whole request in time (the retry's deadline
//! over all its attempts, the failover's over all its targets), the deadline a server received
//! with the request it is serving ([`scope`], [`current`]), and gRPC's `grpc-timeout` header
//! (feature `http`: [`parse_grpc_timeout`], [`grpc_timeout`]).
//!
//! # A deadline that crosses a hop
//!
//! A server that answers a request by calling others should not keep its backends busy once
//! its own caller has given up. The server edge reads the time its caller allows (gRPC's
//! `grpc-timeout`, or an HTTP header) and runs the handler inside [`scope`]; a retry layer on
//! the outbound side, called from that handler, reads [`current`] and ends its attempts by
//! then, telling each backend the time left (a failover set and a fan-out end their request by
//! then too, and a hedge sends no attempt after it). `bulwark-retry`'s `InboundDeadlineLayer`
//! is that server edge.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bulwark_core::deadline;
//! use std::time::Duration;
//! use tokio::time::Instant;
//!
//! assert_eq!(deadline::current(), None);
//! let at = Instant::now() + Duration::from_millis(300);
//! let seen = deadline::scope(Some(at), async { deadline::current() }).await;
//! assert_eq!(seen, Some(at));
//! // A scope opened inside another keeps the earlier of the two deadlines.
//! let later = at + Duration::from_secs(5);
//! let nested = deadline::scope(Some(at), async move {
//!     deadline::scope(Some(later), async { deadline::current() }).await
//! });
//! assert_eq!(nested.await, Some(at));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Option<Instant>;
}

/// Whether any scope was ever opened in this process: until one is, [`current`] is one
/// relaxed load instead of a task-local lookup on every call of a retry layer.
static SCOPES_OPENED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The future [`scope`] returns: `F`, run with its deadline in scope.
pub type Scoped<F> = tokio::task::futures::TaskLocalFuture<Option<Instant>, F>;

/// Runs `future` with `at` as the deadline [`current`] returns while it is polled (and while
/// whatever it calls is called and polled in the same task).
///
/// Called inside another scope, the earlier deadline holds: a nested scope can shorten the
/// time left, never lengthen it. `None` adds no deadline of its own. A task spawned from inside
/// does not inherit the scope.
pub fn scope<F: Future>(at: Option<Instant>, future: F) -> Scoped<F> {
    SCOPES_OPENED.store(true, std::sync::atomic::Ordering::Relaxed);
    let at = earlier(at, current());
    DEADLINE.scope(at, future)
}

/// Calls `call` with `at` in scope, and runs the future it returns in the same scope: for a
/// service's `call`, which may read [`current`] before its future is first polled.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use bulwark_core::deadline;
/// use tokio::time::{Duration, Instant};
///
/// let at = Instant::now() + Duration::from_secs(1);
/// let (seen_in_call, seen_in_future) = deadline::call_in_scope(Some(at), || {
///     let in_call = deadline::current();
///     async move { (in_call, deadline::current()) }
/// })
/// .await;
/// assert_eq!((seen_in_call, seen_in_future), (Some(at), Some(at)));
/// # }
/// ```
pub fn call_in_scope<F: Future>(at: Option<Instant>, call: impl FnOnce() -> F) -> Scoped<F> {
    SCOPES_OPENED.store(true, std::sync::atomic::Ordering::Relaxed);
    let at = earlier(at, current());
    let future = DEADLINE.sync_scope(at, call);
    DEADLINE.scope(at, future)
}

/// The deadline of the request being served, if this code runs inside a [`scope`] that has
/// one.
#[inline]
pub fn current() -> Option<Instant> {
    // The flag is set before the scope is entered, on the same thread: code inside a scope
    // always sees it.
    if !SCOPES_OPENED.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    DEADLINE.try_with(|at| *at).ok().flatten()
}

/// [`current`] for a layer whose `inherit_deadline` setting is `inherit`: `None` when it is
/// off.
///
/// ```
/// use bulwark_core::deadline;
/// assert_eq!(deadline::inherited(false), None);
/// assert_eq!(deadline::inherited(true), None); // no scope open
/// ```
#[inline]
pub fn inherited(inherit: bool) -> Option<Instant> {
    if inherit {
        current()
    } else {
        None
    }
}

/// `d` in whole milliseconds, rounded up (a wait or a time left told in milliseconds is never
/// shorter than it is, and never zero unless it is zero), saturating.
///
/// ```
/// use bulwark_core::deadline::millis_rounded_up;
/// use std::time::Duration;
/// assert_eq!(millis_rounded_up(Duration::from_micros(1500)), 2);
/// assert_eq!(millis_rounded_up(Duration::ZERO), 0);
/// ```
#[inline]
pub fn millis_rounded_up(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// The earlier of two optional instants (either when only one is set).
#[inline]
pub fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The deadline for a request as a whole (all its attempts, or all its targets) passed before
/// it had an answer.
///
/// ```
/// use bulwark_core::DeadlineExceeded;
/// use std::time::Duration;
/// let e = DeadlineExceeded { deadline: Duration::from_secs(5), attempts: 2 };
/// assert_eq!(e.to_string(), "deadline of 5s exceeded during attempt 2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineExceeded {
    /// The deadline, counted from the call.
    pub deadline: Duration,
    /// Attempts made, the one cut short included.
    pub attempts: u32,
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deadline of {:?} exceeded during attempt {}",
            self.deadline, self.attempts
        )
    }
}

impl std::error::Error for DeadlineExceeded {}

impl DeadlineExceeded {
    /// The error for a request whose deadline, `deadline` after its call, fell at `at`, if
    /// `at` has passed (`None` when there is no deadline or it is still ahead).
    ///
    /// ```
    /// use bulwark_core::DeadlineExceeded;
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    /// let past = Some(Instant::now());
    /// assert!(DeadlineExceeded::passed(past, Some(Duration::from_secs(1)), 2).is_some());
    /// assert!(DeadlineExceeded::passed(None, None, 2).is_none());
    /// ```
    pub fn passed(
        at: Option<tokio::time::Instant>,
        deadline: Option<Duration>,
        attempts: u32,
    ) -> Option<DeadlineExceeded> {
        at.filter(|at| tokio::time::Instant::now() >= *at)
            .map(|_| DeadlineExceeded {
                deadline: deadline.unwrap_or_default(),
                attempts,
            })
    }
}

/// The header gRPC carries a call's time limit in: `grpc-timeout`.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Reads a `grpc-timeout` value: up to eight digits and a unit (`H`, `M`, `S`, `m`, `u`,
/// `n`), as gRPC's HTTP/2 protocol defines it. Anything else is `None`.
///
/// ```
/// use bulwark_core::deadline::parse_grpc_timeout;
/// use http::HeaderValue;
/// use std::time::Duration;
///
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("250m")), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("3S")), Some(Duration::from_secs(3)));
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("123456789n")), None); // nine digits
/// assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("5x")), None);
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub fn parse_grpc_timeout(value: &http::HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Writes `left` as a `grpc-timeout` value: the finest unit whose count fits the protocol's
/// eight digits, rounded up (a time left is never written as zero unless it is zero), and at
/// most 99,999,999 hours.
///
/// ```
/// use bulwark_core::deadline::grpc_timeout;
/// use std::time::Duration;
///
/// assert_eq!(grpc_timeout(Duration::from_millis(30)), "30000000n");
/// assert_eq!(grpc_timeout(Duration::from_millis(250)), "250000u");
/// assert_eq!(grpc_timeout(Duration::from_secs(5)), "5000000u");
/// assert_eq!(grpc_timeout(Duration::from_secs(200)), "200000m");
/// assert_eq!(grpc_timeout(Duration::from_nanos(1_500_000_001)), "1500001u");
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub fn grpc_timeout(left: Duration) -> http::HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = left.as_nanos();
    let (n, unit) = [
        (1u128, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
        (3_600_000_000_000, b'H'),
    ]
    .into_iter()
    .map(|(per, unit)| (nanos.div_ceil(per), unit))
    .find(|(n, _)| *n <= MAX)
    .unwrap_or((MAX, b'H'));
    // At most eight digits and a unit: formatted into a stack buffer, no allocation but the
    // header value's own.
    let mut buf = [0u8; 9];
    let mut len = 0;
    let mut rest = n;
    let mut digits = [0u8; 8];
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        buf[i] = *d;
    }
    buf[len] = unit;
    http::HeaderValue::from_bytes(&buf[..=len])
        .expect("digits and a letter are a valid header value")
}

/// Counts `elapsed` off the `grpc-timeout` `headers` carry, for a copy of a request sent that
/// much later than the request it was copied from (a hedge, the next target of a failover):
/// the server is told the time the caller has left when the copy goes, not when the original
/// went. Headers without a `grpc-timeout` (or with one that does not parse) are left as they
/// are; a time left that has run out is written as zero.
///
/// ```
/// use bulwark_core::deadline::{age_grpc_timeout, GRPC_TIMEOUT};
/// use http::{HeaderMap, HeaderValue};
/// use std::time::Duration;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("300m"));
/// age_grpc_timeout(&mut headers, Duration::from_millis(50));
/// assert_eq!(headers[GRPC_TIMEOUT], "250000u");
/// age_grpc_timeout(&mut headers, Duration::from_secs(1));
/// assert_eq!(headers[GRPC_TIMEOUT], "0n");
///
/// let mut none = HeaderMap::new();
/// age_grpc_timeout(&mut none, Duration::from_millis(50));
/// assert!(none.is_empty());
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub fn age_grpc_timeout(headers: &mut http::HeaderMap, elapsed: Duration) {
    if elapsed.is_zero() {
        return;
    }
    if let Some(left) = headers.get(GRPC_TIMEOUT).and_then(parse_grpc_timeout) {
        headers.insert(GRPC_TIMEOUT, grpc_timeout(left.saturating_sub(elapsed)));
    }
}

/// When a request carrying a `grpc-timeout` was sent, kept in its extensions by [`note_sent`]
/// for [`restamp`].
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy)]
struct GrpcTimeoutSent(Instant);

/// Notes, on a request about to be sent whose copy may be sent later (the failover's), when
/// it went, if it carries a `grpc-timeout`: [`restamp`] on a copy then counts the time since
/// off it. The clock is read only for a request that carries one.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub fn note_sent<B>(request: &mut http::Request<B>) {
    if request.headers().contains_key(GRPC_TIMEOUT) {
        request
            .extensions_mut()
            .insert(GrpcTimeoutSent(Instant::now()));
    }
}

/// On a copy of a request [`note_sent`] saw, about to be sent now: its `grpc-timeout` tells
/// the time left now ([`age_grpc_timeout`] by the time since the request was sent).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use bulwark_core::deadline::{note_sent, restamp, GRPC_TIMEOUT};
/// use std::time::Duration;
///
/// let mut request = http::Request::new(());
/// request.headers_mut().insert(GRPC_TIMEOUT, "2S".parse().unwrap());
/// note_sent(&mut request);
/// let mut copy = http::Request::new(());
/// *copy.headers_mut() = request.headers().clone();
/// *copy.extensions_mut() = request.extensions().clone();
/// tokio::time::sleep(Duration::from_millis(500)).await; // the first attempt fails
/// restamp(&mut copy);
/// assert_eq!(copy.headers()[GRPC_TIMEOUT], "1500000u");
/// # }
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub fn restamp<B>(copy: &mut http::Request<B>) {
    if let Some(&GrpcTimeoutSent(sent)) = copy.extensions().get::<GrpcTimeoutSent>() {
        age_grpc_timeout(copy.headers_mut(), sent.elapsed());
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn grpc_timeout_round_trips_never_shorter_and_within_a_unit(nanos in 0u64..=u64::MAX / 2) {
            let left = Duration::from_nanos(nanos);
            let value = grpc_timeout(left);
            prop_assert!(value.len() <= 9);
            let back = parse_grpc_timeout(&value).expect("what we write, we read");
            prop_assert!(back >= left);
            // Rounded up by less than one of the unit written, and that unit is the finest
            // whose count fits.
            let unit = parse_grpc_timeout(&http::HeaderValue::from_bytes(
                &[b'1', *value.as_bytes().last().unwrap()],
            ).unwrap()).unwrap();
            prop_assert!(back - left < unit);
            if unit > Duration::from_nanos(1) {
                let finer = match unit.as_nanos() {
                    1_000 => 1,
                    1_000_000 => 1_000,
                    1_000_000_000 => 1_000_000,
                    60_000_000_000 => 1_000_000_000,
                    _ => 60_000_000_000u128,
                };
                prop_assert!(left.as_nanos().div_ceil(finer) > 99_999_999);
            }
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "m",
            "-5m",
            "+5m",
            "1.5S",
            "5",
            "123456789S",
            "5 m",
            "5d",
        ] {
            let value = http::HeaderValue::from_str(bad).unwrap();
            assert_eq!(parse_grpc_timeout(&value), None, "{bad:?}");
        }
    }
}
