//! Answering arbitrary bytes as an initial message never panics and never consumes a
//! prekey unless the message authenticates.
#![no_main]

use std::sync::OnceLock;

use chorus_core::{LocalIdentity, MemoryPrekeyStore};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fn responder() -> &'static (LocalIdentity, MemoryPrekeyStore) {
    static R: OnceLock<(LocalIdentity, MemoryPrekeyStore)> = OnceLock::new();
    R.get_or_init(|| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let id = LocalIdentity::generate(&mut rng);
        let mut store = MemoryPrekeyStore::default();
        store.new_signed_prekey(&id, &mut rng).unwrap();
        store.new_one_time_prekey(&mut rng);
        store.new_pq_prekey(&id, true, &mut rng).unwrap();
        (id, store)
    })
}

fuzz_target!(|data: &[u8]| {
    let (id, store) = responder();
    let _ = chorus_core::respond(id, store, data);
});
