//! The dashboard's structure, without Prometheus: variables, datasources, ids and titles,
//! metric names against the contract, the allowlist, the grid.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::contract::{Contract, CONTRACT};
use super::grafana::{
    all_panels, is_layout, metric_names, queries, referenced_variables, variable_query, variables,
};
use super::{allowlisted, dashboard, ALLOWLIST, BUILTINS, DATASOURCE_UID};

#[test]
fn dashboard_is_well_formed() {
    let dash = dashboard();
    let mut problems = Vec::new();

    assert!(
        dash["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion {} is older than Grafana 9",
        dash["schemaVersion"]
    );
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()));

    // Variables: a datasource variable for Prometheus, query variables on it.
    let vars = variables(&dash);
    let names: BTreeSet<String> = vars
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a `datasource` template variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for want in ["job", "instance", "route", "baseline", "candidate"] {
        assert!(names.contains(want), "no `{want}` template variable");
    }
    let builtins: BTreeSet<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
    let known = |name: &str| names.contains(name) || builtins.contains(name);
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap();
        if v["datasource"]["uid"] != DATASOURCE_UID || v["datasource"]["type"] != "prometheus" {
            problems.push(format!("variable {name}: datasource {}", v["datasource"]));
        }
        for r in referenced_variables(&variable_query(v)) {
            if !known(&r) || r == name {
                problems.push(format!("variable {name}: references unknown ${r}"));
            }
        }
    }

    // Panels: unique ids and titles (the allowlist names titles), a datasource and PromQL
    // targets on every non-layout panel.
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in all_panels(&dash) {
        let title = p["title"].as_str().unwrap_or_default();
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title:?} has no id"));
        if !ids.insert(id) {
            problems.push(format!("panel id {id} is used twice (again by {title:?})"));
        }
        if is_layout(p) {
            continue;
        }
        if !titles.insert(title) {
            problems.push(format!("panel title {title:?} is used twice"));
        }
        if p["datasource"]["uid"] != DATASOURCE_UID || p["datasource"]["type"] != "prometheus" {
            problems.push(format!("panel {title:?}: datasource {}", p["datasource"]));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if !targets
            .iter()
            .any(|t| t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()))
        {
            problems.push(format!("panel {title:?}: no target with an expr"));
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            if t["datasource"]["uid"] != DATASOURCE_UID {
                problems.push(format!(
                    "panel {title:?} target {}: datasource {}",
                    t["refId"], t["datasource"]
                ));
            }
            if !refs.insert(t["refId"].as_str().unwrap_or_default().to_string()) {
                problems.push(format!("panel {title:?}: refId {} twice", t["refId"]));
            }
        }
    }
    // Annotations from Prometheus use the same datasource variable.
    for a in dash["annotations"]["list"].as_array().unwrap() {
        if a["builtIn"] == 1 {
            continue;
        }
        if a["datasource"]["uid"] != DATASOURCE_UID {
            problems.push(format!(
                "annotation {}: datasource {}",
                a["name"], a["datasource"]
            ));
        }
    }
    // No hard-coded datasource uid anywhere (only the variable, and Grafana's own annotations).
    let mut uids = Vec::new();
    collect_datasource_uids(&dash, &mut uids);
    for uid in uids {
        if uid != DATASOURCE_UID && uid != "-- Grafana --" {
            problems.push(format!("hard-coded datasource uid {uid:?}"));
        }
    }

    // Every variable an expr uses exists; every metric is in the contract.
    let contract = Contract::read();
    let mut all_exprs: Vec<(String, String)> = queries(&dash)
        .into_iter()
        .map(|q| (q.place, q.expr))
        .collect();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        all_exprs.push((format!("variable {}", v["name"]), variable_query(v)));
    }
    for (place, expr) in &all_exprs {
        for r in referenced_variables(expr) {
            if !known(&r) {
                problems.push(format!("{place}: ${r} is neither a template variable nor a Grafana built-in this test knows"));
            }
        }
        let names = metric_names(expr);
        if names.is_empty() && !place.starts_with("variable") {
            problems.push(format!("{place}: no runoff_ metric in {expr:?}"));
        }
        for name in names {
            if !contract.names(&name) {
                problems.push(format!(
                    "{place}: {name} is not in the metric contract ({CONTRACT})"
                ));
            }
        }
    }

    // The allowlist names real panels or annotations, exactly those that use a reserved name.
    let mut owners: BTreeSet<String> = BTreeSet::new();
    let mut owners_of_reserved: BTreeSet<String> = BTreeSet::new();
    for q in queries(&dash) {
        for name in metric_names(&q.expr) {
            if contract.is_reserved(&name) {
                owners_of_reserved.insert(q.owner.clone());
                if !allowlisted(&q.owner) {
                    problems.push(format!(
                        "{}: {name} is not yet exported ({CONTRACT}): put {:?} on the ALLOWLIST",
                        q.place, q.owner
                    ));
                }
            }
        }
        owners.insert(q.owner);
    }
    for entry in ALLOWLIST {
        if !owners.contains(*entry) {
            problems.push(format!(
                "ALLOWLIST entry {entry:?} names no panel or annotation"
            ));
        } else if !owners_of_reserved.contains(*entry) {
            problems.push(format!(
                "ALLOWLIST entry {entry:?} uses no metric that {CONTRACT} marks not yet \
                 exported: remove it, and the panel is held to real data"
            ));
        }
    }

    // Layout: inside 24 columns, no two panels on the same cells.
    let mut cells: HashMap<(u64, u64), String> = HashMap::new();
    for p in dash["panels"].as_array().unwrap() {
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        let title = p["title"].as_str().unwrap_or_default().to_string();
        if x + w > 24 || w == 0 || h == 0 {
            problems.push(format!(
                "panel {title:?}: gridPos {g} is outside the 24 columns"
            ));
        }
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.clone()) {
                    problems.push(format!("panels {other:?} and {title:?} overlap"));
                }
            }
        }
    }

    let mut seen = BTreeSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
}

fn collect_datasource_uids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "datasource" {
                    if let Some(uid) = child["uid"].as_str() {
                        out.push(uid.to_string());
                    } else if let Some(s) = child.as_str() {
                        out.push(s.to_string());
                    }
                }
                collect_datasource_uids(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_datasource_uids(i, out)),
        _ => {}
    }
}
