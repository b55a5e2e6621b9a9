# pyfilter's directories and the accounts its services run as: the one place that says
# them, read by scripts/install.sh and built into the Debian package's postinst by
# scripts/package, so a change here lands in both. POSIX sh (a postinst runs under
# /bin/sh). Sourced, never run.

# pyfilter_dirs: one line per directory: MODE PATH OWNER:GROUP. The state directory holds
# the ban database (bans, the admin's password hashes and tokens): the daemon (root) and
# the web admin (user pyfilter, no privilege: it records bans, the daemon applies them)
# write it; other users see nothing of it. Setgid, so what the daemon creates there
# (umask 0007 in its unit) is the group's.
pyfilter_dirs() {
    cat <<'DIRS'
755 /etc/pyfilter root:root
755 /etc/pyfilter/rules.d root:root
2770 /var/lib/pyfilter root:pyfilter
DIRS
}

# pyfilter_accounts ROOT: creates the web admin's system user and group, pyfilter, on this
# system (ROOT ""); a staged root (--destdir, DPKG_ROOT) gets none.
pyfilter_accounts() {
    [ -z "$1" ] || return 0
    if ! getent group pyfilter >/dev/null; then
        groupadd --system pyfilter
        echo "created    group pyfilter"
    fi
    if ! getent passwd pyfilter >/dev/null; then
        useradd --system --gid pyfilter --home-dir /var/lib/pyfilter --no-create-home \
            --shell /usr/sbin/nologin --comment "pyfilter web admin" pyfilter
        echo "created    user pyfilter"
    fi
}

# pyfilter_make_dirs ROOT: creates each directory of pyfilter_dirs under ROOT, or gives
# it its mode and owner, and prints what it did (created, chmod MODE, exists).
pyfilter_make_dirs() {
    pyfilter_root=$1
    pyfilter_dirs | while read -r mode dir owner; do
        path=$pyfilter_root$dir
        if [ ! -d "$path" ]; then
            install -d -m "$mode" "$path"
            echo "created    $path/"
        elif [ "$(stat -c %a "$path")" != "${mode#0}" ]; then
            chmod "$mode" "$path"
            echo "chmod $mode  $path/"
        else
            echo "exists     $path/"
        fi
        # Owners need root and the accounts (none in a staged root); a user staging a
        # package (--destdir) keeps his own.
        if [ "$(id -u)" -eq 0 ] && [ "$(stat -c %U:%G "$path")" != "$owner" ] &&
            getent group "${owner#*:}" >/dev/null; then
            chown "$owner" "$path"
            # chown clears setgid: the mode again.
            chmod "$mode" "$path"
        fi
        # A database made before the group owned the state: the group's to write too.
        if [ "$(id -u)" -eq 0 ] && [ "${owner#*:}" = pyfilter ] && getent group pyfilter >/dev/null; then
            for db in "$path"/*.db "$path"/*.db-wal "$path"/*.db-shm; do
                [ -e "$db" ] || continue
                chgrp pyfilter "$db" && chmod 660 "$db"
            done
        fi
    done
}

# pyfilter_purge_paths: what a purge removes beyond the installed files, one path a line:
# the configuration, the ban database, the admin's log, and the drop-ins `systemctl edit`
# made (configuration too).
pyfilter_purge_paths() {
    cat <<'PATHS'
/etc/pyfilter
/var/lib/pyfilter
/var/log/pyfilter
/etc/systemd/system/pyfilter.service.d
/etc/systemd/system/pyfilter-prune.service.d
/etc/systemd/system/pyfilter-prune.timer.d
/etc/systemd/system/pyfilter-admin.service.d
PATHS
}
