#!/bin/sh
# Installs tokengate from this unpacked release tarball.
#
# Usage: ./install.sh [--prefix DIR] [--destdir DIR]
#   --prefix DIR   where it goes (default /usr/local): DIR/bin/tokengate, the man pages in
#                  DIR/share/man/man1, shell completions under DIR/share, the example
#                  configuration, README and reference in DIR/share/doc/tokengate, and the systemd
#                  unit in DIR/lib/systemd/system with its ExecStart pointed at DIR/bin/tokengate
#   --destdir DIR  stage everything under DIR instead of / (for building a distribution package)
#
# It writes no configuration and starts nothing. Next: copy
# DIR/share/doc/tokengate/tokengate.example.toml to /etc/tokengate/tokengate.toml, set its
# [[routes]], check it with `tokengate check-config`, then
# `systemctl daemon-reload && systemctl enable --now tokengate`.
set -eu

prefix=/usr/local
destdir=
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in
  /*) ;;
  *) echo "install.sh: --prefix must be an absolute path (the unit's ExecStart names it)" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
target="$destdir$prefix"

install -D -m 0755 "$here/bin/tokengate" "$target/bin/tokengate"
(cd "$here" && find share -type f) | while IFS= read -r file; do
  install -D -m 0644 "$here/$file" "$target/$file"
done
unit=lib/systemd/system/tokengate.service
install -d "$target/lib/systemd/system"
# The prefix, escaped for sed's replacement text.
escaped=$(printf '%s\n' "$prefix" | sed 's/[\\&#]/\\&/g')
sed "s#^ExecStart=/usr/local/bin/tokengate#ExecStart=$escaped/bin/tokengate#" "$here/$unit" >"$target/$unit"
chmod 0644 "$target/$unit"

echo "installed $("$target/bin/tokengate" --version) into $target"
case "$prefix" in
  /usr | /usr/local) ;;
  *) echo "systemd does not look in $prefix/lib/systemd/system: systemctl link $prefix/$unit" ;;
esac
