//! `caliop bench idle`: how long an IMAP client in IDLE waits to hear of a
//! message that another process stored. Two processes share one PostgreSQL
//! database: `caliop imap` holds the IDLE session, `caliop smtp` takes the
//! mail. Each round sends one message to the MX and times the `* n EXISTS`
//! on the IDLE connection from the MX's `250` (the message is stored),
//! first with `database.notify` off (the IMAP process polls every second),
//! then on (LISTEN/NOTIFY), same load.

use std::time::{Duration, Instant};

use anyhow::Context;
use tenants::Level;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::bench::{Fixture, ImapClient, fixture, percentile};
use crate::soak::start_process;

#[derive(clap::Args, Debug)]
pub struct IdleBench {
    /// The PostgreSQL database both processes use.
    #[arg(long)]
    database_url: String,
    /// Messages per mode.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

pub async fn idle(args: IdleBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.database_url.starts_with("postgres"),
        "LISTEN/NOTIFY is PostgreSQL's; on SQLite another process polls"
    );
    let fixture = fixture(Some(&args.database_url), &[Level::Standard]).await?;
    let account = fixture.account(Level::Standard).await?;
    let Fixture { dir, store, .. } = fixture;
    store.close().await;
    let raw = format!(
        "From: <bench@sender.test>\r\nTo: <{}>\r\nSubject: idle\r\n\r\nhello\r\n",
        account.address
    );
    let mut modes = Vec::new();
    for notify in [false, true] {
        let env = [("CALIOP_DATABASE_NOTIFY", notify.to_string())];
        let imap = start_process(&dir, &args.database_url, "imap", &env)?;
        let smtp = start_process(&dir, &args.database_url, "smtp", &env)?;
        let mut client = ImapClient::connect(imap.door("imap")?).await?;
        client
            .run(&format!("LOGIN {} \"bench passphrase\"", account.address))
            .await?;
        client.run("SELECT INBOX").await?;
        eprintln!(
            "bench: {} messages through another process, notify {}…",
            args.rounds,
            if notify { "on" } else { "off" }
        );
        let (mut waits, mut acks) = (Vec::with_capacity(args.rounds), Vec::new());
        for round in 0..args.rounds {
            client.reader.get_mut().write_all(b"i IDLE\r\n").await?;
            let mut line = String::new();
            client.reader.read_line(&mut line).await?;
            anyhow::ensure!(line.starts_with('+'), "IDLE: {line}");
            // Rounds start at different points of the poll's second.
            tokio::time::sleep(Duration::from_millis(37 * (round as u64 % 27))).await;
            let sent = Instant::now();
            let (stored, _) =
                crate::bench::client(smtp.door("smtp")?, account.address.as_str(), &raw, 1).await?;
            anyhow::ensure!(stored.len() == 1, "the MX refused the message");
            let acknowledged = Instant::now();
            acks.push(acknowledged - sent);
            tokio::time::timeout(Duration::from_secs(60), async {
                loop {
                    line.clear();
                    anyhow::ensure!(
                        client.reader.read_line(&mut line).await? > 0,
                        "the server closed the connection in IDLE"
                    );
                    if line.contains("EXISTS") {
                        return Ok(());
                    }
                }
            })
            .await
            .context("no EXISTS within a minute")??;
            waits.push(acknowledged.elapsed());
            client.reader.get_mut().write_all(b"DONE\r\n").await?;
            loop {
                line.clear();
                anyhow::ensure!(client.reader.read_line(&mut line).await? > 0, "closed");
                if line.starts_with("i ") {
                    anyhow::ensure!(line.starts_with("i OK"), "IDLE: {line}");
                    break;
                }
            }
        }
        waits.sort();
        acks.sort();
        modes.push((notify, waits, acks));
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "caliop bench idle — PostgreSQL, `caliop smtp` stores, `caliop imap` in another process tells its IDLE client; {} messages per mode",
        args.rounds
    );
    println!(
        "{:<22} {:>16} {:>22} {:>22} {:>22}",
        "mode", "MX answer p50", "EXISTS after it p50", "p99", "max"
    );
    for (notify, waits, acks) in &modes {
        println!(
            "{:<22} {:>13.1} ms {:>19.1} ms {:>19.1} ms {:>19.1} ms",
            if *notify {
                "LISTEN/NOTIFY"
            } else {
                "polling every second"
            },
            percentile(acks, 0.50),
            percentile(waits, 0.50),
            percentile(waits, 0.99),
            percentile(waits, 1.0)
        );
    }
    Ok(())
}
