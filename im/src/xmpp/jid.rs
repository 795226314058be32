//! JIDs (RFC 7622): `local@domain/resource`, parsed with bounds.
//!
//! Owns parsing, the bare/full forms and comparison. Local part and
//! domain are compared case-insensitively (ASCII lowercase); full
//! PRECIS/IDNA normalisation is not done, which is enough for the
//! ASCII user names and hosts lsim creates. It must not touch routing.

use std::fmt;

/// The most bytes in one JID part (RFC 7622 §3).
pub const MAX_PART: usize = 1023;

/// Why a string is not a JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// No domain.
    #[error("JID has no domain")]
    NoDomain,
    /// A part is empty where it is present (`@x`, `x/`).
    #[error("JID has an empty {0}")]
    EmptyPart(&'static str),
    /// A part is longer than [`MAX_PART`] bytes.
    #[error("JID {0} longer than 1023 bytes")]
    TooLong(&'static str),
    /// A character the part may not hold.
    #[error("JID {0} holds a forbidden character")]
    Forbidden(&'static str),
}

/// A JID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    /// The local part (user or room), lowercased.
    pub local: Option<String>,
    /// The domain, lowercased.
    pub domain: String,
    /// The resource (client instance or room nick), as given.
    pub resource: Option<String>,
}

fn check(part: &str, what: &'static str, forbidden: &[char]) -> Result<(), JidError> {
    if part.is_empty() {
        return Err(JidError::EmptyPart(what));
    }
    if part.len() > MAX_PART {
        return Err(JidError::TooLong(what));
    }
    if part.chars().any(|c| c.is_control() || forbidden.contains(&c)) {
        return Err(JidError::Forbidden(what));
    }
    Ok(())
}

impl Jid {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Jid, JidError> {
        let (bare, resource) = match text.split_once('/') {
            Some((b, r)) => (b, Some(r)),
            None => (text, None),
        };
        let (local, domain) = match bare.split_once('@') {
            Some((l, d)) => (Some(l), d),
            None => (None, bare),
        };
        if domain.is_empty() && local.is_none() {
            return Err(JidError::NoDomain);
        }
        if let Some(l) = local {
            check(l, "local part", &['"', '&', '\'', '/', ':', '<', '>', '@', ' '])?;
        }
        check(domain, "domain", &['@', ' ', '/'])?;
        // A domain of dots only would be empty once its trailing dots go.
        if domain.trim_end_matches('.').is_empty() {
            return Err(JidError::EmptyPart("domain"));
        }
        if let Some(r) = resource {
            check(r, "resource", &[])?;
        }
        Ok(Jid {
            local: local.map(str::to_ascii_lowercase),
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            resource: resource.map(str::to_string),
        })
    }

    /// `local@domain` (a domain JID).
    pub fn bare_of(local: &str, domain: &str) -> Jid {
        Jid { local: Some(local.to_ascii_lowercase()), domain: domain.to_ascii_lowercase(), resource: None }
    }

    /// This JID without its resource.
    pub fn bare(&self) -> Jid {
        Jid { local: self.local.clone(), domain: self.domain.clone(), resource: None }
    }

    /// This JID with `resource`.
    pub fn with_resource(&self, resource: &str) -> Jid {
        Jid { local: self.local.clone(), domain: self.domain.clone(), resource: Some(resource.to_string()) }
    }

    /// Whether it has a resource.
    pub fn is_full(&self) -> bool {
        self.resource.is_some()
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn forms() {
        let j = Jid::parse("Alice@Example.COM/phone 1").unwrap();
        assert_eq!(j.local.as_deref(), Some("alice"));
        assert_eq!(j.domain, "example.com");
        assert_eq!(j.resource.as_deref(), Some("phone 1"));
        assert_eq!(j.to_string(), "alice@example.com/phone 1");
        assert_eq!(j.bare().to_string(), "alice@example.com");
        assert_eq!(
            Jid::parse("room@conference.x/nick/with/slash").unwrap().resource.as_deref(),
            Some("nick/with/slash")
        );
        assert_eq!(Jid::parse("example.com").unwrap().to_string(), "example.com");
    }

    #[test]
    fn bad_jids() {
        assert_eq!(Jid::parse(""), Err(JidError::NoDomain));
        assert_eq!(Jid::parse("@x"), Err(JidError::EmptyPart("local part")));
        assert_eq!(Jid::parse("a@"), Err(JidError::EmptyPart("domain")));
        assert_eq!(Jid::parse("a@x/"), Err(JidError::EmptyPart("resource")));
        assert_eq!(Jid::parse("a@b@c"), Err(JidError::Forbidden("domain")));
        assert_eq!(Jid::parse("a b@c"), Err(JidError::Forbidden("local part")));
        assert_eq!(Jid::parse(&format!("{}@x", "a".repeat(1024))), Err(JidError::TooLong("local part")));
        assert_eq!(Jid::parse("a@x/\u{0}"), Err(JidError::Forbidden("resource")));
    }
}
