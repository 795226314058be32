//! Bit-exact delivery of a 16 MiB file and of 1,000 chat messages to every
//! receiver, for 1, 3, 16 and 100 receivers, at 0, 5, 20 and 50 %
//! independent loss and at bursty loss (mean burst 8 packets, 10 % average).
//! Every delivered object is checked against the sender's SHA-256.

mod common;

use common::{assert_delivered, loss, run, shipped};

fn file(receivers: u32, l: &str) {
    let mut s = shipped("file-16mib");
    s.receivers = receivers;
    s.loss = loss(l);
    let r = run(s);
    assert_delivered(&r);
    assert_eq!(r.object_bytes, 16 << 20);
}

fn chats(receivers: u32, l: &str) {
    let mut s = shipped("chat-1000");
    s.receivers = receivers;
    s.loss = loss(l);
    let r = run(s);
    assert_delivered(&r);
    assert_eq!(r.objects, 1000);
}

macro_rules! matrix {
    ($($name:ident: $n:expr, $loss:expr;)*) => {
        mod file_16mib {
            $(#[test] fn $name() { super::file($n, $loss) })*
        }
        mod chat_1000 {
            $(#[test] fn $name() { super::chats($n, $loss) })*
        }
    };
}

matrix! {
    n1_loss0: 1, "0";
    n1_loss5: 1, "5";
    n1_loss20: 1, "20";
    n1_loss50: 1, "50";
    n1_bursty: 1, "bursty";
    n3_loss0: 3, "0";
    n3_loss5: 3, "5";
    n3_loss20: 3, "20";
    n3_loss50: 3, "50";
    n3_bursty: 3, "bursty";
    n16_loss0: 16, "0";
    n16_loss5: 16, "5";
    n16_loss20: 16, "20";
    n16_loss50: 16, "50";
    n16_bursty: 16, "bursty";
    n100_loss0: 100, "0";
    n100_loss5: 100, "5";
    n100_loss20: 100, "20";
    n100_loss50: 100, "50";
    n100_bursty: 100, "bursty";
}
