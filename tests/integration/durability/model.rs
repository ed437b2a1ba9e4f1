//! The durability test's model: what the acknowledged changes say may be true of each token
//! and account, matched against what the database and the proxy say after a restart.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// xorshift64*: small, seeded, good enough to choose operations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 once, so that small seeds give well-mixed, non-zero states.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `p` times in a hundred.
    pub fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

/// The wall clock in seconds, as the gateway reads it (it keeps whole seconds).
pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A stretch of wall-clock time (seconds) within which something happened: a request was
/// answered, a listing was read, a change was committed.
#[derive(Clone, Copy, Debug)]
pub struct Window(pub f64, pub f64);

impl Window {
    /// Whether a scheduled revocation at any of `lo..=hi` had taken effect at the moment
    /// within this window: `None` when the window straddles it. The gateway and the store
    /// count whole seconds, and a token revoked at `at` is refused from second `at` on.
    pub fn passed(self, lo: i64, hi: i64) -> Option<bool> {
        if self.1 < lo as f64 {
            Some(false)
        } else if self.0 >= hi as f64 {
            Some(true)
        } else {
            None
        }
    }
}

/// What may be true of a token, given the acknowledged changes.
#[derive(Clone, Debug, PartialEq)]
pub enum Fate {
    /// Neither revoked nor rotated: served while its account is open.
    Active,
    /// Revoked, with one of these reasons.
    Revoked(Vec<&'static str>),
    /// Rotated with a grace that ends at a `revoked_at` in `lo..=hi` (one value once read back).
    Grace { lo: i64, hi: i64 },
    /// Rotated until the successor's first use (that successor's id, when the answer named it).
    Handover(Option<i64>),
}

impl Fate {
    /// Whether the proxy serves a token in this fate at a moment within `during`; `None` when
    /// a grace ended within it, where either answer is right.
    pub fn served(&self, open: bool, during: Window) -> Option<bool> {
        match self {
            Fate::Active | Fate::Handover(_) => Some(open),
            Fate::Revoked(_) => Some(false),
            Fate::Grace { .. } if !open => Some(false),
            Fate::Grace { lo, hi } => during.passed(*lo, *hi).map(|passed| !passed),
        }
    }

    /// Whether a token's JSON (from `token list` or `token show`, read within `during`) fits
    /// this fate.
    pub fn fits(&self, doc: &Shown, open: bool, during: Window) -> bool {
        let live = if open { "active" } else { "blocked" };
        let rotation = doc.reason.as_deref() == Some("rotation") && doc.rotated_to.is_some();
        match self {
            Fate::Active => {
                doc.status == live && doc.revoked_at.is_none() && doc.reason.is_none() && doc.rotated_to.is_none()
            }
            Fate::Revoked(reasons) => {
                doc.status == "revoked"
                    && doc.revoked_at.is_some()
                    && doc.reason.as_deref().is_some_and(|r| reasons.contains(&r))
            }
            Fate::Grace { lo, hi } => {
                let Some(at) = doc.revoked_at else { return false };
                let status_fits = match during.passed(at, at) {
                    Some(false) => doc.status == live,
                    Some(true) => doc.status == "revoked",
                    None => doc.status == live || doc.status == "revoked",
                };
                rotation && (*lo..=*hi).contains(&at) && status_fits
            }
            // The hand-over waits at most 7 days: far beyond this test.
            Fate::Handover(successor) => {
                rotation
                    && successor.is_none_or(|s| doc.rotated_to == Some(s))
                    && doc.revoked_at.is_some_and(|at| at as f64 > during.1 + 86_400.0)
                    && doc.status == live
            }
        }
    }

