//! Invitations from the command line: `lsim user invite NAME` shows the
//! code the server handed out (text, a QR code on the terminal, a PNG),
//! and `lsim chat --invite CODE` enrolls with it: the device chooses its
//! password, registers it with the code's one-time secret, and saves the
//! account as its profile.
//!
//! Owns what is printed and the enrollment's order of steps. It must not
//! touch the code's format (`lsim_im::group::invite`), the registration
//! exchange (`lsim_im::xmpp::client::enroll`) or the profile file
//! (`profile`).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use lsim_im::group::invite::Invite;
use lsim_im::xmpp::client::{ClientConfig, TlsMode};
use lsim_im::xmpp::jid::Jid;
use lsim_im::xmpp::tls::Trust;
use zeroize::Zeroizing;

use super::profile::Profile;
use super::qr;

/// Parses `--expires`: seconds, or a number with s, m, h or d.
pub fn duration_s(text: &str) -> Result<u64> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let n: u64 = num.parse().map_err(|_| anyhow!("--expires {text}: give e.g. 30m, 1h, 2d or seconds"))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => bail!("--expires {text}: the unit is s, m, h or d"),
    };
    Ok(n.saturating_mul(mult))
}

/// Prints what the server answered to `invite` (a line, then the code) as
/// text and a QR code, and writes the PNG to `png`.
pub fn show(lines: &[String], png: &Path) -> Result<()> {
    let [said, code] = lines else { bail!("the server's answer to the invitation is not a line and a code") };
    let picture = qr::png(code)?;
    std::fs::write(png, picture).with_context(|| format!("writing {}", png.display()))?;
    println!("{said}");
    println!("{code}");
    print!("{}", qr::terminal(code)?);
    println!("\nthe QR code is also in {}", png.display());
    println!("on the new member's device: lsim chat --invite {code}");
    Ok(())
}

/// The code as the member's XMPP settings, with `password`.
fn client_config(invite: &Invite, password: &str) -> Result<ClientConfig> {
    let jid = Jid::parse(&invite.jid()).map_err(|e| anyhow!("the invitation's user: {e}"))?;
    let mut cfg = ClientConfig::new(jid, password);
    cfg.server = Some(invite.server.clone());
    cfg.tls = TlsMode::Required;
    cfg.trust = Trust::Pinned(invite.xmpp_pin);
    Ok(cfg)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Enrolls with `code`: registers its user with `password` (or one drawn
/// here), checks it logs in, and saves the profile at `path`.
pub async fn enroll(code: &str, password: Option<Zeroizing<String>>, path: &Path) -> Result<Profile> {
    let invite = Invite::decode(code).map_err(|e| anyhow!("{e}"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if invite.expires_s <= now {
        bail!("the invitation expired: ask for a new one");
    }
    let password = match password {
        Some(p) => p,
        None => {
            let mut raw = Zeroizing::new([0u8; 20]);
            getrandom::fill(raw.as_mut()).map_err(|e| anyhow!("no randomness for a password: {e}"))?;
            Zeroizing::new(hex(raw.as_ref()))
        }
    };
    let profile = Profile {
        jid: invite.jid(),
        server: invite.server.clone(),
        room: invite.room.clone(),
        pin: hex(&invite.xmpp_pin),
        keyserver_pin: hex(&invite.keyserver_pin),
        password: password.to_string(),
    };
    // Refuse an occupied profile before spending the code.
    if path.exists()
        && let Ok(old) = Profile::load(path)
        && old.jid != profile.jid
    {
        bail!("{} holds the profile of {}: give --profile PATH for {}", path.display(), old.jid, profile.jid);
    }
    let cfg = client_config(&invite, &password)?;
    let session = lsim_im::xmpp::client::enroll(&cfg, &invite.token_hex())
        .await
        .map_err(|e| anyhow!("enrolling at {}: {e}", invite.server))?;
    session.close().await;
    profile.save(path)?;
    println!("-- enrolled as {}; saved to {} (next time: lsim chat)", profile.jid, path.display());
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_takes_units() {
        assert_eq!(duration_s("90").unwrap(), 90);
        assert_eq!(duration_s("30m").unwrap(), 1800);
        assert_eq!(duration_s("1h").unwrap(), 3600);
        assert_eq!(duration_s("2d").unwrap(), 172_800);
        assert!(duration_s("1w").is_err() && duration_s("h").is_err() && duration_s("").is_err());
    }
}
