//! Proptest strategies for every message type, shared by the wire tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use aiguillage_wire::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

pub fn member_id() -> impl Strategy<Value = MemberId> {
    "[a-z]{2}-[a-z0-9]{1,12}".prop_map(|s| MemberId::new(s).unwrap())
}

pub fn country() -> impl Strategy<Value = CountryCode> {
    "[A-Z]{2}".prop_map(|s| CountryCode::new(&s).unwrap())
}

pub fn language() -> impl Strategy<Value = Language> {
    "[a-z]{2}".prop_map(|s| Language::new(&s).unwrap())
}

pub fn sector() -> impl Strategy<Value = Sector> {
    select(Sector::ALL)
}

pub fn service() -> impl Strategy<Value = Service> {
    select(Service::ALL)
}

pub fn level() -> impl Strategy<Value = SectorLevel> {
    select(SectorLevel::ALL)
}

pub fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0u64..4_000_000_000_000).prop_map(Timestamp)
}

/// An id minted by `origin`, as `<origin>/<n>`.
pub fn minted(origin: &MemberId, n: u64) -> String {
    format!("{origin}/{n}")
}

pub fn advert_for(member: MemberId) -> impl Strategy<Value = Advert> {
    (
        any::<u64>(),
        select(Role::ALL),
        text(),
        country(),
        proptest::collection::btree_map(sector(), level(), 0..8),
        level(),
        vec(service(), 0..7),
        vec(language(), 0..5),
        vec(country(), 0..5),
        vec((text(), text(), vec(sector(), 0..3)), 0..4),
        gpu(),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            move |(
                seq,
                role,
                name,
                country,
                sectors,
                other,
                services,
                languages,
                served,
                datasets,
                gpu,
                intake,
            )| Advert {
                member: member.clone(),
                seq,
                role,
                name,
                country,
                sectors: sectors.into_iter().collect::<BTreeMap<_, _>>(),
                other_sectors: other,
                services,
                languages,
                countries_served: served,
                datasets: datasets
                    .into_iter()
                    .map(|(id, title, sectors)| Dataset { id, title, sectors })
                    .collect(),
                gpu,
                referral_intake: intake,
            },
        )
}

pub fn gpu() -> impl Strategy<Value = GpuCapacity> {
    (
        proptest::option::of(0u32..100_000),
        proptest::option::of("[A-Za-z0-9 ]{1,20}"),
        any::<bool>(),
        vec(country(), 0..4),
    )
        .prop_map(
            |(total, accelerator, takes_overflow, overflow_from)| GpuCapacity {
                total,
                free: total.map(|t| t / 2),
                accelerator,
                largest_job_gpus: total.map(|t| t / 4),
                takes_overflow,
                overflow_from,
            },
        )
}

pub fn card() -> impl Strategy<Value = ProjectCard> {
    (
        "[a-z0-9]{1,10}/[0-9]{1,6}",
        sector(),
        vec(sector(), 0..3),
        country(),
        select(CompanySize::ALL),
        service(),
        vec(service(), 0..7),
        any::<u32>(),
        vec(text(), 0..3),
        vec(language(), 0..3),
        (any::<bool>(), vec(member_id(), 0..3), vec(country(), 0..3)),
    )
        .prop_map(
            |(
                project,
                sector,
                secondary,
                country,
                size,
                stage,
                services,
                gpu_hours,
                datasets,
                languages,
                (whole, members, countries),
            )| ProjectCard {
                project: ProjectId::new(project).unwrap(),
                sector,
                secondary_sectors: secondary,
                country,
                company_size: size,
                stage,
                services_needed: services,
                gpu_hours,
                datasets_wanted: datasets,
                languages,
                consent: ConsentScope {
                    whole_federation: whole,
                    members,
                    countries,
                },
            },
        )
}

pub fn requirements() -> impl Strategy<Value = JobRequirements> {
    (
        1u32..512,
        1u64..1_000_000,
        proptest::option::of("[A-Za-z0-9]{1,12}"),
        timestamp(),
        vec(country(), 0..4),
        any::<u8>(),
    )
        .prop_map(
            |(gpus, time_limit_s, accelerator, latest_start, residency, priority)| {
                JobRequirements {
                    gpus,
                    time_limit_s,
                    accelerator,
                    latest_start,
                    residency,
                    priority,
                }
            },
        )
}

pub fn job_state() -> impl Strategy<Value = JobState> {
    select(JobState::ALL)
}
