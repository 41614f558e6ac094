//! `caliop tenant export|import` (a whole tenant to another instance) and
//! `caliop legal export` (a disclosure for a legal request), with progress
//! bars on a terminal and progress lines in the log otherwise.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use secrecy::SecretString;
use tenants::TenantId;
use vault::archive::{Recipient, Unlock};

use crate::config::Config;
use crate::progress::Bar;

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Write TENANT_ID, every tenant under it and all their data to one
    /// encrypted archive OUT (resumable with --resume).
    Export {
        tenant_id: uuid::Uuid,
        out: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// Encrypt to this OpenPGP public key (armored) instead of a passphrase.
        #[arg(long, value_name = "PUBLIC_KEY_FILE")]
        to_key: Option<PathBuf>,
        /// Continue an export that was interrupted.
        #[arg(long)]
        resume: bool,
    },
    /// Recreate on this instance the tenant tree exported to ARCHIVE: all of it, or nothing.
    Import {
        archive: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        /// Open the archive with this OpenPGP secret key (armored); its
        /// passphrase comes as the archive passphrase would.
        #[arg(long, value_name = "SECRET_KEY_FILE")]
        key_file: Option<PathBuf>,
        /// The tenant to hang the imported tree under (default: the operator tenant).
        #[arg(long)]
        parent: Option<uuid::Uuid>,
        /// Keep the archive's domain and hostname verifications, vouched for
        /// by you as forced verifications (audited). Without it they must be
        /// proven again through DNS: the archive's word is not proof.
        #[arg(long)]
        trust_verification: bool,
        /// The imported tenant's limits (default: the archive's); they must
        /// fit the parent's package.
        #[arg(long)]
        max_accounts: Option<i64>,
        #[arg(long)]
        max_domains: Option<i64>,
        #[arg(long)]
        storage_quota_bytes: Option<i64>,
    },
}

#[derive(Args)]
pub struct KeyArgs {
    /// Read the passphrase from the first line of this file (else
    /// `CALIOP_ARCHIVE_PASSPHRASE`, else the first line of standard input).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum LegalCommand {
    /// Write the signed disclosure archive of a valid legal request and record it in the register.
    Export {
        request_id: uuid::Uuid,
        /// Where to write it (default: `disclosure-REQUEST_ID.tar` here).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

impl KeyArgs {
    fn passphrase(&self) -> anyhow::Result<SecretString> {
        let line = if let Some(path) = &self.passphrase_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            text.lines().next().unwrap_or_default().to_owned()
        } else if let Ok(value) = std::env::var("CALIOP_ARCHIVE_PASSPHRASE") {
            value
        } else {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the passphrase from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        };
        if line.is_empty() {
            anyhow::bail!(
                "no passphrase: give --passphrase-file, set CALIOP_ARCHIVE_PASSPHRASE, or type it on standard input"
            );
        }
        Ok(SecretString::from(line))
    }
}

/// The store, keys and storage sites, as `serve` opens them; nothing listens.
async fn instance(config: &Config) -> anyhow::Result<mail::inbound::Inbound> {
    // Never a new key here: what it sealed would open nowhere. Checked
    // before the store is opened, which would make an empty database.
    let master =
        vault::at_rest::MasterKey::load(&config.data_dir).context("loading the master key")?;
    let store = crate::open_store(config).await?;
    let dispersed = std::sync::Arc::new(
        config
            .dispersed(&store)
            .context("opening the storage sites")?,
    );
    Ok(
        mail::inbound::Inbound::new(store, master, None, config.mail.hostname.clone())
            .with_dispersed(dispersed),
    )
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub async fn tenant(config: &Config, command: TenantCommand) -> anyhow::Result<()> {
    let inbound = instance(config).await?;
    let outcome = match command {
        TenantCommand::Export {
            tenant_id,
            out,
            key,
            to_key,
            resume,
        } => {
            let recipient = match &to_key {
                Some(path) => Recipient::OpenPgp {
                    public_key_armored: read(path)?,
                },
                None => {
                    let passphrase = key.passphrase()?;
                    if secrecy::ExposeSecret::expose_secret(&passphrase)
                        .chars()
                        .count()
                        < 12
                    {
                        anyhow::bail!(
                            "the passphrase must be at least 12 characters long: it is all that protects the archive"
                        );
                    }
                    Recipient::passphrase(passphrase)
                }
            };
            let summary = transfer::tenant::export(
                &inbound,
                TenantId(tenant_id),
                &out,
                &recipient,
                resume,
                &Bar::new(""),
            )
            .await;
            summary.map(|s| {
                println!(
                    "exported {} tenant(s), {} account(s), {} message(s) ({} bytes of mail) to {} ({} bytes)",
                    s.tenants, s.accounts, s.messages, s.message_bytes, out.display(), s.archive_bytes
                );
            })
        }
        TenantCommand::Import {
            archive,
            key,
            key_file,
            parent,
            trust_verification,
            max_accounts,
            max_domains,
            storage_quota_bytes,
        } => {
            let unlock = match &key_file {
                Some(path) => Unlock::OpenPgp {
                    secret_key_armored: read(path)?,
                    passphrase: key.passphrase()?,
                },
                None => Unlock::Passphrase(key.passphrase()?),
            };
            let options = transfer::tenant::ImportOptions {
                parent: parent.map(TenantId),
                trust_verification,
                max_accounts,
                max_domains,
                storage_quota_bytes,
            };
            let summary = transfer::tenant::import_with(
                &inbound,
                &archive,
                &unlock,
                &options,
                "operator",
                &Bar::new(""),
            )
            .await;
            summary.map(|s| {
                println!(
                    "imported {} tenant(s), {} account(s), {} message(s) ({} bytes of mail) from {}",
                    s.tenants, s.accounts, s.messages, s.message_bytes, archive.display()
                );
                for warning in &s.warnings {
                    println!("  warning: {warning}");
                }
            })
        }
    };
    inbound.store().close().await;
    outcome.map_err(|e| anyhow::anyhow!("{e}"))
}

pub async fn legal(config: &Config, command: LegalCommand) -> anyhow::Result<()> {
    let LegalCommand::Export { request_id, out } = command;
    let inbound = instance(config).await?;
    let key =
        vault::instance::InstanceKey::load(&config.data_dir).context("loading the instance key")?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("disclosure-{request_id}.tar")));
    let outcome = transfer::legal::export(
        &inbound,
        &key,
        &config.mail.hostname,
        request_id,
        &out,
        "operator",
    )
    .await;
    inbound.store().close().await;
    let d = outcome.map_err(|e| anyhow::anyhow!("{e}"))?;
    let [standard, sealed, dispersed, end_to_end] = d.messages_by_level;
    println!(
        "wrote {} ({} bytes), signature in {}",
        d.archive.display(),
        d.bytes,
        d.signature_file.display()
    );
    println!("sha256 {}", d.sha256);
    println!(
        "{} account(s); messages: {standard} standard (readable), {sealed} sealed, {dispersed} dispersed, \
         {end_to_end} end-to-end (ciphertext only)",
        d.accounts
    );
    Ok(())
}
