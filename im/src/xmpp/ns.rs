//! XML namespaces that both ends of XMPP use.
//!
//! Owns the namespace strings the client, the embedded server and the hub
//! share, so each is written once; the modules re-export the ones they speak
//! under their old paths. Namespaces only one side uses stay with it.

/// Resource binding (RFC 6120 §7).
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Legacy session establishment (RFC 3921): some servers still ask for it,
/// and ours answers it as a no-op.
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// XEP-0199 ping.
pub const NS_PING: &str = "urn:xmpp:ping";
/// XEP-0030 service discovery (info).
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// Stanza error conditions (RFC 6120 §8.3).
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
