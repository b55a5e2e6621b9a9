# pyfilter's directories and the accounts its services run as: the one place that says
# them, read by scripts/install.sh and built into the Debian package's postinst by
# scripts/package, so a change here lands in both. POSIX sh (a postinst runs under
# /bin/sh). Sourced, never run.

# pyfilter_dirs: one line per directory: MODE PATH OWNER:GROUP. The state directory holds
# the ban database (bans, the admin's password hashes and tokens): only root reads it.
pyfilter_dirs() {
    cat <<'DIRS'
755 /etc/pyfilter root:root
755 /etc/pyfilter/rules.d root:root
700 /var/lib/pyfilter root:root
DIRS
}

# pyfilter_accounts ROOT: creates the system users and groups named in pyfilter_dirs
# under ROOT ("" for this system). None yet: the daemon and the admin run as root.
pyfilter_accounts() {
    :
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
        elif [ "$(stat -c %a "$path")" != "$mode" ]; then
            chmod "$mode" "$path"
            echo "chmod $mode  $path/"
        else
            echo "exists     $path/"
        fi
        # Owners need root; a user staging a package (--destdir) keeps his own.
        if [ "$(id -u)" -eq 0 ] && [ "$(stat -c %U:%G "$path")" != "$owner" ]; then
            chown "$owner" "$path"
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
