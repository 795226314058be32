//! Speaking TAK: what ATAK, WinTAK and iTAK teams exchange on their local
//! network (Cursor-on-Target events: positions and GeoChat), read and
//! written so a bridge at the command post can share them with the group.
//!
//! Owns the CoT formats: `xml` reads a document with every count bounded,
//! `cot` is the event model, `proto` TAK Protocol v1's protobuf form. It
//! must not touch the group's keys or sockets: what crosses between the
//! two networks is the bridge's decision.

pub mod bridge;
pub mod cot;
pub mod proto;
pub mod xml;
