//! Whole packets: a body by type, and the order of sealing and opening.
//!
//! Owns `Body` and the functions that write a header and body and seal them
//! (`seal_packet`), or peek a header, rebuild it and open the rest
//! (`peek_header`, `open_packet`, `open_peeked`). The seal itself is
//! `crate::seal`'s.

use super::*;

/// A packet's body, borrowed from the opened datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// A symbol and its header.
    Data(DataFrame, &'a [u8]),
    /// Feedback.
    Feedback(Feedback),
    /// A command.
    Command(Command),
    /// A repair symbol of `origin`'s object, relayed by a repairer (always
    /// with the object info).
    Repair(u32, DataFrame, &'a [u8]),
    /// A holder's summary of silent senders it can still repair.
    Holdings(Holdings),
}

impl Body<'_> {
    /// The packet type of this body.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Body::Data(..) => PacketType::Data,
            Body::Feedback(_) => PacketType::Feedback,
            Body::Command(_) => PacketType::Command,
            Body::Repair(..) => PacketType::Repair,
            Body::Holdings(_) => PacketType::Holdings,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Body::Data(h, symbol) => {
                h.encode(out);
                out.extend_from_slice(symbol);
            }
            Body::Feedback(f) => f.encode(out),
            Body::Command(c) => c.encode(out),
            Body::Repair(origin, h, symbol) => {
                out.extend_from_slice(&origin.to_be_bytes());
                h.encode(out);
                out.extend_from_slice(symbol);
            }
            Body::Holdings(h) => h.encode(out),
        }
    }

    pub(super) fn read<'a>(packet_type: PacketType, body: &'a [u8]) -> Result<Body<'a>, WireError> {
        let mut r = Reader::new(body);
        Ok(match packet_type {
            PacketType::Data => {
                let f = DataFrame::read(&mut r)?;
                let symbol = r.rest();
                if let Some(info) = f.info {
                    f.complete(info)?.check_symbol(symbol.len())?;
                }
                Body::Data(f, symbol)
            }
            PacketType::Feedback => Body::Feedback(Feedback::read(&mut r)?),
            PacketType::Command => Body::Command(Command::read(&mut r)?),
            PacketType::Repair => {
                let origin = r.u32("repair origin")?;
                let f = DataFrame::read(&mut r)?;
                let symbol = r.rest();
                let Some(info) = f.info else { return Err(WireError::Form("a relayed symbol without object info")) };
                let h = f.complete(info)?;
                h.check_symbol(symbol.len())?;
                if !h.is_repair() {
                    return Err(h.symbol_error("a relayed symbol must be a repair symbol"));
                }
                Body::Repair(origin, f, symbol)
            }
            PacketType::Holdings => Body::Holdings(Holdings::read(&mut r)?),
        })
    }
}

/// Writes `header` (in its wire form, as short as it may be) and `body` into
/// `out` (cleared first) and seals it: the full header is associated data
/// (`Header::aad`), the body is encrypted, the tag is appended.
pub fn seal_packet<S: Seal + ?Sized>(
    seal: &mut S,
    header: &Header,
    body: &Body<'_>,
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    seal_packet_as(seal, header, false, body, out)
}

/// `seal_packet` with the long header if `long` (a node whose peers may not
/// know its counter yet sends its full counter).
pub fn seal_packet_as<S: Seal + ?Sized>(
    seal: &mut S,
    header: &Header,
    long: bool,
    body: &Body<'_>,
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    debug_assert_eq!(header.packet_type, body.packet_type());
    out.clear();
    header.encode(out, long);
    let header_len = out.len();
    body.encode(out);
    let tag_len = seal.tag_len();
    let body_end = out.len();
    out.resize(body_end + tag_len, 0);
    let (payload, tag) = out[header_len..].split_at_mut(body_end - header_len);
    seal.seal(header.epoch, header.nonce(), &header.aad(long), payload, tag)
}

/// Reads only the common header's wire form, without opening the packet (to
/// route or drop it early).
pub fn peek_header(datagram: &[u8]) -> Result<Peek, WireError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(WireError::Oversized(datagram.len()));
    }
    Peek::read(&mut Reader::new(datagram))
}

/// Opens a datagram in place: reads the header, rebuilds it (`Peek::expand`:
/// `session` is ours; `reference(node, receiver_role)` gives the highest
/// counter accepted from that node and role, for short headers), verifies and
/// decrypts the body, and parses it. Nothing of a packet whose seal fails is
/// parsed.
pub fn open_packet<'a, S: Seal + ?Sized>(
    seal: &mut S,
    datagram: &'a mut [u8],
    session: u32,
    reference: impl FnOnce(u32, bool) -> Option<u64>,
) -> Result<(Header, Body<'a>), WireError> {
    let peek = peek_header(datagram)?;
    open_peeked(seal, datagram, &peek, session, reference)
}

/// `open_packet` for a datagram whose header was already read into `peek`
/// (by `peek_header` on these same bytes).
pub fn open_peeked<'a, S: Seal + ?Sized>(
    seal: &mut S,
    datagram: &'a mut [u8],
    peek: &Peek,
    session: u32,
    reference: impl FnOnce(u32, bool) -> Option<u64>,
) -> Result<(Header, Body<'a>), WireError> {
    let header_len = peek.len();
    let tag_len = seal.tag_len();
    if datagram.len() < header_len + tag_len {
        return Err(WireError::Truncated { what: "tag", need: header_len + tag_len, have: datagram.len() });
    }
    let top = if peek.long { None } else { reference(peek.node, peek.receiver_role()) };
    let header = peek.expand(session, seal.current_epoch(), top)?;
    let aad = header.aad(peek.long);
    let rest = &mut datagram[header_len..];
    let body_len = rest.len() - tag_len;
    let (payload, tag) = rest.split_at_mut(body_len);
    seal.open(header.epoch, header.nonce(), &aad, payload, tag)?;
    let body = Body::read(header.packet_type, payload)?;
    Ok((header, body))
}
