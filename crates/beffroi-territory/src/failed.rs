//! Knock-on errors folded under their cause.
//!
//! A commune declared with a mistake is not loaded; without care every site in it then
//! reports "unknown commune", every device on those sites "unknown site", and every rule
//! naming them "unknown device": one mistake read as thirty. The loader remembers what it
//! could not load and the error that says why; a later reference to it adds to that
//! error's count instead of being reported on its own.

use std::collections::HashMap;

use crate::error::ConfigErrors;

/// What a declaration declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum What {
    Commune,
    Zone,
    Kind,
    Site,
    Device,
}

/// The declarations that could not be loaded, each with the index of its cause among the
/// errors of the territory.
#[derive(Clone, Debug, Default)]
pub struct Failed {
    by_id: HashMap<(What, String), usize>,
    /// Declarations of the section being read: id and the number of errors before it.
    pending: Vec<(String, usize)>,
}

impl Failed {
    /// A declaration of `id` starts being read.
    pub(crate) fn begin(&mut self, id: &str, errors: &ConfigErrors) {
        self.pending.push((id.to_string(), errors.len()));
    }

    /// The section of `what` is read: each declaration that was not loaded and reported an
    /// error is remembered with its first error as the cause.
    pub(crate) fn settle(
        &mut self,
        what: What,
        errors: &ConfigErrors,
        loaded: impl Fn(&str) -> bool,
    ) {
        let pending = std::mem::take(&mut self.pending);
        for (i, (id, start)) in pending.iter().enumerate() {
            let end = pending.get(i + 1).map_or(errors.len(), |p| p.1);
            if *start < end && !loaded(id) {
                self.by_id.entry((what, id.clone())).or_insert(*start);
            }
        }
    }

    /// A reference to `id` (a `what`) that is not loaded: when it failed to load, the
    /// reference is counted under that failure's error, `dependent` (if any) fails with the
    /// same cause, and `true` is returned (nothing more to report).
    pub(crate) fn follows(
        &mut self,
        what: What,
        id: &str,
        dependent: Option<(What, &str)>,
        errors: &mut ConfigErrors,
    ) -> bool {
        let Some(&cause) = self.by_id.get(&(what, id.to_string())) else {
            return false;
        };
        if let Some(e) = errors.0.get_mut(cause) {
            e.knock_on += 1;
        }
        if let Some((w, d)) = dependent {
            self.by_id.entry((w, d.to_string())).or_insert(cause);
        }
        true
    }

    /// Folds the errors of other files (rules, procedures, scenarios…) that name a
    /// declaration that failed here (most say it is unknown): each is counted under the territory's error
    /// (`territory[cause]`) instead of being reported. Returns the errors left.
    pub fn fold(&self, territory: &mut ConfigErrors, others: ConfigErrors) -> ConfigErrors {
        let mut left = ConfigErrors::default();
        for e in others.0 {
            // An error that names (in backquotes) what failed to load is about it.
            let cause = e
                .message
                .split('`')
                .skip(1)
                .step_by(2)
                .find_map(|id| self.by_id.iter().find(|((_, x), _)| x == id))
                .map(|(_, c)| *c);
            match cause.and_then(|c| territory.0.get_mut(c)) {
                Some(t) => t.knock_on += 1,
                None => left.push(e),
            }
        }
        left
    }
}
