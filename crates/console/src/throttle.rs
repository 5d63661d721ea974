//! Password guessing, slowed (the rules are `tollgate_core::sign_in`'s): every attempt to
//! check a password (signing in, accepting an invite for an existing account, changing one's
//! own password) is counted before it is checked, per account and address, per address (an
//! IPv6 /64 as one), and per account from everywhere — except from addresses the account has
//! signed in from before, so others' guesses cannot lock the owner out. Counts live in this
//! process (a replica's own; bounded in size).

use std::collections::HashMap;
use tollgate_core::sign_in::{
    Throttle, FREE_FAILURES_PER_ACCOUNT, FREE_FAILURES_PER_ACCOUNT_AND_ADDRESS,
    FREE_FAILURES_PER_ADDRESS,
};
use tollgate_core::UnixTime;

/// How many accounts and addresses each count remembers at most.
const CAPACITY: usize = 10_000;
/// How many addresses an account is remembered to have signed in from.
const KNOWN_PER_ACCOUNT: usize = 8;

#[derive(Debug)]
pub struct Throttles {
    pairs: Throttle,
    accounts: Throttle,
    addresses: Throttle,
    /// Addresses each account signed in from.
    known: HashMap<String, Vec<String>>,
}

impl Default for Throttles {
    fn default() -> Self {
        Throttles {
            pairs: Throttle::new(FREE_FAILURES_PER_ACCOUNT_AND_ADDRESS, CAPACITY),
            accounts: Throttle::new(FREE_FAILURES_PER_ACCOUNT, CAPACITY),
            addresses: Throttle::new(FREE_FAILURES_PER_ADDRESS, CAPACITY),
            known: HashMap::new(),
        }
    }
}

impl Throttles {
    fn pair(account: &str, address: &str) -> String {
        format!("{account}|{address}")
    }

    fn known(&self, account: &str, address: &str) -> bool {
        self.known
            .get(account)
            .is_some_and(|list| list.iter().any(|a| a == address))
    }

    /// An attempt to check `account`'s password from `address`: `Err(seconds)` to wait, or
    /// counted (as a failure until [`Throttles::succeeded`] says otherwise).
    pub fn attempt(&mut self, account: &str, address: &str, now: UnixTime) -> Result<(), i64> {
        let pair = Self::pair(account, address);
        let known = self.known(account, address);
        let wait = [
            self.pairs.check(&pair, now),
            self.addresses.check(address, now),
            if known {
                Ok(())
            } else {
                self.accounts.check(account, now)
            },
        ]
        .into_iter()
        .filter_map(Result::err)
        .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        self.pairs.failed(&pair, now);
        self.addresses.failed(address, now);
        self.accounts.failed(account, now);
        Ok(())
    }

    /// The password was right: the account's counts are cleared and the address is
    /// remembered as the account's.
    pub fn succeeded(&mut self, account: &str, address: &str) {
        self.pairs.succeeded(&Self::pair(account, address));
        self.accounts.succeeded(account);
        if !self.known.contains_key(account) && self.known.len() >= CAPACITY {
            self.known.clear();
        }
        let list = self.known.entry(account.to_owned()).or_default();
        if !list.iter().any(|a| a == address) {
            if list.len() >= KNOWN_PER_ACCOUNT {
                list.remove(0);
            }
            list.push(address.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_from_elsewhere_do_not_lock_the_owner_out_of_their_own_address() {
        let mut t = Throttles::default();
        let now = UnixTime(1_000);
        assert_eq!(t.attempt("owner", "home", now), Ok(()));
        t.succeeded("owner", "home");
        // An attacker spreads guesses over many addresses until the account-wide count holds.
        for n in 0..FREE_FAILURES_PER_ACCOUNT {
            assert_eq!(t.attempt("owner", &format!("bot{n}"), now), Ok(()));
        }
        assert!(t.attempt("owner", "another-bot", now).is_err());
        assert_eq!(
            t.attempt("owner", "home", now),
            Ok(()),
            "the owner's address still gets in"
        );
        // One address guessing many accounts is held too.
        for n in 0..FREE_FAILURES_PER_ADDRESS {
            assert_eq!(t.attempt(&format!("user{n}"), "sprayer", now), Ok(()));
        }
        assert!(t.attempt("someone-else", "sprayer", now).is_err());
    }
}
