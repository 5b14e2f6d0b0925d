#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| citycard_fuzz::proto::run("piv_certificate", data));
