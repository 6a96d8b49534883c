//! The one error type of blindspot-vae.

/// An invalid model or schedule setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VaeError {
    /// A configuration value is out of range.
    #[error("invalid value {value} for `{key}`: allowed {allowed}")]
    InvalidConfig {
        /// The configuration key.
        key: &'static str,
        /// The offending value.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
}

pub(crate) fn invalid(key: &'static str, value: impl ToString, allowed: &'static str) -> VaeError {
    VaeError::InvalidConfig {
        key,
        value: value.to_string(),
        allowed,
    }
}
