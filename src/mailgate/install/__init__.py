"""Installing mailgate as a service: the systemd unit and its plan."""
