#!/bin/sh
# Prerequisites of bench/run.py (run once, as root, from the repository root):
#   - Postfix binaries (master, smtpd, smtp, cleanup, smtp-sink, smtp-source) from Debian's
#     package, installed with "No configuration" and NOT started as a system service: the
#     bench runs its own private instances (`postfix -c DIR`, config and queue in a temporary
#     directory, 127.0.0.1, free ports) and stops them again.
#   - sasl-xoauth2 (github.com/tarickb/sasl-xoauth2, release-0.27), the Cyrus SASL plugin
#     that gives Postfix's smtp client AUTH XOAUTH2: built from source with CMake against
#     Debian's libsasl2-dev, libcurl4-openssl-dev and libjsoncpp-dev into a private prefix
#     (bench/work/sasl-xoauth2/, nothing under /usr or /etc). The bench points Postfix at it
#     with SASL_PATH (Cyrus SASL's plugin search path, passed through Postfix's
#     import_environment), so the machine's SASL plugins and /etc/postfix are not touched.
#     SASL_XOAUTH2_SRC may name a local git directory or checkout to build from instead of
#     cloning from GitHub.
#   - the benchmark tools into the venv: emailproxy (the peer), py-spy and pyinstrument
#     (profilers), i.e. the `bench` extra of pyproject.toml.
set -eu
VENV="${VENV:-.venv}"
TAG="${SASL_XOAUTH2_TAG:-release-0.27}"
WORK="${BENCH_WORK:-bench/work}"
PREFIX="$WORK/sasl-xoauth2"

packages="postfix libsasl2-dev libcurl4-openssl-dev libjsoncpp-dev cmake g++ make pkg-config git ca-certificates"
missing=""
for package in $packages; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $package"
done
if [ -n "$missing" ]; then
    apt-get update
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Keep the package scripts from starting the system service (policy-rc.d 101 = "deny").
    created_policy=no
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created_policy=yes
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
        --no-install-recommends $missing
    if [ "$created_policy" = yes ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
# Should a service have been started anyway, stop it: the bench runs its own instances.
if [ -e /var/spool/postfix/pid/master.pid ]; then postfix stop 2>/dev/null || true; fi

# sasl-xoauth2 from source into the private prefix.
if [ ! -e "$PREFIX/lib/sasl2/libsasl-xoauth2.so" ]; then
    mkdir -p "$WORK"
    rm -rf "$WORK/sasl-xoauth2-src" "$WORK/sasl-xoauth2-build"
    src="${SASL_XOAUTH2_SRC:-https://github.com/tarickb/sasl-xoauth2.git}"
    if [ -d "$src" ] && git --git-dir="$src" rev-parse --git-dir >/dev/null 2>&1; then
        mkdir -p "$WORK/sasl-xoauth2-src"
        git --git-dir="$src" archive "$TAG" | tar -x -C "$WORK/sasl-xoauth2-src"
    else
        git clone --depth 1 --branch "$TAG" "$src" "$WORK/sasl-xoauth2-src"
    fi
    # Its docs need pandoc (man pages); the bench only needs the plugin, so skip that directory.
    sed -i '/add_subdirectory(docs)/d' "$WORK/sasl-xoauth2-src/CMakeLists.txt"
    abs_prefix="$(cd "$WORK" && pwd)/sasl-xoauth2"
    # The plugin reads its config from <sysconfdir>/sasl-xoauth2.conf (compiled in), so the
    # private sysconfdir keeps /etc untouched. Tests and docs off: only the plugin is needed.
    cmake -S "$WORK/sasl-xoauth2-src" -B "$WORK/sasl-xoauth2-build" \
        -DCMAKE_BUILD_TYPE=Release -DEnableTests=OFF \
        -DCMAKE_INSTALL_PREFIX="$abs_prefix" -DCMAKE_INSTALL_SYSCONFDIR="$abs_prefix/etc" \
        -DCMAKE_INSTALL_LIBDIR=lib
    cmake --build "$WORK/sasl-xoauth2-build" --target sasl-xoauth2 -j 2
    mkdir -p "$PREFIX/lib/sasl2" "$PREFIX/etc"
    cp "$WORK/sasl-xoauth2-build/src/libsasl-xoauth2.so" "$PREFIX/lib/sasl2/"
fi
# Postfix's smtp processes (user postfix) read the plugin and the bench's config from here.
chmod -R a+rX "$WORK"

"$VENV/bin/pip" install -e '.[bench]'
echo "bench prerequisites installed; run: $VENV/bin/python bench/run.py --quick"
