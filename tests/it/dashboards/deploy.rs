//! The deploy files: Prometheus's scrape config, Grafana's provisioning, docker compose, and
//! runoff's compose config.

use std::process::Command;

use super::prometheus::promtool;
use super::{read, repo};
use crate::harness;

#[test]
fn deploy_files_are_valid() {
    // Prometheus's scrape config.
    let path = repo("deploy/prometheus.yml");
    let (ok, printed) = promtool(&["check", "config", path.to_str().unwrap()], "");
    assert!(
        ok,
        "promtool check config deploy/prometheus.yml:\n{printed}"
    );
    let prom: serde_yaml::Value = serde_yaml::from_str(&read("deploy/prometheus.yml")).unwrap();
    let job = &prom["scrape_configs"][0];
    assert_eq!(job["job_name"].as_str(), Some("runoff"));
    assert_eq!(
        job["static_configs"][0]["targets"][0].as_str(),
        Some("runoff:9100")
    );

    // Grafana provisioning: the datasource is compose's Prometheus, the dashboards folder is
    // where compose mounts dashboards/.
    let ds: serde_yaml::Value =
        serde_yaml::from_str(&read("dashboards/provisioning/datasources/prometheus.yml")).unwrap();
    let d = &ds["datasources"][0];
    assert_eq!(d["type"].as_str(), Some("prometheus"));
    assert_eq!(d["url"].as_str(), Some("http://prometheus:9090"));
    let provider: serde_yaml::Value =
        serde_yaml::from_str(&read("dashboards/provisioning/dashboards/runoff.yml")).unwrap();
    let p = &provider["providers"][0];
    assert_eq!(p["type"].as_str(), Some("file"));
    let dash_dir = p["options"]["path"].as_str().unwrap();

    let compose: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/docker-compose.yml")).unwrap();
    let services = &compose["services"];
    for s in ["runoff", "prometheus", "grafana"] {
        assert!(services[s].is_mapping(), "compose has no `{s}` service");
    }
    let grafana_mounts: Vec<&str> = services["grafana"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        grafana_mounts.contains(&format!("../dashboards:{dash_dir}:ro").as_str()),
        "compose must mount ../dashboards at the provider's path {dash_dir}: {grafana_mounts:?}"
    );
    assert!(grafana_mounts.contains(&"../dashboards/provisioning:/etc/grafana/provisioning:ro"));
    assert_eq!(
        services["runoff"]["build"]["dockerfile"].as_str(),
        Some("deploy/Dockerfile")
    );
    assert!(repo("deploy/Dockerfile").is_file());
    // No default admin token: compose refuses to start without one (`${VAR:?message}`).
    let token = services["runoff"]["environment"]["RUNOFF_ADMIN_TOKEN"]
        .as_str()
        .unwrap_or("");
    assert!(
        token.starts_with("${RUNOFF_ADMIN_TOKEN:?"),
        "compose must require RUNOFF_ADMIN_TOKEN, not default it: {token}"
    );

    // runoff's compose config is valid, apart from compose's DNS names that only resolve there.
    let config = read("deploy/runoff.yaml")
        .replace("node:3000", "127.0.0.1:3000")
        .replace("go:3001", "127.0.0.1:3001");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runoff.yaml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(harness::bin())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runoff check deploy/runoff.yaml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
