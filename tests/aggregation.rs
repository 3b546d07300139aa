//! Tier aggregation: two source clusters into one destination cluster, with two datastreams writing into
//! the same destination topic, and one datastream reading from two clusters.

use std::time::Duration;

use aqueduct_engine::Engine;
use aqueduct_model::config::NodeConfig;
use aqueduct_testkit::{
    check_sequences, create_topic, random_name, KafkaCluster, SequenceProducer,
};

#[test]
fn two_streams_write_into_one_destination_topic() {
    let dc1 = std::thread::spawn(|| KafkaCluster::start("dc1").unwrap());
    let dc2 = std::thread::spawn(|| KafkaCluster::start("dc2").unwrap());
    let agg = KafkaCluster::start("agg").unwrap();
    let (dc1, dc2) = (dc1.join().unwrap(), dc2.join().unwrap());

    // The same topic name in both data centers, aggregated into one topic.
    let topic = random_name("events");
    create_topic(&dc1.bootstrap(), &topic, 4, &[]).unwrap();
    create_topic(&dc2.bootstrap(), &topic, 4, &[]).unwrap();
    let mut from_dc1 = SequenceProducer::new(&dc1.bootstrap(), &topic, 4, 64).unwrap();
    let mut from_dc2 = SequenceProducer::new(&dc2.bootstrap(), &topic, 4, 64).unwrap();
    from_dc1.produce(1_000).unwrap();
    from_dc2.produce(1_000).unwrap();

    let toml = format!(
        r#"
[node]
commit_interval_ms = 200

[clusters.dc1]
bootstrap_servers = "{dc1}"
[clusters.dc2]
bootstrap_servers = "{dc2}"
[clusters.agg]
bootstrap_servers = "{agg}"

[[datastreams]]
name = "dc1-to-agg"
destination = "agg"
[[datastreams.sources]]
cluster = "dc1"
topics = ["{topic}"]

[[datastreams]]
name = "dc2-to-agg"
destination = "agg"
[[datastreams.sources]]
cluster = "dc2"
topics = ["{topic}"]

[[datastreams]]
name = "both-prefixed"
destination = "agg"
destination_topic = "{{source}}.{{topic}}"
[[datastreams.sources]]
cluster = "dc1"
topics = ["{topic}"]
[[datastreams.sources]]
cluster = "dc2"
topics = ["{topic}"]
"#,
        dc1 = dc1.bootstrap(),
        dc2 = dc2.bootstrap(),
        agg = agg.bootstrap(),
    );
    let config = NodeConfig::from_sources(&toml, Vec::new()).unwrap();
    let engine = Engine::start(&config).unwrap();

    // Both data centers write the same sequence values, so the shared topic must hold every sequence
    // number of every partition twice: 4,000 distinct records, each seen once more.
    let merged = check_sequences(
        &agg.bootstrap(),
        &topic,
        &[1_000; 4],
        true,
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(merged.missing, 0, "{merged:?}");
    assert_eq!(merged.wrong_partition, 0, "{merged:?}");
    assert_eq!(
        (merged.unique, merged.duplicates),
        (4_000, 4_000),
        "{merged:?}"
    );
    assert_eq!(
        aqueduct_testkit::total_records(&agg.bootstrap(), &topic).unwrap(),
        8_000
    );

    // The multi-source stream keeps the two apart by name.
    for source in ["dc1", "dc2"] {
        let report = check_sequences(
            &agg.bootstrap(),
            &format!("{source}.{topic}"),
            &[1_000; 4],
            true,
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(report.is_lossless(), "{source}: {report:?}");
        assert_eq!(report.duplicates, 0, "{source}: {report:?}");
    }
    engine.shutdown();
}
