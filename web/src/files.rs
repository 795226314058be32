//! What a file is, for the page: shown inline (verified images, PDF, plain
//! text) or offered for download only (everything else, SVG and HTML
//! above all, which can carry script), and the names uploads may land under.
//!
//! Owns recognising a file by its first bytes (never by its name alone, which
//! the sender chose) and cleaning a name a browser sent. It must not touch
//! requests or the member; `api` serves what this decides.

/// How the page may show a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// An image the browser decodes: shown in an `<img>`.
    Image(&'static str),
    /// A PDF: shown in a frame.
    Pdf,
    /// UTF-8 text without control characters: shown as text.
    Text,
    /// Anything else: a download link, served as an attachment.
    Download,
}

impl Display {
    /// The `Content-Type` the file is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Display::Image(t) => t,
            Display::Pdf => "application/pdf",
            Display::Text => "text/plain; charset=utf-8",
            Display::Download => "application/octet-stream",
        }
    }

    /// The name the page knows this kind by.
    pub fn kind(self) -> &'static str {
        match self {
            Display::Image(_) => "image",
            Display::Pdf => "pdf",
            Display::Text => "text",
            Display::Download => "download",
        }
    }
}

/// Bytes read from the start of a file to recognise it.
pub const SNIFF: usize = 4096;

/// What `head` (the file's first bytes, up to `SNIFF`) and its name say the
/// file is. Images and PDF by their signature; text only if the name says
/// so and the bytes agree; SVG, HTML and the rest are downloads.
pub fn recognise(name: &str, head: &[u8]) -> Display {
    let image = |t| Display::Image(t);
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return image("image/png");
    }
    if head.starts_with(&[0xff, 0xd8, 0xff]) {
        return image("image/jpeg");
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return image("image/gif");
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return image("image/webp");
    }
    if head.starts_with(b"%PDF-") {
        return Display::Pdf;
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    let texty = matches!(ext.as_str(), "txt" | "md" | "csv" | "log" | "json" | "gpx" | "kml" | "geojson");
    if texty && looks_like_text(head) {
        return Display::Text;
    }
    Display::Download
}

/// UTF-8 (a character cut at the end of the sample allowed) without NUL or
/// other control characters than tab, line feed and carriage return.
fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
        Err(_) => return false,
    };
    valid.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

/// Longest name an upload keeps (the envelope carries at most 255 bytes).
pub const MAX_NAME: usize = 200;

/// A name a browser sent for an upload, made safe to create in a directory
/// of our own: the last path component only, control characters and
/// separators replaced, never empty or a dot name, at most `MAX_NAME` bytes.
pub fn upload_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = last.chars().map(|c| if c.is_control() || c == ':' { '_' } else { c }).collect();
    while name.len() > MAX_NAME {
        name.pop();
    }
    let name = name.trim().trim_start_matches('.').to_string();
    if name.is_empty() { "file".to_string() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_and_pdf_by_their_signature_whatever_the_name() {
        assert_eq!(recognise("x.txt", b"\x89PNG\r\n\x1a\n...."), Display::Image("image/png"));
        assert_eq!(recognise("a", &[0xff, 0xd8, 0xff, 0xe0]), Display::Image("image/jpeg"));
        assert_eq!(recognise("a.gif", b"GIF89a.."), Display::Image("image/gif"));
        assert_eq!(recognise("a", b"RIFF\0\0\0\0WEBPVP8 "), Display::Image("image/webp"));
        assert_eq!(recognise("a", b"%PDF-1.7\n"), Display::Pdf);
    }

    #[test]
    fn markup_that_can_run_script_is_only_ever_a_download() {
        let svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>";
        assert_eq!(recognise("map.svg", svg), Display::Download);
        assert_eq!(
            recognise("map.txt", b"<html><script>alert(1)</script>"),
            Display::Text,
            "text, served as text/plain"
        );
        assert_eq!(recognise("page.html", b"<html><script>alert(1)</script>"), Display::Download);
        assert_eq!(recognise("a.png.html", b"<html>"), Display::Download);
    }

    #[test]
    fn text_needs_a_text_name_and_text_bytes() {
        assert_eq!(recognise("notes.md", "grid 4, sector ✓\n".as_bytes()), Display::Text);
        assert_eq!(recognise("notes.md", b"bin\0ary"), Display::Download);
        assert_eq!(recognise("notes.md", &[0x68, 0xc3]), Display::Text, "a character cut by the sample");
        assert_eq!(recognise("notes.md", &[0xff, 0xfe]), Display::Download);
        assert_eq!(recognise("notes", b"plain"), Display::Download);
    }

    #[test]
    fn upload_names_stay_in_their_directory() {
        assert_eq!(upload_name("../../etc/passwd"), "passwd");
        assert_eq!(upload_name("C:\\Users\\x\\map.png"), "map.png");
        assert_eq!(upload_name(".."), "file");
        assert_eq!(upload_name(".bashrc"), "bashrc");
        assert_eq!(upload_name("a\nb\u{7}.png"), "a_b_.png");
        assert_eq!(upload_name(""), "file");
        assert!(upload_name(&"é".repeat(300)).len() <= MAX_NAME);
    }
}
