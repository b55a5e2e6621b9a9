//! The external programs pyfilter runs (firewall tools, journalctl): whether one is
//! installed.

/// Whether an external program pyfilter runs (a firewall tool, journalctl) is installed:
/// on the PATH or in the system directories, which a root cron job's PATH may lack.
pub fn installed(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(std::path::PathBuf::from))
        .any(|d| d.join(program).is_file())
}
