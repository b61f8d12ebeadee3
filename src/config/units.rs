//! Value types of the configuration that parse from human strings:
//! durations (`"250ms"`, `"7d"`), sizes (`"1MiB"`), secrets and socket addresses.
//!
//! Each type validates while it deserializes, so a bad value is reported by
//! the TOML deserializer with the position of that value.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration written as a string such as `"250ms"`, `"5s"`, `"10m"`, `"24h"`, `"7d"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

/// A string schema with a description and an example (the value types here
/// are strings in JSON and TOML alike).
fn string_schema(
    description: &str,
    example: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(description))
        .examples([example])
        .into()
}

impl utoipa::PartialSchema for Dur {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            "A duration: a number and a unit (ms, s, m, h, d), such as `250ms`, `30s` or `1h 30m`.",
            "30s",
        )
    }
}

impl utoipa::ToSchema for Dur {}

impl Dur {
    /// Creates a duration from seconds.
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    /// Creates a duration from milliseconds.
    pub const fn millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    /// Whole milliseconds, saturating at `i64::MAX`.
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() {
            return Err(
                "empty duration; write it like \"250ms\", \"5s\", \"10m\", \"24h\" or \"7d\""
                    .into(),
            );
        }
        // A bare "0" is a common way to say "no delay".
        if t == "0" {
            return Ok(Dur(Duration::ZERO));
        }
        let d = humantime::parse_duration(t).map_err(|e| {
            format!("invalid duration {s:?} ({e}); write it like \"250ms\", \"5s\", \"10m\", \"24h\" or \"7d\"")
        })?;
        // Bound every duration to 100 years so arithmetic on timestamps cannot overflow.
        if d > Duration::from_secs(100 * 365 * 86_400) {
            return Err(format!("duration {s:?} is too long (at most 100 years)"));
        }
        Ok(Dur(d))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"250ms\", \"5s\" or \"7d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                if v == 0 {
                    Ok(Dur(Duration::ZERO))
                } else {
                    Err(E::custom(format!(
                        "a duration needs a unit: write \"{v}s\" or \"{v}ms\""
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes written as `"512KiB"`, `"1MiB"`, `"10MB"` or a plain integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad =
            || format!("invalid size {s:?}; write it like \"512KiB\", \"1MiB\" or \"1048576\"");
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            _ => return Err(bad()),
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"1MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A secret from the config: never printed by `Debug`, compared only in constant time.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl utoipa::PartialSchema for Secret {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            "A Standard Webhooks signing secret: `whsec_` and base64 of 24 to 64 random bytes.",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
    }
}

impl utoipa::ToSchema for Secret {}

impl Secret {
    /// Wraps a string as a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret's text. Call only where the value is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A value parsed with `FromStr` whose error message becomes a config error at its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<T>(pub T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<T>()
            .map(Parsed)
            .map_err(|e| de::Error::custom(format!("invalid value {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        assert_eq!("250ms".parse::<Dur>().unwrap(), Dur::millis(250));
        assert_eq!("5s".parse::<Dur>().unwrap(), Dur::secs(5));
        assert_eq!("10m".parse::<Dur>().unwrap(), Dur::secs(600));
        assert_eq!("24h".parse::<Dur>().unwrap(), Dur::secs(86_400));
        assert_eq!("7d".parse::<Dur>().unwrap(), Dur::secs(7 * 86_400));
        assert_eq!("0".parse::<Dur>().unwrap(), Dur::secs(0));
        for bad in ["", "5", "fast", "-1s", "5 parsecs", "99999999999999999999d"] {
            assert!(bad.parse::<Dur>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!("1MiB".parse::<Size>().unwrap(), Size(1 << 20));
        assert_eq!("512KiB".parse::<Size>().unwrap(), Size(512 << 10));
        assert_eq!("10MB".parse::<Size>().unwrap(), Size(10_000_000));
        assert_eq!("1024".parse::<Size>().unwrap(), Size(1024));
        for bad in ["", "MiB", "1 XB", "-1", "99999999999999999999GiB", "1.5MiB"] {
            assert!(bad.parse::<Size>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn secret_debug_hides_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    proptest! {
        #[test]
        fn duration_parser_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Dur>();
        }

        #[test]
        fn size_parser_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<Size>();
        }

        #[test]
        fn durations_round_trip(ms in 0u64..10_000_000_000) {
            let d = Dur::millis(ms);
            let text = d.to_string();
            prop_assert_eq!(text.parse::<Dur>().unwrap(), d);
        }
    }
}
