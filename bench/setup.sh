#!/bin/sh
# Prerequisites of bench/run.py (run once, as root, from the repository root):
#   - Postfix binaries (smtpd, cleanup, smtp-sink, smtp-source) from Debian's package,
#     installed with "No configuration" and NOT started as a system service: the bench
#     runs its own private instance (config and queue in a temporary directory, 127.0.0.1,
#     a free port) and stops it again.
#   - the benchmark tools into the venv: emailproxy (the peer), py-spy and pyinstrument
#     (profilers), i.e. the `bench` extra of pyproject.toml.
set -eu
VENV="${VENV:-.venv}"

if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then
    apt-get update
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Keep the package scripts from starting the system service (policy-rc.d 101 = "deny").
    created_policy=no
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created_policy=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix
    if [ "$created_policy" = yes ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
# Should a service have been started anyway, stop it: the bench runs its own instance.
if [ -e /var/spool/postfix/pid/master.pid ]; then postfix stop 2>/dev/null || true; fi

"$VENV/bin/pip" install -e '.[bench]'
echo "bench prerequisites installed; run: $VENV/bin/python bench/run.py --smoke"
