#!/usr/bin/env bash
# Removes what scripts/install.sh installed: stops and disables the systemd units,
# removes pyfilter's firewall state (`pyfilter flush`), then the binary, the man pages,
# the completions, the units and the cron file. /etc/pyfilter (your configuration) and
# /var/lib/pyfilter (the ban database) stay unless --purge. Running it again is harmless.
#
#   sudo scripts/uninstall.sh [--purge] [--prefix /usr/local] [--destdir DIR] [--no-flush]
#
# --purge        also remove /etc/pyfilter, /var/lib/pyfilter and the pyfilter user and group
# --prefix DIR   the --prefix given to install.sh (/usr/local)
# --destdir DIR  remove files under DIR only: nothing is stopped, flushed or reloaded
# --no-flush     leave pyfilter's chain, sets or table in the firewall
set -euo pipefail

usage() { sed -n '7,12s/^# \{0,1\}//p' "$0"; }
die() { printf 'uninstall.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }

purge=0
flush=1
prefix=/usr/local
destdir=
while [ $# -gt 0 ]; do
    case $1 in
        --purge) purge=1; shift ;;
        --no-flush) flush=0; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; destdir=$2; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
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
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo scripts/uninstall.sh), or give --destdir DIR"
fi

systemd_running() { [ -d /run/systemd/system ]; }
binary=$prefix/bin/pyfilter
units=(pyfilter.service pyfilter-prune.service pyfilter-prune.timer pyfilter-admin.service)

# --- stop, then take pyfilter out of the firewall (never with --destdir) --------------
if [ -z "$destdir" ]; then
    if systemd_running; then
        for unit in pyfilter-admin.service pyfilter-prune.timer pyfilter.service pyfilter-prune.service; do
            if [ -n "$(systemctl list-unit-files --no-legend "$unit" 2>/dev/null)" ]; then
                systemctl disable --now "$unit" 2>/dev/null || systemctl stop "$unit" || true
                say "stopped    $unit (and disabled it)"
            fi
        done
    fi
    if [ "$flush" = 1 ] && [ -x "$binary" ]; then
        # Exact process name: a daemon started by hand would put its bans back.
        if pids=$(pgrep -x pyfilter); then
            die "pyfilter still runs (pid ${pids//$'\n'/ }): stop it, then run this again"
        fi
        if "$binary" flush; then
            say "ran        $binary flush"
        else
            die "\`$binary flush\` failed: fix that (see /etc/pyfilter/pyfilter.yml), or pass --no-flush to leave the firewall as it is"
        fi
    fi
fi

# remove PATH: removes $destdir$PATH when it is there.
remove() {
    local path=$destdir$1
    if [ -e "$path" ] || [ -L "$path" ]; then
        rm -f -- "$path"
        say "removed    $path"
    else
        say "absent     $path"
    fi
}

remove "$binary"
remove "$prefix/share/man/man1/pyfilter.1"
remove "$prefix/share/man/man5/pyfilter.yml.5"
remove "$prefix/share/man/man5/pyfilter-rules.5"
remove /usr/share/bash-completion/completions/pyfilter
remove "$prefix/share/zsh/site-functions/_pyfilter"
remove "$prefix/share/fish/vendor_completions.d/pyfilter.fish"
for unit in "${units[@]}"; do
    remove "/etc/systemd/system/$unit"
done
# `systemctl disable` removes these; they stay when it could not run (no systemd, --destdir).
for link in /etc/systemd/system/multi-user.target.wants/pyfilter.service \
    /etc/systemd/system/multi-user.target.wants/pyfilter-admin.service \
    /etc/systemd/system/timers.target.wants/pyfilter-prune.timer; do
    if [ -L "$destdir$link" ]; then
        rm -f -- "$destdir$link"
        say "removed    $destdir$link"
    fi
done
remove /etc/cron.d/pyfilter

if [ "$purge" = 1 ]; then
    # What a purge removes is said once, for this script and the Debian package.
    . "$(dirname "${BASH_SOURCE[0]}")/lib/state.sh"
    for dir in $(pyfilter_purge_paths); do
        if [ -e "$destdir$dir" ]; then
            rm -rf -- "$destdir$dir"
            say "removed    $destdir$dir/"
        else
            say "absent     $destdir$dir/"
        fi
    done
else
    for dir in /etc/pyfilter /var/lib/pyfilter; do
        if [ -e "$destdir$dir" ]; then
            say "kept       $destdir$dir/ (--purge removes it)"
        fi
    done
fi

# The admin's system user and group, made by install.sh.
if [ "$purge" = 1 ] && [ -z "$destdir" ]; then
    if getent passwd pyfilter >/dev/null; then
        userdel pyfilter && say "removed    user pyfilter"
    fi
    if getent group pyfilter >/dev/null; then
        groupdel pyfilter && say "removed    group pyfilter"
    fi
fi

if [ -z "$destdir" ] && systemd_running; then
    systemctl daemon-reload
    systemctl reset-failed "${units[@]}" 2>/dev/null || true
    say "ran        systemctl daemon-reload"
fi
say "done"
