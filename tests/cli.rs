//! The `aqueduct` command line: bad config files and arguments get a clear error and a non-zero exit.

use std::process::Command;

use aqueduct_testkit::aqueduct_binary;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(aqueduct_binary().unwrap())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const VALID: &str = r#"
[clusters.a]
bootstrap_servers = "127.0.0.1:1"
[clusters.b]
bootstrap_servers = "127.0.0.1:2"
[[datastreams]]
name = "a-to-b"
destination = "b"
[[datastreams.sources]]
cluster = "a"
topics = ["orders"]
"#;

fn write(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aqueduct.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.display().to_string())
}

#[test]
fn check_config_accepts_a_valid_file() {
    let (_dir, path) = write(VALID);
    let (code, stdout, _) = run(&["check-config", "--config", &path], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("datastream a-to-b: a -> b"), "{stdout}");
}

#[test]
fn the_example_config_in_deploy_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/aqueduct.example.toml"
    );
    let (code, stdout, stderr) = run(&["check-config", "--config", path], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("datastream dcs-to-aggregate: dc1,dc2 -> aggregate ({source}.{topic})"),
        "{stdout}"
    );
}

#[test]
fn bad_config_files_name_the_key_and_exit_2() {
    let cases = [
        (
            VALID.replace("topics = [\"orders\"]", "topics = [\"orders\"]\ncolour = 1"),
            "colour",
        ),
        (
            VALID.replace("cluster = \"a\"", "cluster = \"c\""),
            "datastreams[0].sources[0].cluster",
        ),
        (VALID.replace("[[datastreams]]", "[[datastreams]"), "config"),
    ];
    for (text, key) in cases {
        let (_dir, path) = write(&text);
        for command in ["check-config", "server"] {
            let (code, _, stderr) = run(&[command, "--config", &path], &[]);
            assert_eq!(code, 2, "{command}: {stderr}");
            assert!(
                stderr.contains(key),
                "{command}: expected `{key}` in {stderr}"
            );
        }
    }
}

#[test]
fn environment_overrides_are_validated_too() {
    let (_dir, path) = write(VALID);
    let (code, _, stderr) = run(
        &["check-config", "--config", &path],
        &[("AQUEDUCT__NODE__PRODUCERS_PER_DESTINATION", "0")],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("node.producers_per_destination"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_are_rejected() {
    let (code, _, stderr) = run(&["server"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--config"), "{stderr}");
    let (code, _, stderr) = run(&["serve", "--config", "x"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
    let (code, _, stderr) = run(
        &["check-config", "--config", "/nonexistent/aqueduct.toml"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

/// `puppet <args>` in the module's directory; (exit code, stdout, stderr).
fn puppet(args: &[&str]) -> (i32, String, String) {
    let module = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/puppet/aqueduct");
    let output = Command::new("puppet")
        .args(args)
        .current_dir(&module)
        .output()
        .expect("puppet is installed by tools/install-deps.sh (Debian's puppet package)");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_puppet_module_parses_and_renders_a_config_aqueduct_accepts() {
    let manifests: Vec<String> = ["init", "install", "config", "service"]
        .iter()
        .map(|m| format!("manifests/{m}.pp"))
        .collect();
    let mut args = vec!["parser", "validate"];
    args.extend(manifests.iter().map(String::as_str));
    let (code, out, err) = puppet(&args);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = puppet(&["epp", "validate", "templates/aqueduct.toml.epp"]);
    assert_eq!(code, 0, "{out}{err}");

    // The template, rendered with the parameters of a real cluster node, is a config aqueduct accepts.
    let values = "{cluster_name => 'mirror-prod', zookeeper => 'zk-1:2181,zk-2:2181', instance => 'node-1', \
        kafka_clusters => {'dc1' => {'bootstrap_servers' => 'kafka-dc1:9092', 'properties' => {'security.protocol' => 'SSL'}}, \
        'aggregate' => {'bootstrap_servers' => 'kafka-agg:9092'}}, api_listen => '0.0.0.0:8080', \
        api_tokens => [{'sha256' => '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', 'admin' => true}, \
        {'sha256' => '60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752', 'tenant' => 'team-a'}], \
        tenants => {'team-a' => {'group_prefix' => 'team-a.', 'read' => [{'cluster' => 'dc1', 'topics' => ['orders\\..*', 'payments']}], \
        'write' => [{'cluster' => 'aggregate', 'topics' => ['dc1\\.orders\\..*']}]}}, \
        max_in_flight_bytes => 268435456, max_tasks_per_instance => 64, session_timeout_ms => 10000, log_format => 'json'}";
    let (code, rendered, err) = puppet(&[
        "epp",
        "render",
        "templates/aqueduct.toml.epp",
        "--values",
        values,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(rendered.contains("[clusters.dc1.properties]"), "{rendered}");
    assert!(rendered.contains("[[tenants.team-a.read]]"), "{rendered}");
    let (_dir, path) = write(&rendered);
    let (code, out, err) = run(&["check-config", "--config", &path], &[]);
    assert_eq!(code, 0, "{rendered}\n{out}{err}");
    // The policy reaches the node as written: the node refuses a file whose grant names an unknown cluster.
    let (_dir, path) = write(&rendered.replace("cluster = \"aggregate\"", "cluster = \"nowhere\""));
    let (code, _, err) = run(&["check-config", "--config", &path], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tenants.team-a.write[0].cluster"), "{err}");
    // Standalone (no ZooKeeper) renders a valid config too.
    let standalone = values.replace(
        "zookeeper => 'zk-1:2181,zk-2:2181', ",
        "zookeeper => undef, ",
    );
    let (code, rendered, err) = puppet(&[
        "epp",
        "render",
        "templates/aqueduct.toml.epp",
        "--values",
        &standalone,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!rendered.contains("zookeeper"), "{rendered}");
    let (_dir, path) = write(&rendered);
    assert_eq!(
        run(&["check-config", "--config", &path], &[]).0,
        0,
        "{rendered}"
    );
}

#[test]
fn config_check_explains_the_problem_and_where_it_is_documented() {
    let (_dir, path) = write(VALID);
    let (code, out, _) = run(&["config", "check", &path], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("valid"), "{out}");
    let (_dir, path) = write(&VALID.replace(
        "topics = [\"orders\"]",
        "topics = [\"orders\"]\ntopic_pattern = \"(\"",
    ));
    let (code, _, err) = run(&["config", "check", &path], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("setting: datastreams[0].sources[0].topic_pattern"),
        "{err}"
    );
    assert!(err.contains("problem: invalid regex"), "{err}");
    assert!(
        err.contains("docs/configuration.md, [[datastreams.sources]]"),
        "{err}"
    );
}
