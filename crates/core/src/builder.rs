//! What every layer's builder shares: where its events go, where its randomness comes from,
//! and the names of the targets of a set.
//!
//! Each layer's `Builder` holds its own settings (its configuration type) and a [`Common`]
//! for the rest, and its `listener`, `shared_listener` and `random` methods set the
//! [`Common`]. A layer over a list of targets (failover, balance, fan-out) names them with
//! [`target_names`]: the names given when there is one per target, the indexes otherwise.
//!
//! ```
//! use bulwark_core::builder::{target_names, Common};
//! use bulwark_core::{ConfigError, NoopListener, SplitMix64};
//!
//! let mut common = Common::default();
//! common.set_listener(NoopListener);
//! common.set_random(SplitMix64::new(7));
//! assert!(common.listener().is_some());
//!
//! let (names, mismatch) = target_names("target_names", &[String::from("primary")], 2);
//! assert_eq!(names, ["0", "1"]);
//! assert_eq!(
//!     mismatch,
//!     Some(ConfigError::TargetNames { setting: "target_names", names: 1, targets: 2 })
//! );
//! ```

use crate::config::{one_name_per_target, ConfigError};
use crate::event::{Listener, SharedListener};
use crate::random::{RandomSource, SplitMix64};
use std::fmt;
use std::sync::Arc;

/// The part of a builder (and of the layer it builds) that every layer has: a listener for its
/// events and a random source (for the layers that draw jitter or choices).
#[derive(Clone, Default)]
pub struct Common {
    listener: Option<SharedListener>,
    random: Option<Arc<dyn RandomSource>>,
}

impl fmt::Debug for Common {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Common")
            .field("listener", &self.listener.is_some())
            .field("random", &self.random.is_some())
            .finish()
    }
}

impl Common {
    /// Send events to `listener`.
    pub fn set_listener(&mut self, listener: impl Listener) {
        self.listener = Some(SharedListener::new(listener));
    }

    /// Send events to a listener shared with other layers.
    pub fn set_shared_listener(&mut self, listener: SharedListener) {
        self.listener = Some(listener);
    }

    /// Draw randomness from `random` (seed it in tests).
    pub fn set_random(&mut self, random: impl RandomSource) {
        self.random = Some(Arc::new(random));
    }

    /// The listener, if one was set.
    pub fn listener(&self) -> Option<&SharedListener> {
        self.listener.as_ref()
    }

    /// The random source set, or a fresh one seeded from the system's entropy.
    pub fn random_or_entropy(&self) -> Arc<dyn RandomSource> {
        match &self.random {
            Some(random) => random.clone(),
            None => Arc::new(SplitMix64::from_entropy()),
        }
    }
}

/// The names of `targets` targets, for events, logs and metric labels: `names` when it has
/// one name per target, else the targets' indexes (`"0"`, `"1"`, ...), never names paired up
/// wrongly. The error says why names that were given are not used (a layer made over a list,
/// which cannot fail, logs it and goes on).
pub fn target_names(
    setting: &'static str,
    names: &[String],
    targets: usize,
) -> (Vec<String>, Option<ConfigError>) {
    match one_name_per_target(setting, names, targets) {
        Ok(()) if !names.is_empty() => (names.to_vec(), None),
        fit => ((0..targets).map(|i| i.to_string()).collect(), fit.err()),
    }
}

/// A builder's methods over its [`Common`] part (its field `common`) and over the `name` of
/// its configuration (its field `config`), written once for every layer. Internal to the
/// tower-bulwark crates.
#[doc(hidden)]
#[macro_export]
macro_rules! builder_methods {
    (name) => {
        /// The name reported in events, logs, metric labels and errors.
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.config.name = name.into();
            self
        }
    };
    (name, $names:ident) => {
        $crate::builder_methods!(name);

        /// Names for the members of the set, in order, one per member (without them, each is
        /// named by its index).
        pub fn $names<I, N>(mut self, names: I) -> Self
        where
            I: IntoIterator<Item = N>,
            N: Into<String>,
        {
            self.config.$names = names.into_iter().map(Into::into).collect();
            self
        }
    };
    (listener) => {
        /// Send events to `listener`.
        pub fn listener(mut self, listener: impl $crate::Listener) -> Self {
            self.common.set_listener(listener);
            self
        }

        /// Send events to a listener shared with other layers.
        pub fn shared_listener(mut self, listener: $crate::SharedListener) -> Self {
            self.common.set_shared_listener(listener);
            self
        }
    };
    ($(#[$attr:meta])* random) => {
        $(#[$attr])*
        pub fn random(mut self, random: impl $crate::RandomSource) -> Self {
            self.common.set_random(random);
            self
        }
    };
}

/// A builder's setters of its configuration (its field `config`), written as a table: each
/// entry is a method's docs, name and arguments, and the setting it sets. Internal to the
/// tower-bulwark crates.
#[doc(hidden)]
#[macro_export]
macro_rules! builder_setters {
    ($(
        $(#[$attr:meta])*
        fn $method:ident($($arg:ident: $ty:ty),*) { $($field:ident).+ = $value:expr }
    )*) => {
        $(
            $(#[$attr])*
            pub fn $method(mut self, $($arg: $ty),*) -> Self {
                self.config.$($field).+ = $value;
                self
            }
        )*
    };
}

/// `Debug` for a builder or layer type that shows its field `config` and nothing else (its
/// classifier, policy or listener need not be `Debug`). Internal to the tower-bulwark crates.
#[doc(hidden)]
#[macro_export]
macro_rules! debug_config {
    ($name:ident $(< $($param:ident),* >)?) => {
        impl<$($($param),*)?> ::std::fmt::Debug for $name<$($($param),*)?> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("config", &self.config)
                    .finish_non_exhaustive()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_or_fall_back_to_indexes() {
        let two = [String::from("a"), String::from("b")];
        assert_eq!(target_names("target_names", &two, 2), (two.to_vec(), None));
        assert_eq!(target_names("target_names", &[], 2).0, ["0", "1"]);
        assert_eq!(target_names("target_names", &[], 2).1, None);
        let (names, error) = target_names("endpoint_names", &two, 3);
        assert_eq!(names, ["0", "1", "2"]);
        assert_eq!(error.unwrap().setting(), "endpoint_names");
    }
}