    /// This fate once the token is revoked for `reason` by a change committed within `during`
    /// (a revocation replaces a grace's end that has not passed yet, else changes nothing).
    pub fn revoked(&self, reason: &'static str, during: Window) -> Fate {
        match self {
            Fate::Active | Fate::Handover(_) => Fate::Revoked(vec![reason]),
            Fate::Revoked(reasons) => Fate::Revoked(reasons.clone()),
            Fate::Grace { lo, hi } => match during.passed(*lo, *hi) {
                Some(false) => Fate::Revoked(vec![reason]),
                Some(true) => Fate::Revoked(vec!["rotation"]),
                None => Fate::Revoked(vec![reason, "rotation"]),
            },
        }
    }
}

/// The fields of a token's JSON that its fate decides.
#[derive(Debug, PartialEq)]
pub struct Shown {
    pub status: String,
    pub revoked_at: Option<i64>,
    pub reason: Option<String>,
    pub rotated_to: Option<i64>,
}

impl Shown {
    pub fn of(doc: &Value) -> Shown {
        let revoked_at = doc["revoked_at"].as_str().map(|text| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("revoked_at {text:?}: {e}"))
                .unix_timestamp()
        });
        Shown {
            status: doc["status"].as_str().unwrap_or_else(|| panic!("no status in {doc}")).to_owned(),
            revoked_at,
            reason: doc["revoke_reason"].as_str().map(str::to_owned),
            rotated_to: doc["rotated_to"].as_i64(),
        }
    }
}

pub struct Token {
    pub id: i64,
    pub account: usize,
    pub secret: String,
    /// The alternatives still possible: one, unless a change was in flight at the last kill.
    pub fates: Vec<Fate>,
}

impl Token {
    /// Live in every alternative: neither revoked nor perhaps past a grace.
    pub fn surely_live(&self) -> bool {
        self.fates.iter().all(|f| matches!(f, Fate::Active | Fate::Handover(_)))
    }

    /// Applies `effect` to every alternative; unacknowledged, the old alternatives stay
    /// possible too.
    pub fn change(&mut self, acked: bool, effect: impl Fn(&Fate) -> Fate) {
        let mut fates: Vec<Fate> = self.fates.iter().map(effect).collect();
        if !acked {
            fates.extend(self.fates.iter().cloned());
        }
        let mut unique = Vec::new();
        for fate in fates {
            if !unique.contains(&fate) {
                unique.push(fate);
            }
        }
        self.fates = unique;
    }
}

pub struct Account {
    pub email: &'static str,
    /// The values still possible (both, after a change in flight).
    pub enabled: Vec<bool>,
    pub can_create_tokens: Vec<bool>,
}

impl Account {
    /// `Some(open)` when the account's state is known: enabled and with the token permission.
    pub fn open(&self) -> Option<bool> {
        match (self.enabled.as_slice(), self.can_create_tokens.as_slice()) {
            ([enabled], [can]) => Some(*enabled && *can),
            _ => None,
        }
    }
}

/// Sets an account field the model tracks: to `value` when acknowledged, else to either.
pub fn set_bool(field: &mut Vec<bool>, value: bool, acked: bool) {
    if acked {
        *field = vec![value];
    } else if !field.contains(&value) {
        field.push(value);
    }
}

#[test]
fn a_window_decides_a_scheduled_revocation_only_when_it_is_on_one_side() {
    assert_eq!(Window(99.2, 99.9).passed(100, 100), Some(false));
    assert_eq!(Window(100.0, 100.5).passed(100, 100), Some(true));
    assert_eq!(Window(99.9, 100.1).passed(100, 100), None);
    assert_eq!(Window(100.5, 100.7).passed(100, 101), None, "an end not known to the second");
}

#[test]
fn an_unacknowledged_change_leaves_both_outcomes_possible() {
    let mut token = Token { id: 1, account: 0, secret: String::new(), fates: vec![Fate::Active] };
    token.change(false, |f| f.revoked("manual", Window(0.0, 1.0)));
    assert_eq!(token.fates, [Fate::Revoked(vec!["manual"]), Fate::Active]);
    token.change(true, |f| f.revoked("revoke_all", Window(0.0, 1.0)));
    assert_eq!(token.fates, [Fate::Revoked(vec!["manual"]), Fate::Revoked(vec!["revoke_all"])]);
}
