//! Identifiers and small value types shared by every message.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::WireError;

/// Milliseconds since the Unix epoch. `core` and the decoder receive time as a value;
/// nothing in `wire` reads a clock.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }
    pub const fn millis(self) -> u64 {
        self.0
    }
    pub const fn saturating_add_ms(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
    pub const fn saturating_sub_ms(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_sub(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Checks the character set shared by member, referral, project and job ids:
/// lowercase ASCII letters, digits, `-`, `.`, `_`, and (where `allow_slash`) `/` and `:`.
fn check_id(kind: &'static str, s: &str, max: usize, allow_slash: bool) -> Result<(), WireError> {
    if s.is_empty() || s.len() > max {
        return Err(WireError::invalid(
            kind,
            format!("must be 1 to {max} characters, got {}", s.len()),
        ));
    }
    let ok = s.bytes().all(|b| {
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(b, b'-' | b'.' | b'_')
            || (allow_slash && matches!(b, b'/' | b':'))
    });
    if !ok {
        let allowed = if allow_slash {
            "a-z 0-9 - . _ / :"
        } else {
            "a-z 0-9 - . _"
        };
        return Err(WireError::invalid(
            kind,
            format!("{s:?} has a character outside [{allowed}]"),
        ));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $label:literal, $max:expr, $slash:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn new(s: impl Into<String>) -> Result<Self, WireError> {
                let s = s.into();
                check_id($label, &s, $max, $slash)?;
                Ok(Self(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = WireError;
            fn try_from(s: String) -> Result<Self, WireError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = WireError;
            fn from_str(s: &str) -> Result<Self, WireError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A federation member: an AI Factory or an antenna, e.g. `lu-l-aif`.
    MemberId, "member id", 64, false
);
string_id!(
    /// A referral, unique across the federation: `<origin member>/<origin's counter>`.
    ReferralId, "referral id", 128, true
);
string_id!(
    /// A client project as filed at its origin member.
    ProjectId, "project id", 128, true
);
string_id!(
    /// A GPU job, unique across the federation: `<origin member>/<origin's counter>`.
    JobId, "job id", 128, true
);

/// ISO 3166-1 alpha-2 country code, upper case (`LU`, `GB`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn new(s: &str) -> Result<Self, WireError> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([*a, *b])),
            _ => Err(WireError::invalid(
                "country",
                format!("{s:?} is not an ISO 3166-1 alpha-2 code (two upper-case letters)"),
            )),
        }
    }
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII upper-case letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// A dense index in 0..676 (`AA` = 0, `ZZ` = 675), for table look-ups.
    pub fn index(&self) -> usize {
        usize::from(self.0[0] - b'A') * 26 + usize::from(self.0[1] - b'A')
    }
}

impl TryFrom<String> for CountryCode {
    type Error = WireError;
    fn try_from(s: String) -> Result<Self, WireError> {
        Self::new(&s)
    }
}
impl From<CountryCode> for String {
    fn from(c: CountryCode) -> String {
        c.as_str().to_owned()
    }
}
impl std::str::FromStr for CountryCode {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        Self::new(s)
    }
}
impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ISO 639-1 language code, lower case (`fr`, `lb`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Language([u8; 2]);

impl Language {
    pub fn new(s: &str) -> Result<Self, WireError> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_lowercase() && b.is_ascii_lowercase() => Ok(Self([*a, *b])),
            _ => Err(WireError::invalid(
                "language",
                format!("{s:?} is not an ISO 639-1 code (two lower-case letters)"),
            )),
        }
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl TryFrom<String> for Language {
    type Error = WireError;
    fn try_from(s: String) -> Result<Self, WireError> {
        Self::new(&s)
    }
}
impl From<Language> for String {
    fn from(c: Language) -> String {
        c.as_str().to_owned()
    }
}
impl std::str::FromStr for Language {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        Self::new(s)
    }
}
impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_accept_the_federation_style_and_refuse_the_rest() {
        assert!(MemberId::new("lu-l-aif").is_ok());
        assert!(MemberId::new("es-1healthai").is_ok());
        assert!(MemberId::new("").is_err());
        assert!(MemberId::new("LU-L-AIF").is_err());
        assert!(MemberId::new("a/b").is_err());
        assert!(MemberId::new("x".repeat(65)).is_err());
        assert!(ReferralId::new("lu-l-aif/17").is_ok());
    }

    #[test]
    fn country_and_language_codes_are_case_checked() {
        assert_eq!(CountryCode::new("LU").unwrap().as_str(), "LU");
        assert!(CountryCode::new("lu").is_err());
        assert!(CountryCode::new("LUX").is_err());
        assert_eq!(Language::new("lb").unwrap().as_str(), "lb");
        assert!(Language::new("LB").is_err());
    }
}
