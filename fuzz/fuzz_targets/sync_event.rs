//! A published fleet event, straight off the wire: refused or accepted, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyfilter::event::RemoteEvent;
use pyfilter::fleet::parse_event;

fuzz_target!(|data: &[u8]| {
    match parse_event(data, "me") {
        Ok(Some(RemoteEvent::Ban { server, .. })) | Ok(Some(RemoteEvent::Unban { server, .. })) => {
            // Our own events are dropped, never applied.
            assert_ne!(server, "me");
        }
        Ok(None) | Err(_) => {}
    }
});
