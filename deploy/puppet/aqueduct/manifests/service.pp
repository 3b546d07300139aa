# @summary The systemd unit and the service.
class aqueduct::service {
  file { '/etc/systemd/system/aqueduct.service':
    ensure => file,
    source => 'puppet:///modules/aqueduct/aqueduct.service',
    owner  => 'root',
    group  => 'root',
    mode   => '0644',
  }
  ~> exec { 'aqueduct-systemd-reload':
    command     => '/bin/systemctl daemon-reload',
    refreshonly => true,
  }
  -> service { 'aqueduct':
    ensure => $aqueduct::service_ensure,
    enable => true,
  }
}
