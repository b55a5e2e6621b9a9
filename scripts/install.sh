#!/usr/bin/env bash
# Installs pyfilter: the binary, its man pages and shell completions, /etc/pyfilter
# (the configuration only when there is none), /var/lib/pyfilter, and the systemd units
# (or, without systemd, a cron file). Running it again installs what changed and keeps
# the rest; the configuration is never overwritten.
#
#   sudo scripts/install.sh [--binary PATH] [--prefix /usr/local] [--destdir DIR]
#                           [--init auto|systemd|cron|none]
#
# --binary PATH  install this binary instead of building one with `cargo build --release`
# --prefix DIR   where the binary, man pages and zsh/fish completions go (/usr/local)
# --destdir DIR  put every path under DIR (packaging, tests): nothing is started,
#                reloaded or restarted
# --init KIND    systemd units or cron file; auto (the default) takes systemd when it is
#                running (/run/systemd/system exists), cron otherwise
set -euo pipefail
umask 022

usage() { sed -n '7,15s/^# \{0,1\}//p' "$0"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=
prefix=/usr/local
destdir=
init=auto
while [ $# -gt 0 ]; do
    case $1 in
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
        --binary=*) binary=${1#*=}; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; destdir=$2; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --init) [ $# -ge 2 ] || die "--init needs auto, systemd, cron or none"; init=$2; shift 2 ;;
        --init=*) init=${1#*=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
case $prefix in /*) ;; *) die "--prefix must be an absolute path: $prefix" ;; esac
prefix=${prefix%/}
if [ -n "$destdir" ]; then
    case $destdir in /*) ;; *) destdir=$PWD/$destdir ;; esac
    destdir=${destdir%/}
fi
case $init in auto | systemd | cron | none) ;; *) die "--init: auto, systemd, cron or none, not $init" ;; esac
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo scripts/install.sh), or give --destdir DIR"
fi

systemd_running() { [ -d /run/systemd/system ]; }
if [ "$init" = auto ]; then
    if systemd_running; then init=systemd; else init=cron; fi
fi

# --- the binary ---------------------------------------------------------------------
if [ -z "$binary" ]; then
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found (sudo may drop ~/.cargo/bin from PATH): run \`cargo build --release\`, then \`sudo scripts/install.sh --binary target/release/pyfilter\`"
    say "building: cargo build --release --locked"
    (cd "$repo" && cargo build --release --locked)
    target=${CARGO_TARGET_DIR:-target}
    case $target in /*) ;; *) target=$repo/$target ;; esac
    binary=$target/release/pyfilter
fi
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then die "not an executable file: $binary"; fi
version=$("$binary" --version) || die "$binary --version failed: not a pyfilter binary for this machine?"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# put MODE SRC DEST: installs SRC as $destdir$DEST when it differs; sets `changed`.
changed=0
put() {
    local mode=$1 src=$2 dest=$destdir$3
    if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "$mode" ]; then
        say "unchanged  $dest"
        changed=0
    else
        install -D -m "$mode" "$src" "$dest"
        say "installed  $dest"
        changed=1
    fi
}

# directory MODE DIR: creates $destdir$DIR, or sets its mode.
directory() {
    local mode=$1 dir=$destdir$2
    if [ ! -d "$dir" ]; then
        install -d -m "$mode" "$dir"
        say "created    $dir/"
    elif [ "$(stat -c %a "$dir")" != "$mode" ]; then
        chmod "$mode" "$dir"
        say "chmod $mode  $dir/"
    else
        say "exists     $dir/"
    fi
}

# Files that name /usr/local/bin/pyfilter get the real prefix.
with_prefix() { sed "s|/usr/local/bin/pyfilter|$prefix/bin/pyfilter|g" "$1" >"$tmp/$(basename "$1")"; }

say "installing $version to ${destdir:-/} (prefix $prefix)"
put 755 "$binary" "$prefix/bin/pyfilter"
binary_changed=$changed
installed=$destdir$prefix/bin/pyfilter

# --- man pages, completions -------------------------------------------------------------
put 644 "$repo/man/pyfilter.1" "$prefix/share/man/man1/pyfilter.1"
put 644 "$repo/man/pyfilter.yml.5" "$prefix/share/man/man5/pyfilter.yml.5"
put 644 "$repo/man/pyfilter-rules.5" "$prefix/share/man/man5/pyfilter-rules.5"

# Written by the installed binary, so they always match its options.
if "$installed" completions bash >"$tmp/bash" &&
    "$installed" completions zsh >"$tmp/zsh" &&
    "$installed" completions fish >"$tmp/fish"; then
    put 644 "$tmp/bash" /usr/share/bash-completion/completions/pyfilter
    put 644 "$tmp/zsh" "$prefix/share/zsh/site-functions/_pyfilter"
    put 644 "$tmp/fish" "$prefix/share/fish/vendor_completions.d/pyfilter.fish"
else
    say "warning: \`$installed completions\` failed: shell completions not installed" >&2
fi

# --- configuration and state --------------------------------------------------------
directory 755 /etc/pyfilter
conf=/etc/pyfilter/pyfilter.yml
if [ -e "$destdir$conf" ]; then
    say "kept       $destdir$conf (yours; the shipped default is $repo/pyfilter.yml)"
else
    put 644 "$repo/pyfilter.yml" "$conf"
fi
# Empty: the shipped rules are built into the binary; files here override or add rules.
directory 755 /etc/pyfilter/rules.d
# The web admin runs as this system user, with no privilege: it writes bans to the store
# and the daemon (root) applies them.
if [ -z "$destdir" ]; then
    if ! getent group pyfilter >/dev/null; then
        groupadd --system pyfilter
        say "created    group pyfilter"
    fi
    if ! getent passwd pyfilter >/dev/null; then
        useradd --system --gid pyfilter --home-dir /var/lib/pyfilter --no-create-home \
            --shell /usr/sbin/nologin --comment "pyfilter web admin" pyfilter
        say "created    user pyfilter"
    fi
fi
# root:pyfilter 0770: the daemon (root, group pyfilter) and the admin (pyfilter) write
# the database and its WAL; other users see nothing of it.
directory 770 /var/lib/pyfilter
if [ -z "$destdir" ]; then
    chgrp pyfilter /var/lib/pyfilter
    for db in /var/lib/pyfilter/*.db /var/lib/pyfilter/*.db-wal /var/lib/pyfilter/*.db-shm; do
        [ -e "$db" ] || continue
        chgrp pyfilter "$db" && chmod 660 "$db"
        say "chmod 660  $db (group pyfilter)"
    done
fi

# --- systemd units or cron ------------------------------------------------------------
units_changed=0
case $init in
    systemd)
        for unit in pyfilter.service pyfilter-prune.service pyfilter-prune.timer pyfilter-admin.service; do
            with_prefix "$repo/scripts/$unit"
            put 644 "$tmp/$unit" "/etc/systemd/system/$unit"
            [ "$changed" = 0 ] || units_changed=1
        done
        ;;
    cron)
        with_prefix "$repo/scripts/pyfilter.cron"
        put 644 "$tmp/pyfilter.cron" /etc/cron.d/pyfilter
        ;;
    none) say "skipped    systemd units and cron file (--init none)" ;;
esac

# --- the running system (never with --destdir) ----------------------------------------
if [ -z "$destdir" ]; then
    if ! "$installed" -q check >/dev/null; then
        say "warning: \`pyfilter check\` rejects the configuration: fix $conf before starting pyfilter" >&2
        config_ok=0
    else
        config_ok=1
    fi
    if [ "$init" = systemd ] && systemd_running; then
        if [ "$units_changed" = 1 ]; then
            systemctl daemon-reload
            say "ran        systemctl daemon-reload"
        fi
        if [ "$binary_changed" = 1 ] && [ "$config_ok" = 1 ] && systemctl is-active --quiet pyfilter.service; then
            systemctl restart pyfilter.service
            say "ran        systemctl restart pyfilter.service (new binary)"
        fi
        if ! systemctl is-enabled --quiet pyfilter.service 2>/dev/null; then
            say ""
            say "Start it now and at every boot, with the hourly prune:"
            say "  systemctl enable --now pyfilter.service pyfilter-prune.timer"
        fi
        if ! systemctl is-enabled --quiet pyfilter-admin.service 2>/dev/null; then
            say "The web admin (optional): create a user, then start it:"
            say "  $prefix/bin/pyfilter admin passwd NAME && systemctl enable --now pyfilter-admin.service"
        fi
    elif [ "$init" = cron ]; then
        say ""
        say "No systemd here: run \`$prefix/bin/pyfilter run\` under your service manager;"
        say "/etc/cron.d/pyfilter runs \`pyfilter prune\` every hour."
    fi
fi
say "done"
