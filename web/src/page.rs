//! The page itself: one HTML document, its script and its style sheet,
//! compiled into the binary (no CDN, no network beyond the member's own
//! port).
//!
//! Owns the embedded assets. The script builds every element from data with
//! `textContent` and attributes, never from markup; it must not be inlined
//! into the HTML (the policy forbids inline script).

/// The document.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The script.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// The style sheet.
pub const APP_CSS: &str = include_str!("../assets/app.css");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_inline_and_nothing_from_elsewhere() {
        assert!(!INDEX_HTML.contains("<script>"), "no inline script");
        let handler = INDEX_HTML.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "no inline handlers");
        assert!(!INDEX_HTML.contains("style="), "no inline style");
        for text in [INDEX_HTML, APP_JS, APP_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"), "nothing from another origin");
        }
        assert!(
            !APP_JS.contains("innerHTML") && !APP_JS.contains("outerHTML") && !APP_JS.contains("insertAdjacentHTML")
        );
        assert!(!APP_JS.contains("eval(") && !APP_JS.contains("document.write"));
    }
}
