//! The access token: 256 random bits in the URL the member prints, required
//! on every request (the page, its events, its uploads, the files it shows).
//!
//! Owns making the token and comparing a candidate with it in constant time.
//! It must not touch requests (`guard` reads them) or the member.

use subtle::ConstantTimeEq;

/// A random token, as 64 lowercase hex digits.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// A fresh token from the system's random source.
    pub fn generate() -> Result<Token, getrandom::Error> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b)?;
        Ok(Token(b.iter().map(|x| format!("{x:02x}")).collect()))
    }

    /// The token as it goes in a URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True if `candidate` is this token (the time taken does not depend on
    /// where they differ).
    pub fn matches(&self, candidate: &str) -> bool {
        candidate.len() == self.0.len() && bool::from(candidate.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_itself_only() {
        let t = Token::generate().unwrap();
        assert_eq!(t.as_str().len(), 64);
        assert!(t.matches(t.as_str()));
        let mut wrong = t.as_str().to_string();
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(63.., last);
        assert!(!t.matches(&wrong));
        assert!(!t.matches(""));
        assert!(!t.matches(&t.as_str()[..63]));
        assert_ne!(Token::generate().unwrap().as_str(), t.as_str(), "fresh each time");
    }
}
