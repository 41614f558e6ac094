//! The privacy index of a received message, after Caliopen's: three
//! components from 0 to 100 and an overall grade, computed from verified
//! facts only (a DKIM signature that does not verify counts for nothing).
//!
//! - `technic`: how the message travelled and what protects it.
//!   TLS 1.3 +25 (TLS 1.2 +15, none 0); DKIM pass +15; SPF pass +10;
//!   DMARC pass +10; OpenPGP-encrypted by the sender +30; OpenPGP-signed +10.
//! - `context`: whether the account knows the sender. The account has written
//!   to them +60; has received from them before +20, +20 more from the
//!   fifth message on.
//! - `comportment`: how the sender behaves. Their key is known (a hosted
//!   account, or they encrypted to us before) +40; the share of their
//!   messages to this account that arrived encrypted, times 60.
//! - `score` = (2 × technic + context + comportment) / 4, rounded down;
//!   grade A ≥ 80, B ≥ 60, C ≥ 40, D ≥ 20, else E.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the receiving server verified about one message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The TLS version of the session, e.g. 13 for TLS 1.3; 0 when in clear.
    pub tls_version: u8,
    pub dkim_pass: bool,
    pub spf_pass: bool,
    pub dmarc_pass: bool,
    pub encrypted: bool,
    pub signed: bool,
    /// The account has sent mail to this sender.
    pub written_to_sender: bool,
    /// Messages this account received from the sender before this one.
    pub received_before: i64,
    /// Of those, how many arrived OpenPGP-encrypted.
    pub received_encrypted_before: i64,
    /// The sender is a hosted account, whose key we hold.
    pub sender_key_known: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrivacyIndex {
    pub technic: u8,
    pub context: u8,
    pub comportment: u8,
    pub score: u8,
    /// A (best) to E.
    pub grade: char,
}

impl PrivacyIndex {
    pub fn compute(f: &Facts) -> PrivacyIndex {
        let tls = match f.tls_version {
            13.. => 25,
            12 => 15,
            _ => 0,
        };
        let technic = tls
            + 15 * u32::from(f.dkim_pass)
            + 10 * u32::from(f.spf_pass)
            + 10 * u32::from(f.dmarc_pass)
            + 30 * u32::from(f.encrypted)
            + 10 * u32::from(f.signed);
        let context = 60 * u32::from(f.written_to_sender)
            + 20 * u32::from(f.received_before >= 1)
            + 20 * u32::from(f.received_before >= 4);
        let habit = if f.received_before > 0 {
            (60 * f.received_encrypted_before.clamp(0, f.received_before) / f.received_before)
                as u32
        } else {
            0
        };
        let key_known = f.sender_key_known || f.received_encrypted_before > 0;
        let comportment = 40 * u32::from(key_known) + habit;
        let (technic, context, comportment) =
            (technic.min(100), context.min(100), comportment.min(100));
        let score = (2 * technic + context + comportment) / 4;
        let grade = match score {
            80.. => 'A',
            60.. => 'B',
            40.. => 'C',
            20.. => 'D',
            _ => 'E',
        };
        PrivacyIndex {
            technic: technic as u8,
            context: context as u8,
            comportment: comportment as u8,
            score: score as u8,
            grade,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(f: Facts) -> PrivacyIndex {
        PrivacyIndex::compute(&f)
    }

    #[test]
    fn each_technical_fact_counts() {
        let base = index(Facts::default());
        assert_eq!((base.technic, base.score, base.grade), (0, 0, 'E'));
        assert_eq!(
            index(Facts {
                tls_version: 13,
                ..Default::default()
            })
            .technic,
            25
        );
        assert_eq!(
            index(Facts {
                tls_version: 12,
                ..Default::default()
            })
            .technic,
            15
        );
        assert_eq!(
            index(Facts {
                dkim_pass: true,
                ..Default::default()
            })
            .technic,
            15
        );
        assert_eq!(
            index(Facts {
                spf_pass: true,
                ..Default::default()
            })
            .technic,
            10
        );
        assert_eq!(
            index(Facts {
                dmarc_pass: true,
                ..Default::default()
            })
            .technic,
            10
        );
        assert_eq!(
            index(Facts {
                encrypted: true,
                ..Default::default()
            })
            .technic,
            30
        );
        assert_eq!(
            index(Facts {
                signed: true,
                ..Default::default()
            })
            .technic,
            10
        );
        let all = Facts {
            tls_version: 13,
            dkim_pass: true,
            spf_pass: true,
            dmarc_pass: true,
            encrypted: true,
            signed: true,
            ..Default::default()
        };
        assert_eq!(index(all).technic, 100);
    }

    #[test]
    fn context_follows_the_relationship() {
        assert_eq!(
            index(Facts {
                written_to_sender: true,
                ..Default::default()
            })
            .context,
            60
        );
        assert_eq!(
            index(Facts {
                received_before: 1,
                ..Default::default()
            })
            .context,
            20
        );
        assert_eq!(
            index(Facts {
                received_before: 4,
                ..Default::default()
            })
            .context,
            40
        );
        assert_eq!(
            index(Facts {
                written_to_sender: true,
                received_before: 9,
                ..Default::default()
            })
            .context,
            100
        );
    }

    #[test]
    fn comportment_follows_keys_and_habits() {
        assert_eq!(
            index(Facts {
                sender_key_known: true,
                ..Default::default()
            })
            .comportment,
            40
        );
        let habitual = Facts {
            received_before: 4,
            received_encrypted_before: 4,
            ..Default::default()
        };
        assert_eq!(index(habitual).comportment, 100);
        let half = Facts {
            received_before: 4,
            received_encrypted_before: 2,
            ..Default::default()
        };
        assert_eq!(index(half).comportment, 40 + 30);
    }

    #[test]
    fn grades_follow_the_score() {
        let best = Facts {
            tls_version: 13,
            dkim_pass: true,
            spf_pass: true,
            dmarc_pass: true,
            encrypted: true,
            signed: true,
            written_to_sender: true,
            received_before: 10,
            received_encrypted_before: 10,
            sender_key_known: true,
        };
        assert_eq!(
            index(best),
            PrivacyIndex {
                technic: 100,
                context: 100,
                comportment: 100,
                score: 100,
                grade: 'A'
            }
        );
        let clear_stranger = Facts {
            dkim_pass: true,
            spf_pass: true,
            dmarc_pass: true,
            ..Default::default()
        };
        assert_eq!(index(clear_stranger).grade, 'E');
        let tls_stranger = Facts {
            tls_version: 13,
            dkim_pass: true,
            spf_pass: true,
            dmarc_pass: true,
            ..Default::default()
        };
        assert_eq!(index(tls_stranger).score, 30);
        assert_eq!(index(tls_stranger).grade, 'D');
    }
}
