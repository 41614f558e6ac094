//! The vocabulary of the domain core: identifiers, names and addresses parsed
//! at the edge, and the enums of tenants, accounts and confidentiality.
//! Nothing here touches I/O; every constructor from a string validates.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::Error;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered identifier (UUIDv7), so that ids sort by creation.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Identifies a tenant (operator, reseller, enterprise or the public instance).
    TenantId
);
id_type!(
    /// Identifies a hosted mail domain.
    DomainId
);
id_type!(
    /// Identifies a mail account.
    AccountId
);
id_type!(
    /// Identifies an API key.
    ApiKeyId
);
id_type!(
    /// Identifies a stored message (one per recipient account).
    MessageId
);
id_type!(
    /// Identifies a mailbox (an IMAP folder) of an account.
    MailboxId
);

/// A fully qualified DNS domain name in its ASCII (A-label) form, lower-cased,
/// without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "example.com")]
pub struct DomainName(String);

impl DomainName {
    pub fn parse(input: &str) -> Result<Self, Error> {
        let name = input.trim_end_matches('.').to_ascii_lowercase();
        let invalid =
            |why: &str| Error::Invalid(format!("`{input}` is not a valid domain name: {why}"));
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > 253 {
            return Err(invalid("it is longer than 253 characters"));
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() < 2 {
            return Err(invalid("it needs at least two labels, like example.com"));
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return Err(invalid("each label must be 1 to 63 characters long"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(invalid(
                    "labels may contain only letters, digits and hyphens (use the xn-- form for international names)",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("a label cannot start or end with a hyphen"));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("the top-level label cannot be numeric"));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DomainName {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::parse(&value)
    }
}

impl From<DomainName> for String {
    fn from(value: DomainName) -> Self {
        value.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The part of an address before the `@`: a lower-cased RFC 5321 dot-atom.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LocalPart(String);

impl LocalPart {
    pub fn parse(input: &str) -> Result<Self, Error> {
        let local = input.to_ascii_lowercase();
        let invalid =
            |why: &str| Error::Invalid(format!("`{input}` is not a valid mailbox name: {why}"));
        if local.is_empty() || local.len() > 64 {
            return Err(invalid("it must be 1 to 64 characters long"));
        }
        const SPECIALS: &[u8] = b"!#$%&'*+/=?^_`{|}~-.";
        if !local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || SPECIALS.contains(&b))
        {
            return Err(invalid(
                "only letters, digits and !#$%&'*+/=?^_`{|}~-. are allowed",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(invalid("dots cannot start, end or repeat"));
        }
        Ok(Self(local))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A mailbox address `local@domain`, lower-cased so that uniqueness is
/// case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = Email, example = "alice@example.com")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, Error> {
        let (local, domain) = input.rsplit_once('@').ok_or_else(|| {
            Error::Invalid(format!("`{input}` is not an email address: it has no `@`"))
        })?;
        let address = Self::new(&LocalPart::parse(local)?, &DomainName::parse(domain)?);
        if address.0.len() > 254 {
            return Err(Error::Invalid(format!(
                "`{input}` is longer than 254 characters"
            )));
        }
        Ok(address)
    }

    pub fn new(local: &LocalPart, domain: &DomainName) -> Self {
        Self(format!("{}@{}", local.0, domain.0))
    }

    fn at(&self) -> usize {
        self.0.rfind('@').unwrap_or(0)
    }

    pub fn local(&self) -> &str {
        &self.0[..self.at()]
    }

    pub fn domain(&self) -> DomainName {
        DomainName(self.0[self.at() + 1..].to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::parse(&value)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}

/// An ISO 3166-1 alpha-2 country code naming where data may be stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "FR")]
pub struct Jurisdiction(String);

/// Every officially assigned ISO 3166-1 alpha-2 code.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT \
MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW \
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG \
UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

impl Jurisdiction {
    pub fn parse(input: &str) -> Result<Self, Error> {
        let code = input.to_ascii_uppercase();
        if code.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|known| known == code) {
            Ok(Self(code))
        } else {
            Err(Error::Invalid(format!(
                "`{input}` is not an ISO 3166-1 alpha-2 country code"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Jurisdiction {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::parse(&value)
    }
}

impl From<Jurisdiction> for String {
    fn from(value: Jurisdiction) -> Self {
        value.0
    }
}

/// Defines a string enum with its wire names, `FromStr` with a precise error
/// and `as_str`, so the database and JSON share one spelling.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        // Every wire name is the kebab-case of its variant; `as_str` spells it out
        // for SQL, and a unit test checks the two agree.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(Error::Invalid(format!(
                        concat!("`{}` is not a valid ", $what, "; expected one of: {}"),
                        other,
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// What a tenant is: the instance operator, a reseller of child tenants,
    /// a paying enterprise, or the public instance of free accounts.
    TenantKind, "tenant kind" {
        Operator => "operator",
        Reseller => "reseller",
        Enterprise => "enterprise",
        Public => "public",
    }
);

string_enum!(
    /// Whether a tenant may use the service.
    TenantStatus, "tenant status" {
        Active => "active",
        Suspended => "suspended",
        Closed => "closed",
    }
);

string_enum!(
    /// Whether an account may sign in and receive mail. Deleted accounts keep
    /// their address reserved so that it never reaches a new person.
    AccountStatus, "account status" {
        Active => "active",
        Suspended => "suspended",
        Deleted => "deleted",
    }
);

string_enum!(
    /// An account's role within its tenant.
    AccountRole, "account role" {
        Admin => "admin",
        User => "user",
    }
);

string_enum!(
    /// The confidentiality ladder, lowest first: a tenant sets the floor,
    /// an account may go higher. Who can read mail at each level:
    /// `standard` is encrypted at rest under the organisation's data key,
    /// which the server holds, so the server, the organisation's
    /// administrators (through an export of the tenant) and the operator can
    /// read it; `sealed`, `dispersed` and `end-to-end` mail is sealed to the
    /// user's OpenPGP key, which none of them can open.
    Level, "confidentiality level" {
        Standard => "standard",
        Sealed => "sealed",
        Dispersed => "dispersed",
        EndToEnd => "end-to-end",
    }
);

string_enum!(
    /// What an API key or token may do: read, or read and change.
    Scope, "scope" {
        Read => "read",
        Write => "write",
    }
);

string_enum!(
    /// The signature algorithm of a DKIM key: RSA-2048 (what every verifier
    /// knows) and Ed25519 (RFC 8463); outgoing mail is signed with both.
    DkimAlgorithm, "DKIM algorithm" {
        Rsa => "rsa",
        Ed25519 => "ed25519",
    }
);

string_enum!(
    /// A DKIM key's life: `pending` keys are published but not yet used,
    /// `active` keys sign, `retired` keys stay published a while for mail
    /// still in flight.
    DkimKeyState, "DKIM key state" {
        Pending => "pending",
        Active => "active",
        Retired => "retired",
    }
);

string_enum!(
    /// Where a message stands with one recipient.
    DeliveryStatus, "delivery status" {
        Queued => "queued",
        Deferred => "deferred",
        Delivered => "delivered",
        Bounced => "bounced",
    }
);

string_enum!(
    /// The special use of a mailbox (RFC 6154): every account has one
    /// mailbox of each, and mail arrives in (or is sent from) them.
    Folder, "folder" {
        Inbox => "inbox",
        Sent => "sent",
        Drafts => "drafts",
        Archive => "archive",
        Junk => "junk",
        Trash => "trash",
    }
);

string_enum!(
    /// A message flag (IMAP system flags, without the backslash).
    Flag, "flag" {
        Seen => "seen",
        Answered => "answered",
        Flagged => "flagged",
        Draft => "draft",
        Deleted => "deleted",
    }
);

string_enum!(
    /// What the operator did with a legal request. A request without a
    /// legal basis (a court order reference) is always `refused`.
    Decision, "decision" {
        Complied => "complied",
        Partially => "partially",
        Contested => "contested",
        Refused => "refused",
    }
);

/// A kind of data a legal request asks for.
// Spelt in snake case on the wire, unlike the kebab-case enums above.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    /// Addresses, names, creation dates, keys' fingerprints, storage used.
    AccountMetadata,
    /// Who sent what to whom and when (envelopes, delivery attempts), not contents.
    DeliveryLogs,
    /// Messages as stored: ciphertext for `sealed` and above.
    Messages,
}

impl DataKind {
    pub const ALL: &'static [DataKind] = &[
        DataKind::AccountMetadata,
        DataKind::DeliveryLogs,
        DataKind::Messages,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::AccountMetadata => "account_metadata",
            DataKind::DeliveryLogs => "delivery_logs",
            DataKind::Messages => "messages",
        }
    }
}

impl FromStr for DataKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        DataKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "`{s}` is not a valid kind of data; expected one of: {}",
                    DataKind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Folder {
    /// The name of the account's mailbox of this use, as it is first made.
    pub fn default_name(self) -> &'static str {
        match self {
            Folder::Inbox => "INBOX",
            Folder::Sent => "Sent",
            Folder::Drafts => "Drafts",
            Folder::Archive => "Archive",
            Folder::Junk => "Junk",
            Folder::Trash => "Trash",
        }
    }

    /// The RFC 6154 attribute (none for INBOX, which needs none).
    pub fn special_use(self) -> Option<&'static str> {
        match self {
            Folder::Inbox => None,
            Folder::Sent => Some("\\Sent"),
            Folder::Drafts => Some("\\Drafts"),
            Folder::Archive => Some("\\Archive"),
            Folder::Junk => Some("\\Junk"),
            Folder::Trash => Some("\\Trash"),
        }
    }
}

/// The hosting package of a tenant. For a reseller, limits cover its own
/// objects and every descendant's together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Accounts that may exist (active or suspended) in this tenant and its descendants.
    pub max_accounts: i64,
    /// Domains that may exist in this tenant and its descendants.
    pub max_domains: i64,
    /// Storage shared by all the tenant's accounts, in bytes.
    pub storage_quota_bytes: i64,
}

impl Limits {
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_accounts < 0 || self.max_domains < 0 || self.storage_quota_bytes < 0 {
            return Err(Error::Invalid("limits cannot be negative".into()));
        }
        Ok(())
    }

    /// Whether every limit of `self` fits within `outer`.
    pub fn fits_within(&self, outer: &Limits) -> Result<(), Error> {
        self.fits_packages([("the parent", outer)])
    }

    /// Whether every limit of `self` fits the package of each ancestor
    /// (`(who, package)`, nearest first): a tenant's limits, however they
    /// are set (by hand, by a plan, by its seats), never exceed a package
    /// above it. The refusal names the ancestor and by how much.
    pub fn fits_packages<'a>(
        &self,
        ancestors: impl IntoIterator<Item = (&'a str, &'a Limits)>,
    ) -> Result<(), Error> {
        for (who, outer) in ancestors {
            for (what, inner, outer) in [
                ("max_accounts", self.max_accounts, outer.max_accounts),
                ("max_domains", self.max_domains, outer.max_domains),
                (
                    "storage_quota_bytes",
                    self.storage_quota_bytes,
                    outer.storage_quota_bytes,
                ),
            ] {
                if inner > outer {
                    return Err(Error::LimitExceeded(format!(
                        "{what} of {inner} exceeds {who}'s package of {outer} by {}",
                        inner.saturating_sub(outer)
                    )));
                }
            }
        }
        Ok(())
    }

    /// `self` lowered, limit by limit, to the tightest package above it
    /// (for limits that follow from something else, such as seats counted
    /// from accounts, where refusing would leave them stale).
    pub fn capped_by<'a>(self, ancestors: impl IntoIterator<Item = &'a Limits>) -> Limits {
        ancestors.into_iter().fold(self, |inner, outer| Limits {
            max_accounts: inner.max_accounts.min(outer.max_accounts),
            max_domains: inner.max_domains.min(outer.max_domains),
            storage_quota_bytes: inner.storage_quota_bytes.min(outer.storage_quota_bytes),
        })
    }
}

string_enum!(
    /// What the last look at a stored shard found.
    ShardState, "shard state" {
        Ok => "ok",
        Missing => "missing",
        Corrupt => "corrupt",
    }
);

string_enum!(
    /// What the content filter says to do with a message: Rspamd's actions,
    /// which the built-in filter uses too.
    SpamAction, "spam action" {
        NoAction => "no-action",
        Greylist => "greylist",
        AddHeader => "add-header",
        RewriteSubject => "rewrite-subject",
        SoftReject => "soft-reject",
        Reject => "reject",
    }
);

string_enum!(
    /// An account's own judgement of a sender: to Junk, or to the Inbox.
    SenderRule, "sender rule" {
        Block => "block",
        Allow => "allow",
    }
);

/// The spam and virus verdict on one message, taken on arrival before it is
/// sealed, and kept as metadata beside its privacy index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Verdict {
    /// `rspamd` or `builtin`; `unscanned` when the filter failed and
    /// `filter.on_error` accepted the message anyway.
    #[schema(example = "rspamd")]
    pub filter: String,
    pub action: SpamAction,
    #[schema(example = 7.2)]
    pub score: f64,
    /// The rules that matched, those that weighed most first.
    #[schema(example = json!(["CALIOP_DNSBL", "R_SPF_FAIL"]))]
    pub symbols: Vec<String>,
    /// The virus a scanner named (such a message is refused, never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virus: Option<String>,
    /// The account's own rule about the sender, when one applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_rule: Option<SenderRule>,
}

/// What moving a message from a mailbox of special use `from` to one of
/// `to` says of it: into Junk is a judgement of spam (`Some(true)`), out of
/// Junk into anything but Trash one of not spam (`Some(false)`); any other
/// move says nothing. IMAP MOVE and COPY and the API all ask this.
pub fn judgement(from: Option<Folder>, to: Option<Folder>) -> Option<bool> {
    match (from == Some(Folder::Junk), to) {
        (false, Some(Folder::Junk)) => Some(true),
        (true, Some(Folder::Junk | Folder::Trash)) => None,
        (true, _) => Some(false),
        (false, _) => None,
    }
}

/// What a verdict makes of a message: the one rule the MX, local delivery
/// and submission apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    Inbox,
    Junk,
    /// Refused for good: a virus.
    RefuseVirus,
    /// Refused for good: spam beyond doubt.
    RefuseSpam,
    /// Refused for now (the sender may retry).
    Defer,
}

impl Verdict {
    /// A verdict for mail accepted without being scanned.
    pub fn unscanned() -> Verdict {
        Verdict {
            filter: "unscanned".into(),
            action: SpamAction::NoAction,
            score: 0.0,
            symbols: Vec::new(),
            virus: None,
            sender_rule: None,
        }
    }

    /// A virus or a `reject` is refused whatever the account's rules say;
    /// then the account's block or allow rule for the sender decides; then
    /// the filter's action (`add-header` and `rewrite-subject` mean Junk,
    /// `greylist` the Inbox: the MX takes its verdict at once).
    pub fn disposition(&self) -> Disposition {
        if self.virus.is_some() {
            return Disposition::RefuseVirus;
        }
        match (self.action, self.sender_rule) {
            (SpamAction::Reject, _) => Disposition::RefuseSpam,
            (SpamAction::SoftReject, _) => Disposition::Defer,
            (_, Some(SenderRule::Block)) => Disposition::Junk,
            (_, Some(SenderRule::Allow)) => Disposition::Inbox,
            (SpamAction::AddHeader | SpamAction::RewriteSubject, None) => Disposition::Junk,
            (SpamAction::NoAction | SpamAction::Greylist, None) => Disposition::Inbox,
        }
    }

    /// Whether it is filed in Junk.
    pub fn is_spam(&self) -> bool {
        self.disposition() == Disposition::Junk
    }
}

/// A tenant's confidentiality policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The lowest level any mail of this tenant may be stored at.
    pub min_level: Level,
    /// Where the tenant's data may be stored (ISO 3166-1 alpha-2); empty means anywhere.
    pub allowed_jurisdictions: Vec<Jurisdiction>,
    /// How `dispersed` mail is cut: any `k` of `n` shards rebuild a message.
    /// Absent: the operator's default. Must stay within the operator's bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<Redundancy>,
    /// Whether mail sealed at `sealed` and above keeps its own `Message-ID`,
    /// `In-Reply-To` and `References` outside the seal, so that mail clients
    /// thread it before opening it. What that reveals to anyone who reads
    /// the stored form without the key: which messages belong to one
    /// conversation, and the Message-IDs themselves, which often name the
    /// sender's host and software. The Subject never leaves the seal. When
    /// off, a sealed message shows only an id of the server's own and no
    /// In-Reply-To or References. On when absent (also when a policy is
    /// replaced without it).
    #[serde(default = "shown")]
    pub outer_thread_headers: bool,
}

fn shown() -> bool {
    true
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_level: Level::Standard,
            allowed_jurisdictions: Vec::new(),
            redundancy: None,
            outer_thread_headers: true,
        }
    }
}

