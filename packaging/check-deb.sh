#!/usr/bin/env bash
# Builds the Debian package around an already built beffroi binary (default: the debug
# binary the tests built), then inspects it, unpacks it into a scratch root, checks that the
# packaged binary runs and accepts the packaged sample deployment, and verifies the packaged
# systemd unit and account file. Used by .ci/run; a release package for people is
# `cargo deb -p beffroi` (docs/operations.md).
#
#   packaging/check-deb.sh [BINARY] [OUT.deb]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-${CARGO_TARGET_DIR:-target}/debug/beffroi}"
out="${2:-}"
[ -x "$bin" ] || { echo "check-deb: no binary at $bin (build it first)" >&2; exit 1; }

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
fail() { echo "check-deb: $*" >&2; exit 1; }

# cargo-deb takes the binary from <target>/release/: a scratch target dir holds this one.
mkdir -p "$scratch/target/release"
cp "$bin" "$scratch/target/release/beffroi"
deb="$scratch/beffroi.deb"
CARGO_TARGET_DIR="$scratch/target" cargo deb -p beffroi --no-build --fast --output "$deb" >/dev/null

echo "-- dpkg-deb -I"
dpkg-deb -I "$deb"
echo "-- dpkg-deb -c"
dpkg-deb -c "$deb" | tee "$scratch/contents"
for f in ./usr/bin/beffroi ./lib/systemd/system/beffroi.service ./usr/lib/sysusers.d/beffroi.conf \
    ./etc/beffroi/beffroi.toml ./etc/default/beffroi ./etc/beffroi/deployment/rules.toml \
    ./etc/beffroi/deployment/territory/territory.toml ./usr/share/doc/beffroi/operations.md; do
    grep -q " $f\$" "$scratch/contents" || fail "$f is not in the package"
done
dpkg-deb -e "$deb" "$scratch/control"
for f in /etc/beffroi/beffroi.toml /etc/default/beffroi /etc/beffroi/deployment/rules.toml; do
    grep -qx "$f" "$scratch/control/conffiles" || fail "$f is not a conffile"
done
[ "$(sort "$scratch/control/conffiles" | uniq -d)" = "" ] || fail "a conffile is listed twice"
grep -q '^Depends:.*adduser' "$scratch/control/control" || fail "no Depends on adduser"
for s in postinst prerm postrm; do sh -n "$scratch/control/$s" || fail "$s does not parse"; done

echo "-- unpacked into a scratch root"
root="$scratch/root"
dpkg-deb -x "$deb" "$root"
"$root/usr/bin/beffroi" --version
"$root/usr/bin/beffroi" check "$root/etc/beffroi/deployment"
[ "$(stat -c %a "$root/etc/default/beffroi")" = 600 ] || fail "/etc/default/beffroi is not 0600"

echo "-- systemd-analyze verify (ExecStart: the unpacked binary)"
unit="$root/lib/systemd/system/beffroi.service"
grep -qx 'ExecStart=/usr/bin/beffroi serve --config /etc/beffroi/beffroi.toml' "$unit" \
    || fail "the unit does not run /usr/bin/beffroi on /etc/beffroi/beffroi.toml"
mkdir -p "$scratch/verify"
sed "s|/usr/bin/beffroi|$root/usr/bin/beffroi|" "$unit" > "$scratch/verify/beffroi.service"
# verify exits 0 on unknown settings and only prints them: any output fails.
said="$(systemd-analyze verify "$scratch/verify/beffroi.service" 2>&1)" || fail "verify: $said"
[ -z "$said" ] || fail "verify: $said"
systemd-analyze security --offline=yes --threshold=20 "$scratch/verify/beffroi.service" | tail -n 1
systemd-sysusers --root="$root" --dry-run "$root/usr/lib/sysusers.d/beffroi.conf"

if [ -n "$out" ]; then cp "$deb" "$out"; fi
echo "check-deb: OK ($(du -h "$deb" | cut -f1) package, unit verified)"
