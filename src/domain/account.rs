//! Accounts as both halves see them: `AccountName` (parsed once, never a bare string after),
//! `AccountId` (what jobs belong to), `Role`, and `Scope` (whose jobs a caller sees).
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// Longest account name, in characters (all ASCII).
const MAX_LEN: usize = 64;

/// The account `INGEST_TOKEN` belongs to. It lives in the settings, not the store, so no
/// account of that name can be created.
pub const BUILT_IN_ADMIN: &str = "admin";

/// An account's name: 1–64 ASCII letters, digits, `-` and `_`. The store compares names without
/// case (`Alice` and `alice` are one account), so two accounts never differ only in case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountName(String);

/// Why a text is not an account name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an account name is 1 to 64 letters, digits, '-' or '_'")]
pub struct InvalidAccountName;

impl AccountName {
    pub fn parse(text: &str) -> Result<Self, InvalidAccountName> {
        let valid = (1..=MAX_LEN).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidAccountName)
        }
    }

    /// The built-in account of `INGEST_TOKEN`.
    pub fn built_in_admin() -> Self {
        Self(BUILT_IN_ADMIN.to_owned())
    }

    /// Whether this is the built-in account's name, in any case, which the store never holds.
    pub fn is_reserved(&self) -> bool {
        self.0.eq_ignore_ascii_case(BUILT_IN_ADMIN)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AccountName {
    type Error = InvalidAccountName;

    fn try_from(text: String) -> Result<Self, InvalidAccountName> {
        Self::parse(&text)
    }
}

impl From<AccountName> for String {
    fn from(name: AccountName) -> String {
        name.0
    }
}

/// An account's permanent number. A name can be removed and taken again; a number never is, so
/// jobs belong to numbers and a re-created name starts with none of the old account's jobs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct AccountId(i64);

impl AccountId {
    /// The built-in `admin` account of `INGEST_TOKEN` (stored accounts count from 1).
    pub const BUILT_IN_ADMIN: AccountId = AccountId(0);

    pub fn new(number: i64) -> Self {
        Self(number)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// An account as its jobs record it: the number they belong to, and the name shown beside them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub id: AccountId,
    pub name: AccountName,
}

impl Owner {
    /// The built-in `admin` account of `INGEST_TOKEN`.
    pub fn built_in_admin() -> Self {
        Self {
            id: AccountId::BUILT_IN_ADMIN,
            name: AccountName::built_in_admin(),
        }
    }
}

/// Whose jobs a caller may see and touch: an admin every job, a member its account's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Everything,
    Account(AccountId),
}

impl Scope {
    pub fn sees(self, owner: AccountId) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Account(account) => account == owner,
        }
    }
}

/// What an account may do: an admin manages accounts and keys; a member uses the service.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    #[default]
    Member,
}

/// Why a text is not a role.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a role is admin or member, not {0:?}")]
pub struct UnknownRole(pub String);

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Self, UnknownRole> {
        match text {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// Characters in a key id.
pub const KEY_ID_LEN: usize = 12;

/// The public half of an API key: 12 lower-case hex digits, shown in lists and logs and used to
/// revoke it. Knowing it grants nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

/// Why a text is not a key id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a key id is 12 lower-case hex digits")]
pub struct InvalidKeyId;

impl KeyId {
    pub fn parse(text: &str) -> Result<Self, InvalidKeyId> {
        let valid = text.len() == KEY_ID_LEN
            && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidKeyId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for KeyId {
    type Error = InvalidKeyId;

    fn try_from(text: String) -> Result<Self, InvalidKeyId> {
        Self::parse(&text)
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_are_letters_digits_dashes_and_underscores() {
        for good in ["a", "alice", "ci-bot_2", "A", &"x".repeat(64)] {
            assert_eq!(AccountName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "has space",
            "dot.ted",
            "slash/",
            "ümlaut",
            &"x".repeat(65),
            "a\n",
        ] {
            assert_eq!(AccountName::parse(bad), Err(InvalidAccountName), "{bad:?}");
        }
    }

    #[test]
    fn key_ids_are_twelve_lower_case_hex_digits() {
        assert!(KeyId::parse("0123456789ab").is_ok());
        for bad in [
            "",
            "0123456789a",
            "0123456789abc",
            "0123456789AB",
            "0123456789ag",
        ] {
            assert_eq!(KeyId::parse(bad), Err(InvalidKeyId), "{bad:?}");
        }
    }

    #[test]
    fn the_built_in_name_is_reserved_in_any_case() {
        assert!(AccountName::built_in_admin().is_reserved());
        for name in ["admin", "Admin", "ADMIN", "aDmIn"] {
            assert!(AccountName::parse(name).unwrap().is_reserved(), "{name}");
        }
        assert!(!AccountName::parse("admins").unwrap().is_reserved());
    }

    #[test]
    fn names_and_roles_read_back_from_json() {
        let name: AccountName = serde_json::from_str("\"bob\"").unwrap();
        assert_eq!(name.as_str(), "bob");
        assert!(serde_json::from_str::<AccountName>("\"b b\"").is_err());
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
        assert_eq!(serde_json::to_string(&Role::Member).unwrap(), "\"member\"");
    }
}
