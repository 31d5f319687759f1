//! `cargo bench --bench hot`: what runoff does once per request that is not I/O, timed with
//! criterion (`-- --save-baseline main` and `-- --baseline main` compare two builds), so a
//! regression shows without a load test. On the hot path per request: the route match, the
//! sticky hash and split, the metric series and recorders a finished request updates, and (on
//! compared routes, off the proxy's threads) the JSON judge.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use runoff::analysis::tally::{Side, Tally};
use runoff::analysis::Recorder;
use runoff::config::Config;
use runoff::routing::{self, RequestFacts};

/// Five routes, the request matching the last one (a host and a method list on the way).
const ROUTES: &str = "listen: 127.0.0.1:1
backends:
  node: { address: 127.0.0.1:2 }
  go: { address: 127.0.0.1:3 }
routes:
  - { name: admin, match: { host: admin.example.com }, split: { node: 1 } }
  - { name: orders, match: { path_prefix: /orders, methods: [POST] }, split: { node: 1 } }
  - { name: users, match: { path_prefix: /users }, split: { node: 1 } }
  - { name: search, match: { path_prefix: /search, host: '*.example.com' }, split: { node: 1 } }
  - name: api
    match: { path_prefix: /api }
    split: { node: 90, go: 10 }
    sticky: { header: x-user-id }
";

fn routing(c: &mut Criterion) {
    let config = match Config::from_yaml(ROUTES) {
        Ok(c) => c,
        Err(e) => panic!("the bench config: {e}"),
    };
    let routes = &config.live.routes;
    let get = Method::GET;
    let facts = RequestFacts {
        method: &get,
        host: Some("api.example.com"),
        path: "/api/users/42?fields=name",
    };
    c.bench_function("route_match/5_routes_last", |b| {
        b.iter(|| routing::find_route(black_box(routes), black_box(&facts)))
    });

    let api = &routes[4];
    let mut headers = HeaderMap::new();
    headers.insert("x-user-id", HeaderValue::from_static("user-8d3f2a91"));
    let names = |i: usize| if i == 0 { "node" } else { "go" };
    let Some(sticky) = api.sticky.as_ref() else {
        panic!("the api route is sticky");
    };
    let ip = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    c.bench_function("sticky/header_key_hash_split", |b| {
        b.iter(|| {
            let key = routing::sticky_key(sticky, black_box(&headers), ip);
            routing::choose_backend(
                &api.split,
                names,
                None,
                key.as_ref().map(|k| k.as_bytes()),
                || 0,
            )
        })
    });
}

fn recording(c: &mut Criterion) {
    let Some(series) = runoff::benching::RequestSeries::new() else {
        panic!("metric series");
    };
    c.bench_function("metrics/finished_request", |b| {
        b.iter(|| {
            series.answered(
                black_box(Duration::from_micros(850)),
                Duration::from_micros(700),
            )
        })
    });

    let recorder = Recorder::new(Instant::now());
    c.bench_function("recorder/record", |b| {
        b.iter(|| recorder.record_duration(black_box(Duration::from_micros(850)), false))
    });

    let tally = Tally::new("bench");
    c.bench_function("tally/request", |b| {
        b.iter(|| {
            tally.request(
                Side::Baseline,
                black_box(Some(Duration::from_micros(700))),
                false,
            )
        })
    });

    // Two threads recording into the same recorder at once, as two proxy threads do: the time
    // per record on each thread.
    let shared = Arc::new(Recorder::new(Instant::now()));
    c.bench_function("recorder/record_2_threads", |b| {
        b.iter_custom(|iters| {
            let other = {
                let r = Arc::clone(&shared);
                std::thread::spawn(move || {
                    for i in 0..iters {
                        r.record(800 + i % 100, false);
                    }
                })
            };
            let start = Instant::now();
            for i in 0..iters {
                shared.record(black_box(800 + i % 100), false);
            }
            let took = start.elapsed();
            let _ = other.join();
            took
        })
    });
}

fn judging(c: &mut Criterion) {
    let doc = |score: &str| {
        format!(
            r#"{{"users":[{{"id":1,"name":"ada","score":91.5,"tags":["a","b"]}},{{"id":2,"name":"linus","score":{score},"tags":[]}},{{"id":3,"name":"grace","score":77,"tags":["c"]}}],"count":3,"items":[{{"at":"2026-12-02T10:00:00Z","n":1}},{{"at":"2026-12-02T10:00:01Z","n":2}}]}}"#
        )
    };
    let (a, b) = (doc("88"), doc("88.0004"));
    // json_compare's input: the first byte is where the first document ends (at most 255).
    let Ok(cut) = u8::try_from(a.len()) else {
        panic!("the first document fits a one-byte length");
    };
    let mut input = vec![cut];
    input.extend_from_slice(a.as_bytes());
    input.extend_from_slice(b.as_bytes());
    c.bench_function("compare/json_two_rule_sets", |bench| {
        bench.iter(|| runoff::fuzzing::json_compare(black_box(&input)))
    });
}

criterion_group!(benches, routing, recording, judging);
criterion_main!(benches);
