//! The referral lifecycle, one task per target (as in FHIR Task).
//!
//! Origin: `offered(deadline) → accepted | declined(reason) | expired`; on decline or expiry
//! the next candidate is offered; after `max_attempts` or with no candidate left the
//! referral is `exhausted`. After an accept the dossier is handed over (only now, and only
//! inside the consent scope), then progress updates arrive until `completed` or `abandoned`.
//!
//! Target: priority sectors with intake left are accepted at once; excluded sectors,
//! missing services, consent and capacity are declined at once with their reason code;
//! anything else waits for the operator until a deadline, then is declined.
//!
//! Only the target of the current attempt can ever be accepted, so a referral is never
//! accepted by two targets. Every message is idempotent on (referral, attempt).

mod origin;
mod target;

pub(crate) use origin::rationale;
