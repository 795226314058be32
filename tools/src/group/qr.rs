//! An invitation code as a QR code: drawn on the terminal (two modules a
//! character cell) and written as a PNG a phone can scan off a screen or
//! a printout.
//!
//! Owns the drawing and the PNG file format (a 1-bit grayscale image,
//! stored uncompressed in zlib's framing: no image library needed). It
//! must not touch what the code says (`lsim_im::group::invite`).

use anyhow::{Result, anyhow};
use qrcode::render::unicode::Dense1x2;
use qrcode::{Color, EcLevel, QrCode};

/// Modules of light margin around the code (the standard's quiet zone).
const QUIET: usize = 4;
/// Pixels a module in the PNG.
const SCALE: usize = 6;

fn code(text: &str) -> Result<QrCode> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| anyhow!("the code does not fit a QR code: {e}"))
}

/// The QR code as text, for a terminal with a dark background (light
/// modules drawn as filled blocks, as `qrencode -t UTF8` does).
pub fn terminal(text: &str) -> Result<String> {
    Ok(code(text)?
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// The QR code as a PNG file's bytes.
pub fn png(text: &str) -> Result<Vec<u8>> {
    let qr = code(text)?;
    let modules = qr.width();
    let dark = qr.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let row_bytes = side.div_ceil(8);
    // Each scanline: filter type 0, then the pixels, 1 bit each, 1 = white.
    let mut raw = Vec::with_capacity(side * (1 + row_bytes));
    for y in 0..side {
        raw.push(0);
        let mut line = vec![0xffu8; row_bytes];
        let my = (y / SCALE).checked_sub(QUIET).filter(|m| *m < modules);
        for x in 0..side {
            let mx = (x / SCALE).checked_sub(QUIET).filter(|m| *m < modules);
            if let (Some(mx), Some(my)) = (mx, my)
                && dark[my * modules + mx] == Color::Dark
            {
                line[x / 8] &= !(0x80 >> (x % 8));
            }
        }
        raw.extend_from_slice(&line);
    }
    let side32 = u32::try_from(side).map_err(|_| anyhow!("the QR code is too large"))?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&side32.to_be_bytes());
    ihdr.extend_from_slice(&side32.to_be_bytes());
    // Bit depth 1, grayscale, deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// `data` in a zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// CRC-32 (ISO-HDLC, as PNG uses).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksums_are_the_standard_ones() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let z = zlib_stored(b"Wikipedia");
        assert_eq!(&z[z.len() - 4..], &0x11e6_0398u32.to_be_bytes());
    }

    #[test]
    fn the_png_has_the_code_module_for_module() {
        let text = "LSIM1TEST";
        let bytes = png(text).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let qr = code(text).unwrap();
        let side = (qr.width() + 2 * QUIET) * SCALE;
        assert_eq!(&bytes[16..20], &(side as u32).to_be_bytes());
        // The IDAT's stored blocks, back to scanlines.
        let idat = &bytes[8 + 25 + 8..];
        let mut raw = Vec::new();
        let mut at = 2;
        loop {
            let last = idat[at] == 1;
            let len = u16::from_le_bytes([idat[at + 1], idat[at + 2]]) as usize;
            raw.extend_from_slice(&idat[at + 5..at + 5 + len]);
            at += 5 + len;
            if last {
                break;
            }
        }
        let row = 1 + side.div_ceil(8);
        let pixel = |x: usize, y: usize| raw[y * row + 1 + x / 8] & (0x80 >> (x % 8)) == 0;
        let colors = qr.to_colors();
        for my in 0..qr.width() {
            for mx in 0..qr.width() {
                let (x, y) = ((mx + QUIET) * SCALE + SCALE / 2, (my + QUIET) * SCALE + SCALE / 2);
                assert_eq!(pixel(x, y), colors[my * qr.width() + mx] == Color::Dark, "module {mx},{my}");
            }
        }
        assert!(!pixel(0, 0) && !pixel(side - 1, side - 1), "the quiet zone is light");
    }
}
