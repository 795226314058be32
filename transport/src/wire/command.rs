//! Sender command bodies: flush, heartbeat, frontier and GRTT probe.
//!
//! Owns `Frontier`, `Command` and `Probe`. It decides nothing about when a
//! command goes.

use super::*;

/// How far the sender has got: every source symbol of objects before
/// `object`, and of blocks before `blocks_sent` in `object`, has been sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Frontier {
    /// The newest object the sender has started.
    pub object: u32,
    /// Blocks of that object whose source symbols are all sent.
    pub blocks_sent: u32,
}

/// A sender command: FLUSH (after data) or heartbeat (idle), optionally a GRTT probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Command {
    /// True right after data (a flush), false for an idle heartbeat.
    pub flush: bool,
    /// How far the sender has got; `None` before its first object.
    pub frontier: Option<Frontier>,
    /// Oldest object the sender can still repair.
    pub oldest: u32,
    /// The sender's group RTT estimate, microseconds.
    pub grtt_us: u32,
    /// The median loss the receivers reported lately, in 1/65535ths (scales NACK urgency).
    pub group_loss: u16,
    /// A probe to echo, if this command carries one.
    pub probe: Option<Probe>,
}

/// A GRTT probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    /// Send time in the sender's clock (microseconds).
    pub time: u64,
    /// Which receivers answer: those whose `reply_hash` falls below this (out of 65536).
    pub reply_fraction: u16,
}

impl Codec for Command {
    type Error = WireError;

    /// Writes the command body.
    fn encode(&self, out: &mut Vec<u8>) {
        let mut flags = 0u8;
        if self.flush {
            flags |= 1;
        }
        if self.frontier.is_some() {
            flags |= 2;
        }
        if self.probe.is_some() {
            flags |= 4;
        }
        out.push(flags);
        let f = self.frontier.unwrap_or(Frontier { object: 0, blocks_sent: 0 });
        out.extend_from_slice(&f.object.to_be_bytes());
        out.extend_from_slice(&f.blocks_sent.to_be_bytes());
        out.extend_from_slice(&self.oldest.to_be_bytes());
        out.extend_from_slice(&self.grtt_us.to_be_bytes());
        out.extend_from_slice(&self.group_loss.to_be_bytes());
        let p = self.probe.unwrap_or(Probe { time: 0, reply_fraction: 0 });
        out.extend_from_slice(&p.time.to_be_bytes());
        out.extend_from_slice(&p.reply_fraction.to_be_bytes());
    }

    /// Reads a command body.
    fn read(r: &mut Reader<'_>) -> Result<Command, WireError> {
        let flags = r.u8("command flags")?;
        if flags & !7 != 0 {
            return Err(WireError::Flags(flags, "command"));
        }
        let object = r.u32("frontier object")?;
        let blocks_sent = r.u32("frontier blocks")?;
        let oldest = r.u32("oldest object")?;
        let grtt_us = r.u32("grtt")?;
        let group_loss = r.u16("group loss")?;
        let time = r.u64("probe time")?;
        let reply_fraction = r.u16("reply fraction")?;
        r.finish("command")?;
        Ok(Command {
            flush: flags & 1 != 0,
            frontier: (flags & 2 != 0).then_some(Frontier { object, blocks_sent }),
            oldest,
            grtt_us,
            group_loss,
            probe: (flags & 4 != 0).then_some(Probe { time, reply_fraction }),
        })
    }
}
