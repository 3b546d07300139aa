# @summary Installs and runs an Aqueduct node (Kafka mirroring) as a systemd service.
#
# Every node of an Aqueduct cluster gets the same `cluster_name`, `zookeeper` and `kafka_clusters`, and a
# unique `instance`. See docs/configuration.md for every setting.
#
# @param cluster_name Name of the Aqueduct cluster (`[cluster] name`).
# @param zookeeper ZooKeeper connect string; undef runs the node standalone.
# @param instance This node's name in the cluster.
# @param kafka_clusters Kafka clusters by name: `bootstrap_servers` and optional librdkafka `properties`
#   (security settings go here).
# @param api_listen Address of the REST API and the metrics.
# @param api_tokens Accepted bearer tokens as `{ sha256 => ..., tenant => ... }` or `{ sha256 => ..., admin => true }`.
# @param tenants What each tenant's streams may read and write, by tenant name: `read` and `write` as arrays of
#   `{ cluster => ..., topics => [anchored regexes] }`, optional `group_prefix` (docs/configuration.md, `[tenants.<name>]`).
#   The same on every node.
# @param max_in_flight_bytes Node-wide cap on bytes handed to producers and not yet acknowledged.
# @param max_tasks_per_instance No node runs more tasks than this.
# @param session_timeout_ms ZooKeeper session timeout.
# @param log_format `text` or `json`.
# @param binary_source Where the `aqueduct` binary comes from (a `puppet:///` URL or a local path).
# @param service_ensure `running` or `stopped`.
# @example
#   class { 'aqueduct':
#     cluster_name   => 'mirror-prod',
#     zookeeper      => 'zk-1:2181,zk-2:2181,zk-3:2181',
#     kafka_clusters => {
#       'dc1'       => { 'bootstrap_servers' => 'kafka-dc1:9092' },
#       'aggregate' => { 'bootstrap_servers' => 'kafka-agg:9092', 'properties' => { 'compression.type' => 'lz4' } },
#     },
#     api_tokens     => [{ 'sha256' => '9f86d0...', 'admin' => true }],
#   }
class aqueduct (
  Hash[String[1], Struct[{ bootstrap_servers => String[1], Optional[properties] => Hash[String[1], String] }]] $kafka_clusters,
  String[1] $cluster_name = 'aqueduct',
  Optional[String[1]] $zookeeper = undef,
  String[1] $instance = $facts['networking']['hostname'],
  String[1] $api_listen = '0.0.0.0:8080',
  Array[Hash[String[1], Variant[String, Boolean]]] $api_tokens = [],
  Hash[String[1], Struct[{
    Optional[read]         => Array[Struct[{ cluster => String[1], topics => Array[String[1]] }]],
    Optional[write]        => Array[Struct[{ cluster => String[1], topics => Array[String[1]] }]],
    Optional[group_prefix] => String[1],
  }]] $tenants = {},
  Integer[1048576] $max_in_flight_bytes = 67108864,
  Integer[1] $max_tasks_per_instance = 64,
  Integer[1000, 600000] $session_timeout_ms = 10000,
  Enum['text', 'json'] $log_format = 'text',
  String[1] $binary_source = 'puppet:///modules/aqueduct/aqueduct',
  Enum['running', 'stopped'] $service_ensure = 'running',
) {
  contain aqueduct::install
  contain aqueduct::config
  contain aqueduct::service

  Class['aqueduct::install']
  -> Class['aqueduct::config']
  ~> Class['aqueduct::service']
}
