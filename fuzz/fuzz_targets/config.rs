//! Configuration text: `Settings::from_text` may refuse it but must never panic.
//!
//! A configuration can name a `rules_dir`; the loader only lists and reads `*.yml` files
//! there, so that is harmless. The process runs in an empty directory of its own so that
//! relative paths find nothing.
#![no_main]

use std::path::Path;
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use pyfilter::config::ConfigSource;
use pyfilter::settings::Settings;

fn isolate() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = std::env::temp_dir().join(format!("pyfilter-fuzz-config-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::env::set_current_dir(&dir);
    });
}

fuzz_target!(|data: &[u8]| {
    isolate();
    let text = String::from_utf8_lossy(data);
    let name = Path::new("fuzz.yml");
    if let Err(e) = Settings::from_text(name, &text, ConfigSource::Embedded) {
        // Rendering the error (with its located excerpt) must not panic either.
        let _ = e.to_string();
    }
});
