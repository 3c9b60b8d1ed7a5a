//! The closed vocabularies of the federation: sectors, journey services, roles, reasons.
//! Tags are the snake_case strings of `data/ai_factories.json`; an unknown tag is a
//! decode error, never a silent default.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! tagged_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $tag:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $tag)] $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub const fn tag(self) -> &'static str {
                match self { $($name::$variant => $tag,)* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.tag())
            }
        }

        // Tags decode from text only: serde's derived enums would also take a variant's
        // position as an integer, making declaration order part of the wire format.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Tag;
                impl serde::de::Visitor<'_> for Tag {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} tag (text)", stringify!($name))
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        s.parse().map_err(|e: crate::WireError| E::custom(e))
                    }
                }
                d.deserialize_str(Tag)
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::WireError;
            fn from_str(s: &str) -> Result<Self, crate::WireError> {
                match s {
                    $($tag => Ok($name::$variant),)*
                    _ => Err(crate::WireError::invalid(
                        stringify!($name),
                        format!("unknown tag {s:?}; expected one of: {}",
                            [$($tag),*].join(", ")),
                    )),
                }
            }
        }
    };
}

tagged_enum!(
    /// Economic sector of a project, and of a member's specialisation.
    Sector {
        FinanceInsurance = "finance_insurance",
        Cybersecurity = "cybersecurity",
        DefenceSecurity = "defence_security",
        Space = "space",
        Aerospace = "aerospace",
        GreenEnergy = "green_energy",
        Sustainability = "sustainability",
        ClimateEarth = "climate_earth",
        Mobility = "mobility",
        Manufacturing = "manufacturing",
        Robotics = "robotics",
        AutonomousSystems = "autonomous_systems",
        Health = "health",
        LifeSciences = "life_sciences",
        Pharma = "pharma",
        Agrifood = "agrifood",
        PublicSector = "public_sector",
        Education = "education",
        LanguageTechnologies = "language_technologies",
        CultureHumanities = "culture_humanities",
        MediaTelecom = "media_telecom",
        Materials = "materials",
        Gaming = "gaming",
        CivilProtection = "civil_protection",
        SmartCities = "smart_cities",
        Maritime = "maritime",
    }
);

tagged_enum!(
    /// How a member stands towards a sector.
    SectorLevel {
        /// The member's declared focus: projects here are kept when it can serve them.
        Priority = "priority",
        /// Served, but a better-suited member may be preferred.
        Accepted = "accepted",
        /// Never served: projects here are always referred.
        Excluded = "excluded",
    }
);

tagged_enum!(
    /// The seven steps of the AI Factory client journey, each also a service a member offers.
    Service {
        FirstContact = "first_contact",
        Training = "training",
        Assessment = "assessment",
        SolutionMatching = "solution_matching",
        Financing = "financing",
        PocSandbox = "poc_sandbox",
        Production = "production",
    }
);

tagged_enum!(
    /// A member's role in the federation roster.
    Role {
        Factory = "factory",
        Antenna = "antenna",
    }
);

tagged_enum!(
    /// Company size class on a project card (EU SME definition).
    CompanySize {
        Micro = "micro",
        Small = "small",
        Medium = "medium",
        Large = "large",
        Public = "public",
        Research = "research",
    }
);

tagged_enum!(
    /// Machine-readable reason a target declines a referral offer.
    DeclineReason {
        SectorExcluded = "sector_excluded",
        NoCapacity = "no_capacity",
        ServiceNotOffered = "service_not_offered",
        OutOfConsentScope = "out_of_consent_scope",
        OperatorDeclined = "operator_declined",
        /// The operator did not decide before the offer's deadline.
        NoDecision = "no_decision",
        /// The offer reached the target after its deadline.
        OfferExpired = "offer_expired",
        /// The offer names another member as its target.
        NotAddressedToUs = "not_addressed_to_us",
    }
);

tagged_enum!(
    /// Where a handed-over project stands on its journey at the receiving member.
    ProgressState {
        InProgress = "in_progress",
        Completed = "completed",
        Abandoned = "abandoned",
    }
);

tagged_enum!(
    /// State of an overflow job at its host, as reported in status messages and receipts.
    JobState {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        TimedOut = "timed_out",
    }
);

impl JobState {
    /// A job in a final state will not change again on this host.
    pub const fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_tags_round_trip_and_unknown_tags_are_named() {
        for s in Sector::ALL {
            assert_eq!(s.tag().parse::<Sector>().unwrap(), *s);
        }
        assert_eq!(Sector::ALL.len(), 26);
        let err = "fintech".parse::<Sector>().unwrap_err().to_string();
        assert!(err.contains("fintech"), "{err}");
        assert!(err.contains("finance_insurance"), "{err}");
    }

    #[test]
    fn tags_decode_from_text_and_nothing_else() {
        let text = [0x66, b'h', b'e', b'a', b'l', b't', b'h'];
        assert_eq!(
            serde_cbor::from_slice::<Sector>(&text).unwrap(),
            Sector::Health
        );
        // Health's position in the enum, as an integer, and a one-entry map.
        assert!(serde_cbor::from_slice::<Sector>(&[0x0c]).is_err());
        assert!(
            serde_cbor::from_slice::<Sector>(&[
                0xa1, 0x66, b'h', b'e', b'a', b'l', b't', b'h', 0xf6
            ])
            .is_err()
        );
    }

    #[test]
    fn the_journey_has_seven_steps() {
        assert_eq!(Service::ALL.len(), 7);
    }
}
