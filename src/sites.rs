//! `caliop sites …`: the operator's view of the storage sites, and the
//! maintenance passes run by hand with a progress bar. Each pass is
//! resumable: stopped halfway, it picks up where it was (scrub keeps a
//! cursor; repair and evacuation work from what is still left to do).

use anyhow::Context as _;
use clap::Subcommand;
use mail::dispersed::{Dispersed, PassReport};

#[derive(Subcommand)]
pub enum SitesCommand {
    /// Health of every site, shards and bytes per site, objects per redundancy.
    Status,
    /// Re-hash every shard; mark missing and corrupt ones for repair.
    Scrub {
        /// Start from the first object instead of resuming an interrupted scrub.
        #[arg(long)]
        restart: bool,
    },
    /// Rebuild missing and corrupt shards from k good ones, most endangered objects first.
    Repair,
    /// Move every shard off SITE, without decrypting anything.
    Evacuate {
        /// The site to empty.
        site: String,
        /// Where the shards go (default: wherever placement allows, per object).
        #[arg(long)]
        to: Option<String>,
    },
}

fn print_report(report: &PassReport) {
    println!(
        "{} objects: {} shards checked, {} missing, {} corrupt, {} on sites that did not answer; \
         {} rebuilt, {} moved, {} purged",
        report.objects,
        report.shards_checked,
        report.missing,
        report.corrupt,
        report.unreachable,
        report.rebuilt,
        report.moved,
        report.purged
    );
    for (object, why) in &report.skipped {
        println!("  left as it was: {object}: {why}");
    }
}

fn size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub async fn run(dispersed: &Dispersed, command: SitesCommand) -> anyhow::Result<()> {
    let bar = crate::progress::Bar::new("objects");
    match command {
        SitesCommand::Status => {
            let status = dispersed
                .status()
                .await
                .context("reading the sites' status")?;
            println!(
                "default redundancy {} (write quorum {})\n",
                status.default, status.write_quorum
            );
            println!(
                "{:<16} {:<4} {:<6} {:<5} {:>8} {:>10} {:>12} {:>9}  location",
                "site", "jur", "kind", "up", "latency", "shards", "bytes", "unhealthy"
            );
            for s in &status.sites {
                println!(
                    "{:<16} {:<4} {:<6} {:<5} {:>6}ms {:>10} {:>12} {:>9}  {}{}",
                    s.name,
                    s.jurisdiction,
                    s.backend,
                    if s.up { "yes" } else { "NO" },
                    s.latency_ms,
                    s.usage.shards,
                    size(s.usage.bytes),
                    s.usage.unhealthy,
                    s.location,
                    s.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default(),
                );
            }
            println!(
                "\nobjects by good shards (k needed to read; every shard above k is one more site that may be lost):"
            );
            if status.redundancy.is_empty() {
                println!("  no dispersed objects yet");
            }
            for r in &status.redundancy {
                let margin = r.good - r.k;
                let verdict = match margin {
                    m if m < 0 => "UNREADABLE until repaired".to_owned(),
                    0 => "no margin: one more loss makes it unreadable".to_owned(),
                    m => format!(
                        "survives {m} more site loss{}",
                        if m == 1 { "" } else { "es" }
                    ),
                };
                println!(
                    "  {}-of-{} with {} good: {:>8} objects  {}",
                    r.k, r.n, r.good, r.objects, verdict
                );
            }
        }
        SitesCommand::Scrub { restart } => print_report(&dispersed.scrub(&bar, restart).await?),
        SitesCommand::Repair => print_report(&dispersed.repair(&bar).await?),
        SitesCommand::Evacuate { site, to } => {
            let report = dispersed.evacuate(&site, to.as_deref(), &bar).await?;
            print_report(&report);
            if !report.skipped.is_empty() {
                anyhow::bail!("{} objects are still on site {site}", report.skipped.len());
            }
        }
    }
    Ok(())
}
