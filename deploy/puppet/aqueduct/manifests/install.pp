# @summary The aqueduct user, directories and binary.
class aqueduct::install {
  group { 'aqueduct':
    ensure => present,
    system => true,
  }
  user { 'aqueduct':
    ensure => present,
    system => true,
    gid    => 'aqueduct',
    home   => '/var/lib/aqueduct',
    shell  => '/usr/sbin/nologin',
  }
  file { ['/etc/aqueduct', '/var/lib/aqueduct', '/var/log/aqueduct']:
    ensure => directory,
    owner  => 'aqueduct',
    group  => 'aqueduct',
    mode   => '0750',
  }
  file { '/usr/bin/aqueduct':
    ensure => file,
    source => $aqueduct::binary_source,
    owner  => 'root',
    group  => 'root',
    mode   => '0755',
  }
}
