//! The admission check for one key with four active limits (RPM, RPD, TPM, TPD), each behind
//! its own lock as the gateway holds them: lock, evaluate all four, charge all or none.
//! Target: under 1 µs per check on one core.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benchmark code

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Mutex;
use tollgate_core::limits::{admit, Gcra, Rate};

fn admission(c: &mut Criterion) {
    // Generous limits so every check is admitted and charges all four (the common path).
    let limits = [
        Mutex::new(Gcra::new(Rate::per_minute(u64::MAX / 4))),
        Mutex::new(Gcra::new(Rate::per_day(u64::MAX / 4))),
        Mutex::new(Gcra::new(Rate::per_minute(u64::MAX / 4))),
        Mutex::new(Gcra::new(Rate::per_day(u64::MAX / 4))),
    ];
    let mut now: u64 = 1_000_000_000;
    c.bench_function("admit 4 limits (rpm, rpd, tpm, tpd)", |b| {
        b.iter(|| {
            now += 1_000;
            let mut guards: Vec<_> = limits.iter().map(|l| l.lock().unwrap()).collect();
            let (rpm, rest) = guards.split_at_mut(1);
            let (rpd, rest) = rest.split_at_mut(1);
            let (tpm, tpd) = rest.split_at_mut(1);
            let verdicts = admit(
                &mut [
                    (&mut rpm[0], 1),
                    (&mut rpd[0], 1),
                    (&mut tpm[0], 512),
                    (&mut tpd[0], 512),
                ],
                black_box(now),
            );
            black_box(verdicts)
        })
    });
}

criterion_group!(benches, admission);
criterion_main!(benches);