/// k-of-n: any `k` shards of `n` rebuild an object; fewer reveal nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Redundancy {
    #[schema(minimum = 2, maximum = 31, example = 3)]
    pub k: u8,
    #[schema(minimum = 3, maximum = 32, example = 5)]
    pub n: u8,
}

impl Redundancy {
    /// `2 ≤ k < n ≤ 32`.
    pub fn validate(self) -> Result<Redundancy, Error> {
        if self.k < 2 {
            return Err(Error::Invalid(format!(
                "redundancy.k = {}: at least 2 shards must be needed to read a message",
                self.k
            )));
        }
        if self.n <= self.k {
            return Err(Error::Invalid(format!(
                "redundancy {}-of-{}: n must exceed k, or losing one site loses the message",
                self.k, self.n
            )));
        }
        if self.n > 32 {
            return Err(Error::Invalid(format!(
                "redundancy.n = {}: at most 32 shards",
                self.n
            )));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses_are_case_insensitive() {
        let a = EmailAddress::parse("Alice.Smith@Example.COM").unwrap();
        assert_eq!(a.to_string(), "alice.smith@example.com");
        assert_eq!(a.domain().as_str(), "example.com");
    }

    #[test]
    fn bad_addresses_say_why() {
        for (input, why) in [
            ("alice", "no `@`"),
            ("@example.com", "1 to 64"),
            ("a..b@example.com", "dots"),
            ("alice@localhost", "two labels"),
            ("alice@-bad.com", "hyphen"),
            ("al ice@example.com", "only letters"),
            ("alice@exa_mple.com", "only letters, digits and hyphens"),
            ("alice@example.123", "numeric"),
        ] {
            let err = EmailAddress::parse(input).unwrap_err().to_string();
            assert!(err.contains(why), "{input}: {err}");
        }
    }

    #[test]
    fn jurisdictions_are_real_country_codes() {
        assert_eq!(Jurisdiction::parse("fr").unwrap().as_str(), "FR");
        assert!(Jurisdiction::parse("XX").is_err());
        assert!(Jurisdiction::parse("FRA").is_err());
    }

    #[test]
    fn levels_are_ordered() {
        assert!(Level::Standard < Level::Sealed);
        assert!(Level::Dispersed < Level::EndToEnd);
        assert_eq!("end-to-end".parse::<Level>().unwrap(), Level::EndToEnd);
        assert!(
            "secret"
                .parse::<Level>()
                .unwrap_err()
                .to_string()
                .contains("expected one of")
        );
    }

    #[test]
    fn moves_into_and_out_of_junk_are_judgements() {
        use Folder::*;
        assert_eq!(judgement(Some(Inbox), Some(Junk)), Some(true));
        assert_eq!(judgement(None, Some(Junk)), Some(true));
        assert_eq!(judgement(Some(Junk), Some(Inbox)), Some(false));
        assert_eq!(judgement(Some(Junk), None), Some(false));
        assert_eq!(judgement(Some(Junk), Some(Trash)), None);
        assert_eq!(judgement(Some(Junk), Some(Junk)), None);
        assert_eq!(judgement(Some(Inbox), Some(Archive)), None);
        assert_eq!(judgement(Some(Inbox), Some(Trash)), None);
    }

    #[test]
    fn a_verdict_files_refuses_or_defers() {
        let verdict = |action, virus: Option<&str>, rule| Verdict {
            filter: "rspamd".into(),
            action,
            score: 0.0,
            symbols: Vec::new(),
            virus: virus.map(str::to_owned),
            sender_rule: rule,
        };
        use Disposition::*;
        use SenderRule::*;
        use SpamAction::*;
        let cases = [
            (NoAction, None, None, Inbox),
            (Greylist, None, None, Inbox),
            (AddHeader, None, None, Junk),
            (RewriteSubject, None, None, Junk),
            (SoftReject, None, None, Defer),
            (Reject, None, None, RefuseSpam),
            // The account's rules move between Inbox and Junk only.
            (NoAction, None, Some(Block), Junk),
            (AddHeader, None, Some(Allow), Inbox),
            (Reject, None, Some(Allow), RefuseSpam),
            (SoftReject, None, Some(Block), Defer),
            // A virus is refused whatever the action and the rules.
            (NoAction, Some("Eicar"), Some(Allow), RefuseVirus),
        ];
        for (action, virus, rule, expected) in cases {
            let v = verdict(action, virus, rule);
            assert_eq!(v.disposition(), expected, "{action} {virus:?} {rule:?}");
            assert_eq!(v.is_spam(), expected == Junk);
        }
        assert_eq!(Verdict::unscanned().disposition(), Inbox);
    }

    #[test]
    fn wire_names_agree_with_serde() {
        fn check<T: Serialize + Copy>(all: &[T], as_str: fn(T) -> &'static str) {
            for v in all {
                assert_eq!(serde_json::to_value(v).unwrap(), as_str(*v));
            }
        }
        check(TenantKind::ALL, TenantKind::as_str);
        check(TenantStatus::ALL, TenantStatus::as_str);
        check(AccountStatus::ALL, AccountStatus::as_str);
        check(AccountRole::ALL, AccountRole::as_str);
        check(Level::ALL, Level::as_str);
        check(Scope::ALL, Scope::as_str);
        check(Folder::ALL, Folder::as_str);
        check(Flag::ALL, Flag::as_str);
        check(DkimAlgorithm::ALL, DkimAlgorithm::as_str);
        check(DkimKeyState::ALL, DkimKeyState::as_str);
        check(ShardState::ALL, ShardState::as_str);
        check(DeliveryStatus::ALL, DeliveryStatus::as_str);
        check(Decision::ALL, Decision::as_str);
        check(DataKind::ALL, DataKind::as_str);
        check(SpamAction::ALL, SpamAction::as_str);
        check(SenderRule::ALL, SenderRule::as_str);
        for kind in DataKind::ALL {
            assert_eq!(kind.as_str().parse::<DataKind>().unwrap(), *kind);
        }
        assert!(
            "account-metadata"
                .parse::<DataKind>()
                .unwrap_err()
                .to_string()
                .contains("account_metadata")
        );
    }

    #[test]
    fn child_limits_must_fit_the_parent() {
        let parent = Limits {
            max_accounts: 10,
            max_domains: 2,
            storage_quota_bytes: 100,
        };
        let child = Limits {
            max_accounts: 11,
            ..parent
        };
        assert!(child.fits_within(&parent).is_err());
        assert!(parent.fits_within(&parent).is_ok());
    }

    #[test]
    fn limits_must_fit_every_ancestor_and_the_refusal_says_whose_and_by_how_much() {
        let mb = Limits {
            max_accounts: 10,
            max_domains: 2,
            storage_quota_bytes: 1 << 20,
        };
        let wide = Limits {
            max_accounts: 1000,
            max_domains: 100,
            storage_quota_bytes: 1 << 60,
        };
        let plan = Limits {
            max_accounts: 5,
            max_domains: 1,
            storage_quota_bytes: 10_000_000_000_000_000,
        };
        let e = plan
            .fits_packages([("reseller `R`", &wide), ("reseller `Top`", &mb)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("reseller `Top`'s package"), "{e}");
        assert!(
            e.contains("storage_quota_bytes of 10000000000000000"),
            "{e}"
        );
        assert!(
            e.contains(&format!("by {}", 10_000_000_000_000_000i64 - (1 << 20))),
            "{e}"
        );
        assert!(mb.fits_packages([("a", &mb), ("b", &wide)]).is_ok());
        assert!(plan.fits_packages([]).is_ok());
        let capped = plan.capped_by([&wide, &mb]);
        assert_eq!(capped.storage_quota_bytes, 1 << 20);
        assert_eq!(capped.max_accounts, 5);
        assert!(capped.fits_packages([("a", &wide), ("b", &mb)]).is_ok());
    }

    proptest! {
        #[test]
        fn parsed_domains_round_trip(labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 1..4), tld in "[a-z]{2,6}") {
            let name = format!("{}.{}", labels.join("."), tld);
            let parsed = DomainName::parse(&name.to_uppercase()).unwrap();
            prop_assert_eq!(parsed.as_str(), name.as_str());
            prop_assert_eq!(DomainName::parse(parsed.as_str()).unwrap(), parsed);
        }

        #[test]
        fn domain_parse_never_panics_and_accepts_only_ldh(input in "\\PC{0,80}") {
            if let Ok(d) = DomainName::parse(&input) {
                prop_assert!(d.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
                prop_assert!(d.as_str().len() <= 253);
            }
        }

        #[test]
        fn address_parse_never_panics_and_is_lowercase(input in "\\PC{0,80}") {
            if let Ok(a) = EmailAddress::parse(&input) {
                let s = a.to_string();
                prop_assert_eq!(s.to_ascii_lowercase(), s.clone());
                prop_assert_eq!(EmailAddress::parse(&s).unwrap(), a);
            }
        }
    }
}
