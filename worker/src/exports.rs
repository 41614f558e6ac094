//! The tenant export asked for through the API: written into the data
//! directory's `exports/` by [`ExportTenant`] (resumed where it stopped if
//! the worker died), deleted by [`ExpireTenantExport`] if nobody downloads it.

use chrono::Utc;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tenants::store::ExportRecipient;
use uuid::Uuid;
use vault::archive::Recipient;

use crate::{Context, Job};

pub const EXPORT_JOB: &str = "tenant.export";
pub const EXPIRE_EXPORT_JOB: &str = "tenant.export.expire";

/// The archive of export `id` in `dir`.
pub fn export_path(dir: &std::path::Path, id: Uuid) -> std::path::PathBuf {
    dir.join(format!("{id}.caliop"))
}

fn remove_partial(path: &std::path::Path) {
    for file in [path.to_owned(), transfer::tenant::resume_path(path)] {
        if let Err(e) = std::fs::remove_file(&file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %file.display(), error = %e, "a partial export could not be deleted");
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportTenant {
    pub export: Uuid,
}

impl Job<Context> for ExportTenant {
    const NAME: &'static str = EXPORT_JOB;

    /// A large export outlives a job's lease: each attempt resumes from the
    /// last checkpoint, so it may take many.
    fn retry_policy() -> crate::RetryPolicy {
        crate::RetryPolicy {
            max_attempts: 100,
            base: std::time::Duration::from_secs(1),
            max: std::time::Duration::from_secs(60),
            jitter: 0.1,
        }
    }

    fn dedup_key(&self) -> Option<String> {
        Some(self.export.to_string())
    }

    async fn run(&self, context: &Context) -> Result<(), String> {
        let inbound = context
            .inbound
            .as_deref()
            .ok_or("this process has no mail store to export from")?;
        let dir = context
            .exports_dir
            .as_deref()
            .ok_or("this process has no exports directory")?;
        let Some((export, secret)) = context
            .store
            .start_tenant_export(self.export)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(()); // done, failed or gone already
        };
        let recipient = match export.recipient {
            ExportRecipient::Passphrase => {
                let context = passphrase_context(export.id);
                let passphrase = inbound
                    .master()
                    .open_secret(&context, &secret)
                    .map_err(|e| e.to_string())?;
                let passphrase = String::from_utf8(passphrase)
                    .map_err(|_| "the sealed passphrase is not text".to_owned())?;
                Recipient::passphrase(SecretString::from(passphrase))
            }
            ExportRecipient::Openpgp => Recipient::OpenPgp {
                public_key_armored: secret,
            },
        };
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = export_path(dir, export.id);
        // A worker that died mid-way left its checkpoint: continue from it.
        let resume = transfer::tenant::resume_path(&path).exists();
        if !resume {
            remove_partial(&path);
        }
        match transfer::tenant::export(
            inbound,
            export.tenant_id,
            &path,
            &recipient,
            resume,
            &transfer::Quiet,
        )
        .await
        {
            Ok(summary) => {
                context
                    .store
                    .finish_tenant_export(
                        export.id,
                        summary.archive_bytes as i64,
                        summary.messages as i64,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(export = %export.id, tenant = %export.tenant_id, bytes = summary.archive_bytes, "tenant export ready");
                Ok(())
            }
            Err(e) => {
                // Said to whoever asked, without the server's paths; they can ask again.
                remove_partial(&path);
                tracing::warn!(export = %export.id, error = %e, "tenant export failed");
                let said = match &e {
                    transfer::Error::Io { .. } => {
                        "the archive could not be written on the server (its log says why)"
                            .to_owned()
                    }
                    other => other.to_string(),
                };
                context
                    .store
                    .fail_tenant_export(export.id, &said)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// The context the API seals the passphrase of export `id` under.
pub fn passphrase_context(id: Uuid) -> String {
    format!("tenant-export-passphrase:{id}")
}

/// Deletes an archive nobody downloaded in time.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExpireTenantExport {
    pub export: Uuid,
}

impl Job<Context> for ExpireTenantExport {
    const NAME: &'static str = EXPIRE_EXPORT_JOB;

    async fn run(&self, context: &Context) -> Result<(), String> {
        let Some(export) = context
            .store
            .tenant_export(self.export)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        if export.expires_at > Utc::now() {
            return Err("not expired yet".into());
        }
        if context
            .store
            .expire_tenant_export(export.id)
            .await
            .map_err(|e| e.to_string())?
            && let Some(dir) = context.exports_dir.as_deref()
        {
            remove_partial(&export_path(dir, export.id));
            tracing::info!(export = %export.id, "an export nobody downloaded in time was deleted");
        }
        Ok(())
    }
}
