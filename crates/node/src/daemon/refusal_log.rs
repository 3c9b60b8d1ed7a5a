//! Refusals for the log: the first of each member and reason at once, with its detail;
//! the rest counted and summarised once a minute, one line per member.

use std::collections::BTreeMap;

#[derive(Default)]
pub struct RefusalLog {
    /// (member, reason) pairs already logged in full.
    told: std::collections::BTreeSet<(String, String)>,
    /// Refusals since the last summary, by member and reason.
    since: BTreeMap<String, BTreeMap<String, u64>>,
}

impl RefusalLog {
    /// Counts a refusal; true when it is the first of its member and reason, to be logged
    /// in full.
    pub fn refused(&mut self, member: &str, reason: &str) -> bool {
        *self
            .since
            .entry(member.to_owned())
            .or_default()
            .entry(reason.to_owned())
            .or_default() += 1;
        self.told.insert((member.to_owned(), reason.to_owned()))
    }

    /// One line per member refused since the last call: `bad_signature 12, expired 2`,
    /// with the total; empties the tally.
    pub fn summary(&mut self) -> Vec<(String, u64, String)> {
        std::mem::take(&mut self.since)
            .into_iter()
            .map(|(member, reasons)| {
                let total = reasons.values().sum();
                let text = reasons
                    .iter()
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                (member, total, text)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_each_reason_is_told_and_the_rest_summed_per_member() {
        let mut log = RefusalLog::default();
        assert!(log.refused("de-jaif", "bad_signature"));
        assert!(!log.refused("de-jaif", "bad_signature"));
        assert!(log.refused("de-jaif", "expired"));
        assert!(log.refused("fr-ai2f", "bad_signature"));
        assert_eq!(
            log.summary(),
            vec![
                ("de-jaif".into(), 3, "bad_signature 2, expired 1".into()),
                ("fr-ai2f".into(), 1, "bad_signature 1".into()),
            ]
        );
        assert_eq!(log.summary(), vec![]);
        assert!(!log.refused("de-jaif", "expired"));
        assert_eq!(log.summary().len(), 1);
    }
}
