#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| citycard_fuzz::reader::vector_json(data));
