//! What every target did, and the merge step that turns it into one answer.

use crate::config::Policy;
use bulwark_core::BoxError;
use std::fmt;
use std::sync::Arc;

/// How one target's part ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum TargetResult<Res> {
    /// It answered, and the classifier called the answer a success.
    Succeeded(Res),
    /// It answered, and the classifier called the answer a failure (a 503 when 201 was
    /// expected, say).
    Failed(Res),
    /// Its call returned an error.
    Error(BoxError),
    /// It was not done by its deadline.
    TimedOut,
    /// It was still running when the fan-out answered, and was cancelled.
    Cancelled,
    /// It was still running when the fan-out answered, and finishes in the background.
    Background,
}

impl<Res> TargetResult<Res> {
    /// Whether the target succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, TargetResult::Succeeded(_))
    }
}

/// One target's outcome.
#[derive(Debug)]
pub struct TargetOutcome<Res> {
    /// The target's index (its name is [`Outcomes::target_name`]).
    pub index: usize,
    /// How its part ended.
    pub result: TargetResult<Res>,
}

/// The fan-out's name and its targets' names, shared by every answer.
#[derive(Debug)]
pub(crate) struct Names {
    pub(crate) fanout: Arc<str>,
    pub(crate) targets: Box<[Arc<str>]>,
}

/// Every target's outcome, in target order, and whether the policy was met.
#[derive(Debug)]
pub struct Outcomes<Res> {
    pub(crate) names: Arc<Names>,
    /// The policy.
    pub policy: Policy,
    /// Whether the policy was met.
    pub met: bool,
    /// Each target's outcome, in order.
    pub targets: Vec<TargetOutcome<Res>>,
}

impl<Res> Outcomes<Res> {
    /// The fan-out's name.
    pub fn name(&self) -> &str {
        &self.names.fanout
    }

    /// The name of target `index`.
    pub fn target_name(&self, index: usize) -> &str {
        self.names.targets.get(index).map_or("?", |n| n)
    }

    /// How many targets succeeded.
    pub fn successes(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.result.is_success())
            .count()
    }

    /// The error for a policy that was not met, each target described by `describe`; the
    /// targets' own errors move into it ([`FanOutFailed::errors`]).
    pub fn failure(self, describe: impl Fn(&TargetResult<Res>) -> String) -> FanOutFailed {
        let successes = self.successes();
        let mut targets = Vec::with_capacity(self.targets.len());
        let mut errors = Vec::new();
        for t in self.targets {
            let name = self.names.targets.get(t.index).map_or("?", |n| n);
            targets.push((t.index, name.to_string(), describe(&t.result)));
            if let TargetResult::Error(e) = t.result {
                errors.push((t.index, name.to_string(), e));
            }
        }
        FanOutFailed {
            name: self.names.fanout.to_string(),
            policy: self.policy,
            successes,
            targets,
            errors,
        }
    }
}

/// The fan-out's policy was not met. Lists every target's outcome in order, and keeps the
/// errors the targets' calls returned, as they came ([`FanOutFailed::errors`]);
/// [`Error::source`](std::error::Error::source) is the first of them in target order, so
/// walking `source()` reaches what the transport said.
///
/// ```
/// use bulwark_fanout::{FanOutFailed, Policy};
/// use std::error::Error;
/// use std::io;
/// let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
/// let e = FanOutFailed {
///     name: "register".into(),
///     policy: Policy::All,
///     successes: 2,
///     targets: vec![
///         (0, "store-1".into(), "succeeded".into()),
///         (1, "store-2".into(), format!("error: {refused}")),
///         (2, "store-3".into(), "succeeded".into()),
///     ],
///     errors: vec![(1, "store-2".into(), refused.into())],
/// };
/// assert_eq!(
///     e.to_string(),
///     "fan-out register failed (all: 2 of 3 succeeded): [0] store-1: succeeded; [1] store-2: error: connection refused; [2] store-3: succeeded"
/// );
/// let source = e.source().unwrap().downcast_ref::<io::Error>().unwrap();
/// assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
/// ```
#[derive(Debug)]
pub struct FanOutFailed {
    /// The fan-out's name.
    pub name: String,
    /// The policy that was not met.
    pub policy: Policy,
    /// How many targets succeeded.
    pub successes: usize,
    /// Each target: index, name, what happened.
    pub targets: Vec<(usize, String, String)>,
    /// Each target whose call returned an error, in target order: index, name, the error as it
    /// came (downcast it).
    pub errors: Vec<(usize, String, BoxError)>,
}

impl fmt::Display for FanOutFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fan-out {} failed ({}: {} of {} succeeded): ",
            self.name,
            self.policy,
            self.successes,
            self.targets.len()
        )?;
        for (i, (index, target, what)) in self.targets.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "[{index}] {target}: {what}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FanOutFailed {
    /// The error of the first target (in target order) whose call returned one.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.errors
            .first()
            .map(|(_, _, e)| &**e as &(dyn std::error::Error + 'static))
    }
}

