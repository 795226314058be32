//! The original LSIM system's Table 4.1, measured on lsim: client
//! registration, group join and group leave times, each measured until every
//! member holds the new key (the joiner by the registrar's answer, everyone
//! else by the rekey arriving over loopback multicast). Also times wrapping a
//! file key (for a file or a message for some members only) for one member
//! and for all the others.
//!
//! `cargo run --release -p lsim-keymgmt --example table41 [members] [runs]`

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use lsim_keymgmt::client::{Followed, Follower, Registration, follow_rekeys};
use lsim_keymgmt::filekey::FileKey;
use lsim_keymgmt::server::{GroupConfig, KeyServer, ServerConfig};
use lsim_keymgmt::suite::SuiteId;
use lsim_keymgmt::users::Cost;
use lsim_transport::net::MulticastConfig;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

async fn all_at(follows: &mut [Follower], epoch: u32) -> Res<()> {
    for f in follows.iter_mut() {
        tokio::time::timeout(Duration::from_secs(10), f.epochs.wait_for(|e| *e == Followed::Epoch(epoch))).await??;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let members: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(4), |a| a.parse())?;
    let dir = std::env::temp_dir().join(format!("lsim-table41-{}", std::process::id()));
    let addr = SocketAddrV4::new(Ipv4Addr::new(239, 79, 1, 1), 31_411);
    let mc = MulticastConfig::loopback(addr);
    let server =
        KeyServer::start(ServerConfig::new(dir.clone(), vec![GroupConfig::loopback("lsim", SuiteId::Aes256Gcm, addr)]))
            .await?;
    let (raddr, pin) = (server.addr()?, server.fingerprint());
    println!("lsim key server on {raddr}, {members} members per run, Argon2id {:?}", Cost::RECOMMENDED);
    println!("| run | registration (ms) | join (ms) | leave (ms) |");
    println!("|---|---|---|---|");
    let (mut reg_ms, mut join_ms, mut leave_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut wraps_ms: Vec<(usize, f64)> = Vec::new();
    for run in 0..runs {
        let mut follows: Vec<Follower> = Vec::new();
        let mut regs = Vec::new();
        let (mut r_sum, mut j_sum) = (0.0, 0.0);
        for m in 0..members {
            let name = format!("r{run}m{m}");
            server.add_user(&name, "pw", Cost::RECOMMENDED)?;
            let t = Instant::now();
            let reg = Registration::login(raddr, pin, &name, "pw").await?;
            r_sum += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let keys = reg.join("lsim").await?;
            let epoch = keys.keys.epoch().unwrap_or(0);
            all_at(&mut follows, epoch).await?;
            j_sum += t.elapsed().as_secs_f64();
            follows.push(follow_rekeys(&mc, (run * 1000 + m) as u32 + 10, keys, *reg.server_key())?);
            regs.push(reg);
        }
        // A file key wrapped for one member, then for all the others.
        let names: Vec<String> = (1..members).map(|m| format!("r{run}m{m}")).collect();
        let key = FileKey::generate()?;
        for to in [&names[..1.min(names.len())], &names[..]] {
            if to.is_empty() {
                continue;
            }
            let mut t = Vec::new();
            for _ in 0..20 {
                let start = Instant::now();
                let wraps = regs[0].wrap_file_key("lsim", to, &key).await?;
                t.push(start.elapsed().as_secs_f64() * 1e3);
                assert_eq!(wraps.len(), to.len());
            }
            t.sort_by(f64::total_cmp);
            wraps_ms.push((to.len(), t[t.len() / 2]));
        }
        let mut l_sum = 0.0;
        while let Some(reg) = regs.pop() {
            let f = follows.pop();
            let t = Instant::now();
            let epoch = reg.leave("lsim").await?;
            all_at(&mut follows, epoch).await?;
            l_sum += t.elapsed().as_secs_f64();
            if let Some(f) = f {
                f.handle.stop();
            }
        }
        let n = members as f64;
        let (r, j, l) = (r_sum / n * 1e3, j_sum / n * 1e3, l_sum / n * 1e3);
        println!("| {} | {r:.2} | {j:.2} | {l:.2} |", run + 1);
        reg_ms.push(r);
        join_ms.push(j);
        leave_ms.push(l);
    }
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!("| avg/run | {:.2} | {:.2} | {:.2} |", avg(&reg_ms), avg(&join_ms), avg(&leave_ms));
    println!("| LSIM (2004, Table 4.1) | 260.57 | 427.60 | 366.38 |");
    for (n, ms) in wraps_ms {
        println!("file key wrapped for {n} member(s): {ms:.2} ms (median of 20 requests)");
    }
    server.close();
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
