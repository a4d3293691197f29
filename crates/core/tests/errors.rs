//! Error chains: an error that wraps another says so through `source()`, and the wrapped one
//! is reached typed (downcastable); a leaf error has no source.

use bulwark_core::backoff::BackoffError;
use bulwark_core::budget::BudgetError;
use bulwark_core::{ConfigError, DeadlineExceeded, Misuse};
use std::error::Error;
use std::time::Duration;

#[test]
fn a_config_error_from_a_backoff_or_budget_error_has_it_as_its_source() {
    let err: Box<dyn Error + Send + Sync> = Box::new(ConfigError::from(BackoffError::ZeroBase));
    let source = err.source().expect("a backoff error is wrapped");
    assert_eq!(
        source.downcast_ref::<BackoffError>(),
        Some(&BackoffError::ZeroBase)
    );
    assert!(source.source().is_none(), "the backoff error is a leaf");

    let err = ConfigError::from(BudgetError::Ratio(-1.0));
    let source = err.source().expect("a budget error is wrapped");
    assert_eq!(
        source.downcast_ref::<BudgetError>(),
        Some(&BudgetError::Ratio(-1.0))
    );
}

#[test]
fn leaf_errors_have_no_source() {
    assert!(ConfigError::Zero { setting: "window" }.source().is_none());
    let deadline = DeadlineExceeded {
        deadline: Duration::from_secs(1),
        attempts: 2,
    };
    assert!(deadline.source().is_none());
    assert!(Misuse::polled_after_completion("retry").source().is_none());
}
