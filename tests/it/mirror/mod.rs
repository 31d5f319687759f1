//! Shadow traffic end to end: copies reach the candidate, the caller only ever sees the
//! primary, and every copy is accounted for exactly.

mod delivery;
mod failures;
mod fidelity;
mod request_ids;
mod sampling;

use crate::harness::{Metrics, Ports};

/// node serves the caller; go gets the copies.
pub(crate) fn config(p: &Ports, node: &str, go: &str, mirror: &str) -> String {
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{node}\" }}\n  go: {{ address: \"{go}\", read_timeout: 60s }}\nroutes:\n  - name: orders\n    split: {{ node: 100 }}\n    mirror: {{ to: go{mirror} }}\n",
        p.listen, p.admin
    )
}

pub(super) const ROUTE_GO: &[(&str, &str)] = &[("route", "orders"), ("backend", "go")];

pub(super) fn shadow<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut l = vec![("route", "orders"), ("backend", "go"), ("role", "shadow")];
    l.extend_from_slice(extra);
    l
}

/// mirror_requests = completed + dropped, exactly.
pub(super) fn assert_identity(m: &Metrics) {
    let sent = m.sum("runoff_mirror_requests_total", ROUTE_GO);
    let completed = m.sum("runoff_requests_total", &shadow(&[]));
    let drops = m.sum("runoff_mirror_dropped_total", ROUTE_GO);
    assert_eq!(
        sent,
        completed + drops,
        "sent {sent} != completed {completed} + dropped {drops}"
    );
    assert_eq!(
        m.sum(
            "runoff_requests_total",
            &shadow(&[("status_class", "error")])
        ),
        0.0
    );
}
