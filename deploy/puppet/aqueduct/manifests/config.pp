# @summary /etc/aqueduct/aqueduct.toml from the class parameters, checked with `aqueduct check-config`.
class aqueduct::config {
  file { '/etc/aqueduct/aqueduct.toml':
    ensure       => file,
    owner        => 'aqueduct',
    group        => 'aqueduct',
    mode         => '0640',
    content      => epp('aqueduct/aqueduct.toml.epp', {
      'cluster_name'           => $aqueduct::cluster_name,
      'zookeeper'              => $aqueduct::zookeeper,
      'instance'               => $aqueduct::instance,
      'kafka_clusters'         => $aqueduct::kafka_clusters,
      'api_listen'             => $aqueduct::api_listen,
      'api_tokens'             => $aqueduct::api_tokens,
      'tenants'                => $aqueduct::tenants,
      'max_in_flight_bytes'    => $aqueduct::max_in_flight_bytes,
      'max_tasks_per_instance' => $aqueduct::max_tasks_per_instance,
      'session_timeout_ms'     => $aqueduct::session_timeout_ms,
      'log_format'             => $aqueduct::log_format,
    }),
    validate_cmd => '/usr/bin/aqueduct check-config --config %',
  }
}
