//! Speaking TAK: what ATAK, WinTAK and iTAK teams exchange on their local
//! network (Cursor-on-Target events: positions and GeoChat), read and
//! written so a bridge at the command post can share them with the group.
//!
//! Owns the CoT formats (`xml` reads a document with every count bounded,
//! `cot` the event model). It must not touch the group's keys or sockets:
//! what crosses between the two networks is the bridge's decision.

pub mod cot;
pub mod xml;