/// How a met policy was met: for merges that only need the first success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Targets that succeeded.
    pub successes: usize,
    /// All targets.
    pub targets: usize,
    /// The policy.
    pub policy: Policy,
}

/// Turns the targets' outcomes into the fan-out's answer.
pub trait Merge<Res> {
    /// The answer.
    type Output;

    /// Merges `outcomes` (policy met or not).
    fn merge(&self, outcomes: Outcomes<Res>) -> Result<Self::Output, BoxError>;

    /// A shortcut when the policy was met and the answer needs only the first success (in
    /// target order): return `Ok` to skip building [`Outcomes`], or give the response back
    /// with `Err` to have [`Merge::merge`] called as usual (the default).
    fn merge_first(
        &self,
        first: Res,
        summary: Summary,
    ) -> Result<Result<Self::Output, BoxError>, Res> {
        let _ = summary;
        Err(first)
    }
}

/// Answers with every outcome, met or not: the caller decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct Collect;

impl<Res> Merge<Res> for Collect {
    type Output = Outcomes<Res>;

    fn merge(&self, outcomes: Outcomes<Res>) -> Result<Outcomes<Res>, BoxError> {
        Ok(outcomes)
    }
}

/// Answers with the first success in target order when the policy is met, and with
/// [`FanOutFailed`] when it is not.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstSuccess;

fn describe_generic<Res>(r: &TargetResult<Res>) -> String {
    match r {
        TargetResult::Succeeded(_) => "succeeded".into(),
        TargetResult::Failed(_) => "answered with a failure".into(),
        TargetResult::Error(e) => format!("error: {e}"),
        TargetResult::TimedOut => "timed out".into(),
        TargetResult::Cancelled => "cancelled".into(),
        TargetResult::Background => "still running".into(),
    }
}

impl<Res> Merge<Res> for FirstSuccess {
    type Output = Res;

    fn merge_first(&self, first: Res, _: Summary) -> Result<Result<Res, BoxError>, Res> {
        Ok(Ok(first))
    }

    fn merge(&self, outcomes: Outcomes<Res>) -> Result<Res, BoxError> {
        if !outcomes.met {
            return Err(Box::new(outcomes.failure(describe_generic)));
        }
        let first = outcomes.targets.into_iter().find_map(|t| match t.result {
            TargetResult::Succeeded(r) => Some(r),
            _ => None,
        });
        first.ok_or_else(|| Box::new(crate::Misuse::polled_after_completion("fan-out")) as BoxError)
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
mod http_merge {
    use super::{Merge, Outcomes, TargetResult};
    use bulwark_core::BoxError;

    /// The summary header [`HttpMerge`] adds: e.g. `3/3 succeeded (all)`.
    pub const SUMMARY_HEADER: http::HeaderName = http::HeaderName::from_static("x-fanout-summary");

    /// For HTTP: when the policy is met, the first success in target order, with a
    /// `x-fanout-summary` header; when not, [`FanOutFailed`](super::FanOutFailed) listing each
    /// target (its status, or its error).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct HttpMerge;

    fn describe<B>(r: &TargetResult<http::Response<B>>) -> String {
        match r {
            TargetResult::Succeeded(resp) => format!("{}", resp.status()),
            TargetResult::Failed(resp) => format!("{}", resp.status()),
            TargetResult::Error(e) => format!("error: {e}"),
            TargetResult::TimedOut => "timed out".into(),
            TargetResult::Cancelled => "cancelled".into(),
            TargetResult::Background => "still running".into(),
        }
    }

    impl<B> Merge<http::Response<B>> for HttpMerge {
        type Output = http::Response<B>;

        fn merge_first(
            &self,
            mut first: http::Response<B>,
            summary: super::Summary,
        ) -> Result<Result<http::Response<B>, BoxError>, http::Response<B>> {
            let text = format!(
                "{}/{} succeeded ({})",
                summary.successes, summary.targets, summary.policy
            );
            if let Ok(v) = http::HeaderValue::from_str(&text) {
                first.headers_mut().insert(SUMMARY_HEADER, v);
            }
            Ok(Ok(first))
        }

        fn merge(
            &self,
            outcomes: Outcomes<http::Response<B>>,
        ) -> Result<http::Response<B>, BoxError> {
            if !outcomes.met {
                return Err(Box::new(outcomes.failure(describe)));
            }
            let summary = format!(
                "{}/{} succeeded ({})",
                outcomes.successes(),
                outcomes.targets.len(),
                outcomes.policy
            );
            let mut first = outcomes
                .targets
                .into_iter()
                .find_map(|t| match t.result {
                    TargetResult::Succeeded(r) => Some(r),
                    _ => None,
                })
                .ok_or_else(|| {
                    Box::new(crate::Misuse::polled_after_completion("fan-out")) as BoxError
                })?;
            if let Ok(v) = http::HeaderValue::from_str(&summary) {
                first.headers_mut().insert(SUMMARY_HEADER, v);
            }
            Ok(first)
        }
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http_merge::{HttpMerge, SUMMARY_HEADER};
