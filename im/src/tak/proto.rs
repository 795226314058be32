//! TAK Protocol version 1, mesh form: `0xbf 0x01 0xbf` and a protobuf
//! `TakMessage` (takproto's schema), what ATAK sends on the local network
//! even to peers that speak only XML.
//!
//! Owns the protobuf messages (the fields we use; protobuf skips the
//! rest) and the conversion to and from [`CotEvent`]. Details protobuf
//! has no field for travel as XML (`xmlDetail`), read with the same bounds
//! as a CoT document. It must not touch sockets.

use prost::Message;

use super::cot::{CotError, CotEvent, Point};
use super::xml;
use crate::xmpp::element::{Element, Node};

/// What starts a mesh datagram of TAK Protocol version 1.
pub const MESH_HEADER: [u8; 3] = [0xbf, 0x01, 0xbf];

/// takproto's `TakMessage`.
#[derive(Clone, PartialEq, Message)]
pub struct TakMessage {
    /// Version negotiation (unused on the mesh).
    #[prost(message, optional, tag = "1")]
    pub tak_control: Option<TakControl>,
    /// The event.
    #[prost(message, optional, tag = "2")]
    pub cot_event: Option<ProtoEvent>,
}

/// takproto's `TakControl`.
#[derive(Clone, PartialEq, Message)]
pub struct TakControl {
    /// Lowest version spoken.
    #[prost(uint32, tag = "1")]
    pub min_proto_version: u32,
    /// Highest version spoken.
    #[prost(uint32, tag = "2")]
    pub max_proto_version: u32,
    /// The sender's uid.
    #[prost(string, tag = "3")]
    pub contact_uid: String,
}

/// takproto's `CotEvent`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoEvent {
    /// CoT type.
    #[prost(string, tag = "1")]
    pub r#type: String,
    /// Access.
    #[prost(string, tag = "2")]
    pub access: String,
    /// Quality of service.
    #[prost(string, tag = "3")]
    pub qos: String,
    /// Operational exercise.
    #[prost(string, tag = "4")]
    pub opex: String,
    /// Event uid.
    #[prost(string, tag = "5")]
    pub uid: String,
    /// When sent, ms since the Unix epoch.
    #[prost(uint64, tag = "6")]
    pub send_time: u64,
    /// From when it holds.
    #[prost(uint64, tag = "7")]
    pub start_time: u64,
    /// Until when it holds.
    #[prost(uint64, tag = "8")]
    pub stale_time: u64,
    /// How it was made.
    #[prost(string, tag = "9")]
    pub how: String,
    /// Degrees north.
    #[prost(double, tag = "10")]
    pub lat: f64,
    /// Degrees east.
    #[prost(double, tag = "11")]
    pub lon: f64,
    /// Height above the ellipsoid.
    #[prost(double, tag = "12")]
    pub hae: f64,
    /// Circular error.
    #[prost(double, tag = "13")]
    pub ce: f64,
    /// Linear error.
    #[prost(double, tag = "14")]
    pub le: f64,
    /// Details.
    #[prost(message, optional, tag = "15")]
    pub detail: Option<ProtoDetail>,
}

/// takproto's `Detail` (the fields we read or write).
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDetail {
    /// Details with no field of their own, as XML elements (no root).
    #[prost(string, tag = "1")]
    pub xml_detail: String,
    /// The unit's contact.
    #[prost(message, optional, tag = "2")]
    pub contact: Option<ProtoContact>,
}

/// takproto's `Contact`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoContact {
    /// Where to reach it.
    #[prost(string, tag = "1")]
    pub endpoint: String,
    /// Its callsign.
    #[prost(string, tag = "2")]
    pub callsign: String,
}

