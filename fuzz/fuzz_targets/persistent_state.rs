#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| citycard_fuzz::card::persistent_state(data));
