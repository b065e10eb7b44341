//! A relay URL someone else gave us, checked by the policy: arbitrary text never
//! panics, and an accepted URL is https (strict policy) and accepted again as printed.
#![no_main]

use chorus_client::UrlPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = UrlPolicy::STRICT.check(s) {
        assert!(url.starts_with("https://"));
        assert_eq!(UrlPolicy::STRICT.check(&url).ok(), Some(url.clone()));
    }
    let _ = UrlPolicy::PERMISSIVE.check(s);
    let _ = UrlPolicy::for_home(s);
});