/// Reads a TAK Protocol v1 mesh datagram.
pub fn decode(datagram: &[u8]) -> Result<CotEvent, CotError> {
    if datagram.len() > xml::MAX_DOCUMENT {
        return Err(xml::XmlError::TooLarge("bytes").into());
    }
    let body =
        datagram.strip_prefix(&MESH_HEADER[..]).ok_or_else(|| CotError::Invalid("no TAK v1 mesh header".into()))?;
    let msg = TakMessage::decode(body).map_err(|e| CotError::Invalid(format!("protobuf: {e}")))?;
    let e = msg.cot_event.ok_or_else(|| CotError::Invalid("a TakMessage without an event".into()))?;
    // Through the XML reader: one place checks every field and bound.
    let fmt = |v: f64| if v.is_finite() { format!("{v}") } else { "NaN".into() };
    let point = Element::new("point", "")
        .attr("lat", fmt(e.lat))
        .attr("lon", fmt(e.lon))
        .attr("hae", fmt(e.hae))
        .attr("ce", fmt(e.ce))
        .attr("le", fmt(e.le));
    let mut detail = Element::new("detail", "");
    if let Some(d) = &e.detail {
        if !d.xml_detail.is_empty() {
            let wrapped = xml::parse(format!("<detail>{}</detail>", d.xml_detail).as_bytes())?;
            detail.children = wrapped.children;
        }
        if let Some(c) = &d.contact {
            detail.children.push(Node::Element(
                Element::new("contact", "").attr("callsign", c.callsign.as_str()).attr("endpoint", c.endpoint.as_str()),
            ));
        }
    }
    let root = Element::new("event", "")
        .attr("version", "2.0")
        .attr("uid", e.uid.as_str())
        .attr("type", e.r#type.as_str())
        .attr("how", e.how.as_str())
        .attr("time", super::cot::format_time(e.send_time))
        .attr("start", super::cot::format_time(e.start_time))
        .attr("stale", super::cot::format_time(e.stale_time))
        .child(point)
        .child(detail);
    CotEvent::from_element(&root)
}

/// Writes `event` as a TAK Protocol v1 mesh datagram.
pub fn encode(event: &CotEvent) -> Vec<u8> {
    let Point { lat, lon, hae, ce, le } = event.point;
    let full = event.to_element();
    // What has no protobuf field of its own goes as XML (the chat, the link, the remarks).
    let xml_detail: String = full
        .elements()
        .find(|e| e.name == "detail")
        .map(|d| d.elements().filter(|e| e.name != "contact").map(Element::to_xml).collect())
        .unwrap_or_default();
    let contact = event.callsign.as_ref().map(|c| ProtoContact { endpoint: String::new(), callsign: c.clone() });
    let msg = TakMessage {
        tak_control: None,
        cot_event: Some(ProtoEvent {
            r#type: event.kind.clone(),
            access: String::new(),
            qos: String::new(),
            opex: String::new(),
            uid: event.uid.clone(),
            send_time: event.time_ms,
            start_time: event.start_ms,
            stale_time: event.stale_ms,
            how: event.how.clone(),
            lat,
            lon,
            hae,
            ce,
            le,
            detail: Some(ProtoDetail { xml_detail, contact }),
        }),
    };
    let mut out = MESH_HEADER.to_vec();
    msg.encode(&mut out).unwrap_or_default();
    out
}

/// Reads a datagram from a TAK network in either form: v1 (by its
/// header) or CoT XML.
pub fn decode_any(datagram: &[u8]) -> Result<CotEvent, CotError> {
    if datagram.starts_with(&MESH_HEADER) { decode(datagram) } else { CotEvent::from_xml(datagram) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn positions_and_chat_round_trip_through_v1() {
        let pli = CotEvent::pli("lsim-alice", "alice", Point::at(47.62, -122.35), 1_796_000_000_000, 120);
        assert_eq!(decode(&encode(&pli)).unwrap(), pli);
        let chat = CotEvent::geochat("ANDROID-1", "ENGINE 7", "lsim", "m-1", "on <scene> & ready", 1_796_000_000_500);
        let bytes = encode(&chat);
        assert_eq!(&bytes[..3], &MESH_HEADER);
        assert_eq!(decode_any(&bytes).unwrap(), chat);
        assert_eq!(decode_any(chat.to_xml().as_bytes()).unwrap(), chat);
    }

    /// What takproto 2.x (PyPI) writes for an ATAK position report with
    /// `xml2proto(..., TAKProtoVer.MESH)`: a vector from a library no one
    /// here wrote (its `__group` detail in a field we skip).
    const TAKPROTO_PLI: &str = "bf01bf128b010a09612d662d472d552d432a09414e44524f49442d313089dbe190a5343889dbe190a53440e1ccf890a5344a036d2d67518fc2f5285ccf4740596666666666965ec061000000e0cf12634169000000e0cf12634171000000e0cf1263417a2c12150a092a3a2d313a737463701208454e47494e4520371a130a044379616e120b5465616d204d656d626572";

    #[test]
    fn what_takproto_writes_reads() {
        let bytes: Vec<u8> = (0..TAKPROTO_PLI.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&TAKPROTO_PLI[i..i + 2], 16).unwrap())
            .collect();
        let e = decode_any(&bytes).unwrap();
        assert_eq!(
            (e.uid.as_str(), e.kind.as_str(), e.callsign.as_deref()),
            ("ANDROID-1", "a-f-G-U-C", Some("ENGINE 7"))
        );
        assert!((e.point.lat - 47.62).abs() < 1e-9 && (e.point.lon + 122.35).abs() < 1e-9);
        assert_eq!(super::super::cot::format_time(e.time_ms), "2026-12-07T20:01:02.345Z");
    }

    #[test]
    fn hostile_v1_is_refused() {
        assert!(decode(b"\xbf\x01\xbf\xff\xff\xff").is_err(), "malformed protobuf");
        assert!(decode(b"\xbf\x01\xbf").is_err(), "no event");
        assert!(decode(b"<event/>").is_err(), "no header");
        let mut evil = CotEvent::pli("x", "x", Point::at(0.0, 0.0), 0, 1);
        evil.point.lat = 95.0;
        assert!(decode(&encode(&evil)).is_err(), "off the globe");
        // A DTD smuggled into the XML details.
        let msg = TakMessage {
            tak_control: None,
            cot_event: Some(ProtoEvent {
                r#type: "a-f-G".into(),
                uid: "u".into(),
                detail: Some(ProtoDetail { xml_detail: "<!DOCTYPE x [<!ENTITY a 'b'>]><x/>".into(), contact: None }),
                ..Default::default()
            }),
        };
        let mut bytes = MESH_HEADER.to_vec();
        msg.encode(&mut bytes).unwrap();
        assert!(decode(&bytes).is_err());
        let big = [&MESH_HEADER[..], &vec![0u8; xml::MAX_DOCUMENT]].concat();
        assert!(decode(&big).is_err());
    }

    proptest! {
        #[test]
        fn no_bytes_panic_v1(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&[&MESH_HEADER[..], &body].concat());
        }
    }
}
