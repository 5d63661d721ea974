//! The metering writer's cost per usage event: batches of 256 events (what the gateway's writer
//! sends under load) written into a real SQLite file, each batch one transaction that also
//! folds the events into the daily roll-up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benchmark code

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::{Duration, Instant};
use tollgate_core::{KeyId, MicroUsd, OrgId, ProjectId, UnixTime};
use tollgate_store::{DatabaseLocation, Store, UsageEvent};

const BATCH: usize = 256;

fn event(n: u64) -> UsageEvent {
    UsageEvent {
        request_id: format!("req_{n:032x}"),
        org_id: OrgId::from_trusted("org-bench".to_owned()),
        project_id: ProjectId::from_trusted("proj_bench".to_owned()),
        key_id: KeyId::from_trusted(format!("key_bench{}", n % 4)),
        model_requested: "gpt-4o-mini".to_owned(),
        model_served: "gpt-4o-mini".to_owned(),
        endpoint: "/v1/chat/completions".to_owned(),
        input_tokens: 9,
        cached_input_tokens: 0,
        output_tokens: 11,
        reasoning_tokens: 0,
        cost: MicroUsd(8),
        status: 200,
        latency_ms: 1,
        client_ip: Some("127.0.0.1".to_owned()),
        created_at: UnixTime(1_795_400_000 + (n / 10_000) as i64),
        objects: Vec::new(),
    }
}

fn usage_writes(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = runtime
        .block_on(Store::open(&DatabaseLocation::Sqlite(
            dir.path().join("bench.db"),
        )))
        .unwrap();
    let mut next = 0u64;
    let mut group = c.benchmark_group("usage writes");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("record_usage: batch of 256 events", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let batch: Vec<UsageEvent> = (next..next + BATCH as u64).map(event).collect();
                next += BATCH as u64;
                let start = Instant::now();
                runtime.block_on(store.record_usage(&batch)).unwrap();
                spent += start.elapsed();
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, usage_writes);
criterion_main!(benches);
