//! XMPP (being written).
